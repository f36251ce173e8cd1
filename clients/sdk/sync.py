"""A blocking facade over :class:`~clients.sdk.client.Client` for scripts and notebooks.

Why a background thread: notebooks already run an event loop (so
``asyncio.run`` fails there) and plain scripts do not want one at all.  The
facade owns a private loop in a daemon thread; every method submits the async
call to it and waits for the result, so one ``SyncClient`` can be used from
any thread.  Streams become blocking iterators with an optional timeout.

    with SyncClient.connect(username="alice", password="alice-demo") as client:
        result = client.buy("AAPL", 100.5, 10)
        for fill in client.fills(timeout=5):
            print(fill)
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, TypeVar

from clients.sdk.client import Client
from clients.sdk.orders import OpenOrder
from clients.sdk.streams import EventStream
from clients.sdk.types import (
    AmendResult,
    Cancel,
    CancelResult,
    Depth,
    Fill,
    Instrument,
    InstrumentEvent,
    InstrumentLimitLayers,
    InstrumentLimits,
    OrderResult,
    Quote,
    Side,
    TimeInForce,
    TopOfBook,
    Trade,
    UserLimitLayers,
    UserLimits,
)

T = TypeVar("T")


class _Default(enum.Enum):
    """Marks "not given" where None already means "wait forever"."""

    STREAM_TIMEOUT = enum.auto()


class _LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="optivex-sdk", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncClient methods cannot be called from its own loop thread")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call(self, function: Callable[[], T]) -> T:
        """Run a plain function on the loop (stream creation must happen there)."""

        async def wrapper() -> T:
            return function()

        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class SyncStream(Generic[T]):
    """A blocking iterator over an :class:`EventStream`.

    Iteration ends when the stream ends, or when nothing arrives within
    ``timeout`` seconds (None: wait forever).  :meth:`get` waits as long by
    default and raises ``TimeoutError`` instead.
    """

    def __init__(self, runner: _LoopThread, stream: EventStream[T], timeout: float | None) -> None:
        self._runner = runner
        self._stream = stream
        self.timeout = timeout

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.get(self.timeout)
        except (TimeoutError, StopAsyncIteration):
            raise StopIteration from None

    def get(self, timeout: float | _Default | None = _Default.STREAM_TIMEOUT) -> T:
        """The next item; ``TimeoutError`` after ``timeout`` s (by default the
        stream's own, so ``client.fills(timeout=5).get()`` cannot block forever)."""
        wait = self.timeout if isinstance(timeout, _Default) else timeout
        return self._runner.run(self._stream.get(wait))

    def drain(self) -> list[T]:
        return self._runner.call(self._stream.drain)

    def close(self) -> None:
        self._runner.call(self._stream.close)

    def __enter__(self) -> SyncStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncClient:
    """Blocking twin of :class:`Client`; create with :meth:`connect`."""

    def __init__(self, runner: _LoopThread, client: Client) -> None:
        self._runner = runner
        self.client = client
        """The underlying async client (use it only from its loop)."""

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        gateway_port: int | None = 7404,
        info_port: int | None = 7402,
        username: str = "",
        password: str = "",
        **options: Any,
    ) -> SyncClient:
        """Connect like :meth:`Client.connect` (same arguments), blocking."""
        runner = _LoopThread()

        async def start() -> Client:
            return await Client.connect(
                host, gateway_port, info_port, username, password, **options
            )

        try:
            client = runner.run(start())
        except BaseException:
            runner.stop()
            raise
        return cls(runner, client)

    def close(self) -> None:
        try:
            self._runner.run(self.client.close(), timeout=10)
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ trading

    def insert(
        self,
        symbol: str,
        side: Side | str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        return self._runner.run(
            self.client.insert(symbol, side, price, quantity, tif, client_order_id=client_order_id)
        )

    def buy(
        self,
        symbol: str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        return self._runner.run(
            self.client.buy(symbol, price, quantity, tif, client_order_id=client_order_id)
        )

    def sell(
        self,
        symbol: str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        return self._runner.run(
            self.client.sell(symbol, price, quantity, tif, client_order_id=client_order_id)
        )

    def cancel(self, symbol: str, order_id: int) -> CancelResult:
        return self._runner.run(self.client.cancel(symbol, order_id))

    def amend(self, symbol: str, order_id: int, price: float, quantity: int) -> AmendResult:
        return self._runner.run(self.client.amend(symbol, order_id, price, quantity))

    def cancel_all(self, symbol: str | None = None) -> int:
        return self._runner.run(self.client.cancel_all(symbol))

    def open_orders(self, symbol: str | None = None) -> dict[int, OpenOrder]:
        return self._runner.call(lambda: self.client.open_orders(symbol))

    def fills(self, symbol: str | None = None, timeout: float | None = None) -> SyncStream[Fill]:
        return SyncStream(
            self._runner, self._runner.call(lambda: self.client.fills(symbol)), timeout
        )

    def cancels(
        self, symbol: str | None = None, timeout: float | None = None
    ) -> SyncStream[Cancel]:
        return SyncStream(
            self._runner, self._runner.call(lambda: self.client.cancels(symbol)), timeout
        )

    # ------------------------------------------------------------------ limits

    def get_user_limits(self, username: str = "") -> UserLimitLayers:
        return self._runner.run(self.client.get_user_limits(username))

    def set_user_limits(self, limits: UserLimits, username: str = "") -> None:
        self._runner.run(self.client.set_user_limits(limits, username))

    def get_instrument_limits(self, username: str = "") -> InstrumentLimitLayers:
        return self._runner.run(self.client.get_instrument_limits(username))

    def set_instrument_limits(
        self, symbol: str, limits: InstrumentLimits, username: str = ""
    ) -> None:
        self._runner.run(self.client.set_instrument_limits(symbol, limits, username))

    # ------------------------------------------------------------------ market data

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._runner.call(lambda: dict(self.client.instruments))

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def reconnects(self) -> int:
        return self.client.reconnects

    @property
    def username(self) -> str:
        return self.client.username

    def quotes(self) -> dict[str, Quote]:
        return self._runner.run(self.client.quotes())

    def top_of_book(self, symbol: str, timeout: float | None = None) -> SyncStream[TopOfBook]:
        return SyncStream(
            self._runner, self._runner.call(lambda: self.client.top_of_book(symbol)), timeout
        )

    def depth(
        self, symbol: str, levels: int = 10, timeout: float | None = None
    ) -> SyncStream[Depth]:
        return SyncStream(
            self._runner, self._runner.call(lambda: self.client.depth(symbol, levels)), timeout
        )

    def trades(self, symbol: str, timeout: float | None = None) -> SyncStream[Trade]:
        return SyncStream(
            self._runner, self._runner.call(lambda: self.client.trades(symbol)), timeout
        )

    def instrument_events(self, timeout: float | None = None) -> SyncStream[InstrumentEvent]:
        return SyncStream(self._runner, self._runner.call(self.client.instrument_events), timeout)
