"""What the exchange holds, seen three independent ways, and how to compare them.

* **The Order Book, live**: a ``service`` login receives the snapshot (every
  live book, every resting order with its remaining quantity); the answer to a
  ``GetStatsRequest`` sent right after proves the snapshot is complete and
  carries the exchange totals.
* **The journal, replayed**: every record into a fresh engine through the
  same :class:`~services.order_book.translate.CommandProcessor` the service
  uses.  That is the state a restart would rebuild, with its state hash.
* **Info**: depth subscriptions (all levels) per instrument; the last message
  of each is what a market-data client believes.

The checks compare them as plain values (sets and dicts of tuples), so a
failure message shows the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.prices import from_ticks
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError
from services.common.wire.registry import MESSAGE_CLASSES
from services.order_book.engine import Engine
from services.order_book.journal import FILE_NAME, Record, scan
from services.order_book.translate import INSERT, CommandProcessor
from tests.launcher.harness import SERVICE_PASSWORD

MT = common_pb2.MessageType

Order = tuple[int, int, int, float, int, str]
"""order_id, order_book_id, side, price, remaining quantity, username."""
Levels = tuple[tuple[tuple[float, int], ...], tuple[tuple[float, int], ...]]
"""(bids best first, asks best first) as (price, quantity)."""


@dataclass
class BookState:
    """Books, resting orders and totals, however they were observed."""

    books: dict[int, float] = field(default_factory=dict)
    orders: set[Order] = field(default_factory=set)
    trade_count: int = 0
    traded_volume: int = 0
    resting_orders: int = 0

    def depth(self, order_book_id: int) -> Levels:
        """Aggregated levels of one book, best price first on each side."""
        bids: dict[float, int] = defaultdict(int)
        asks: dict[float, int] = defaultdict(int)
        for _, book, side, price, quantity, _ in self.orders:
            if book == order_book_id:
                (bids if side == 0 else asks)[price] += quantity
        return (
            tuple(sorted(bids.items(), reverse=True)),
            tuple(sorted(asks.items())),
        )

    def totals(self) -> tuple[int, int, int]:
        return self.trade_count, self.traded_volume, self.resting_orders


# ---------------------------------------------------------------------- the Order Book, live


async def order_book_state(
    port: int, timeout: float = 10.0, password: str = SERVICE_PASSWORD
) -> BookState:
    """The Order Book's own view: login snapshot, completed by a stats barrier."""
    state = BookState()

    def on_push(message_type: int, message: Any) -> None:
        if message.sequence_number != 0:
            return  # a live event after the snapshot: the caller quiesced the load
        if message_type == MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED:
            state.books[message.order_book_id] = message.tick_size
        elif message_type == MT.ORDER_BOOK_ON_ORDER_INSERTED:
            state.orders.add(
                (
                    message.order_id,
                    message.order_book_id,
                    message.side,
                    message.price,
                    message.quantity,
                    message.username,
                )
            )

    conn = await UpstreamConnection.open(
        "127.0.0.1", port, "service", password, name="observer", on_push=on_push
    )
    try:
        stats = await asyncio.wait_for(
            conn.request(MT.ORDER_BOOK_GET_STATS_REQUEST, order_book_pb2.GetStatsRequest()),
            timeout,
        )
    finally:
        conn.close()
    state.trade_count = stats.trade_count
    state.traded_volume = stats.traded_volume
    state.resting_orders = stats.resting_orders
    return state


# ---------------------------------------------------------------------- the journal


@dataclass
class Replay:
    """A fresh engine fed every journal record, and what the records were."""

    engine: Engine
    records: list[Record]
    inserts: Counter[tuple[str, str]]
    """Journaled (accepted) inserts per (user, client_order_id)."""
    tail_problem: str

    def state(self) -> BookState:
        engine = self.engine
        state = BookState()
        for info in engine.books():
            state.books[info.order_book_id] = info.tick_size
        for order in engine.resting_orders():
            tick = state.books[order.order_book_id]
            state.orders.add(
                (
                    order.order_id,
                    order.order_book_id,
                    order.side,
                    from_ticks(order.price_ticks, tick),
                    order.quantity,
                    order.username,
                )
            )
        stats = engine.stats()
        state.trade_count = stats.trade_count
        state.traded_volume = stats.traded_volume
        state.resting_orders = stats.resting_orders
        return state


def replay(
    data_dir: Path, after_each: Callable[[Engine, Record, Any], None] | None = None
) -> Replay:
    """Replay ``data_dir``'s journal (without repairing it) into a fresh engine."""
    data = (data_dir / FILE_NAME).read_bytes()
    records, _, problem = scan(data)
    engine = Engine()
    processor = CommandProcessor(engine)
    inserts: Counter[tuple[str, str]] = Counter()
    for record in records:
        request: Any = MESSAGE_CLASSES[record.kind].FromString(record.payload)
        response: Any
        response, accepted = processor.apply(record.kind, request, record.timestamp)
        assert accepted, f"journal record refused on replay: {response.error_message}"
        engine.drain_events()
        if record.kind == INSERT and request.client_order_id:
            inserts[(request.on_behalf_of_username, request.client_order_id)] += 1
        if after_each is not None:
            after_each(engine, record, request)
    return Replay(engine, records, inserts, problem)


# ---------------------------------------------------------------------- Info


class InfoView:
    """A market-data connection with an all-levels depth subscription per symbol."""

    def __init__(self) -> None:
        self.conn: UpstreamConnection | None = None
        self.instruments: dict[str, int] = {}
        self.depth: dict[str, Levels] = {}
        self.sequence: dict[str, int] = {}
        self.problems: list[str] = []
        self.changed = asyncio.Event()

    def _push(self, message_type: int, message: Any) -> None:
        if message_type == MT.INFO_ON_INSTRUMENT:
            self.instruments[message.instrument.symbol] = message.order_book_id
        elif message_type == MT.INFO_ON_PRICE_DEPTH_BOOK:
            symbol = message.instrument_symbol
            expected = self.sequence.get(symbol, 0) + 1
            if message.sequence_number != expected:
                self.problems.append(f"{symbol}: depth #{message.sequence_number}, not {expected}")
            self.sequence[symbol] = message.sequence_number
            self.depth[symbol] = (
                tuple((level.price, level.quantity) for level in message.bids),
                tuple((level.price, level.quantity) for level in message.asks),
            )
            self.changed.set()

    async def open(
        self, port: int, symbols: Iterable[str], user: str = "dave", password: str = ""
    ) -> InfoView:
        self.conn = await UpstreamConnection.open(
            "127.0.0.1",
            port,
            user,
            password or f"{user}-demo",
            name=f"info-view-{user}",
            on_push=self._push,
        )
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    self.conn.request(
                        MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST,
                        info_pb2.OrderBookSubscribeRequest(
                            instrument_symbol=symbol,
                            subscription_type=info_pb2.PRICE_DEPTH_BOOK,
                            depth=0,
                        ),
                    )
                    for symbol in symbols
                )
            ),
            10,
        )
        return self

    async def wait_equal(
        self, expected: dict[str, Levels], timeout: float = 10.0
    ) -> dict[str, Levels]:
        """Wait until every symbol's last depth equals ``expected``; returns the last seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self.depth.get(s) != levels for s, levels in expected.items()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        return {symbol: self.depth.get(symbol, ((), ())) for symbol in expected}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def check_info_mirrors(
    info_port: int, book: BookState, symbols: dict[str, int], timeout: float = 10.0
) -> None:
    """Info's depth of every symbol equals the Order Book's resting orders."""
    expected = {symbol: book.depth(book_id) for symbol, book_id in symbols.items()}
    view = await InfoView().open(info_port, symbols)
    try:
        seen = await view.wait_equal(expected, timeout)
    finally:
        view.close()
    assert seen == expected, "Info's depth differs from the Order Book's resting orders"


__all__ = [
    "BookState",
    "InfoView",
    "Replay",
    "ResilientView",
    "check_info_mirrors",
    "info_instruments",
    "order_book_state",
    "replay",
]


class ResilientView(InfoView):
    """An :class:`InfoView` that reconnects (and resubscribes) whenever Info drops it.

    Each connection is an *epoch*: a subscription's numbering starts at 1 on
    every new connection, and must then be contiguous.  ``epochs`` counts the
    connections; ``problems`` collects every gap or restart out of place.
    """

    def __init__(self, port: int, symbols: list[str], user: str = "dave") -> None:
        super().__init__()
        self.port = port
        self.symbols = symbols
        self.user = user
        self.epochs = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def _push(self, message_type: int, message: Any) -> None:
        # A snapshot (numbered 1) is only legitimate as the first message of an epoch.
        if (
            message_type == MT.INFO_ON_PRICE_DEPTH_BOOK
            and message.sequence_number == 1
            and self.sequence.get(message.instrument_symbol, 0) != 0
        ):
            self.problems.append(f"{message.instrument_symbol}: numbering restarted mid-epoch")
        super()._push(message_type, message)

    async def start(self) -> ResilientView:
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._supervise())
        return self

    async def _connect(self) -> None:
        self.sequence = {}
        await self.open(self.port, self.symbols, self.user)
        self.epochs += 1

    async def _supervise(self) -> None:
        while not self._closing:
            assert self.conn is not None
            await self.conn.wait_closed()
            delay = 0.05
            while not self._closing:
                try:
                    await self._connect()
                    break
                except (OSError, TimeoutError, ConnectionLost, RemoteError):
                    if self.conn is not None:
                        self.conn.close()
                    await asyncio.sleep(delay)  # reconnect backoff, not synchronisation
                    delay = min(delay * 2, 0.5)

    async def aclose(self) -> None:
        self._closing = True
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def info_instruments(port: int, user: str = "dave") -> dict[str, int]:
    """Symbol -> order_book_id of every live instrument Info announces on login."""
    instruments: dict[str, int] = {}

    def on_push(message_type: int, message: Any) -> None:
        if message_type == MT.INFO_ON_INSTRUMENT:
            instruments[message.instrument.symbol] = message.order_book_id

    conn = await UpstreamConnection.open(
        "127.0.0.1", port, user, f"{user}-demo", name="info-list", on_push=on_push
    )
    try:
        # The login announcements precede this answer.
        await asyncio.wait_for(conn.request(MT.INFO_QUOTES_REQUEST, info_pb2.QuotesRequest()), 10)
    finally:
        conn.close()
    return instruments
