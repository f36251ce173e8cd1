"""The participant SDK's asyncio client: trade through the Risk Gateway, watch
the market through Info, with one object.

Why this shape: a newcomer's first program should be five lines, and a bot's
thousandth hour should survive exchange restarts.  So calls read like the
domain (``await client.buy("AAPL", 100.5, 10)``), refusals are typed
exceptions carrying the exchange's text, pushes are async iterators that
register when created (nothing between creating and reading is lost), and the
connections heal themselves (see :mod:`clients.sdk.link`).

Inserts carry a ``client_order_id`` (generated unless given), which makes an
insert whose connection dropped before the answer safe to resend: the Risk
Gateway returns the original outcome instead of inserting twice.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Generator, Mapping
from ssl import SSLContext
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from clients.sdk import translate
from clients.sdk.errors import (
    ExchangeError,
    LimitsError,
    NotAvailable,
    RiskLimitExceeded,
    order_error,
)
from clients.sdk.link import Link
from clients.sdk.market import MarketData
from clients.sdk.orders import OpenOrder, OrderTracker
from clients.sdk.streams import EventStream, Fanout
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
from services.common.pb import common_pb2, execution_pb2, info_pb2, risk_limits_pb2

log = logging.getLogger("optivex.sdk")

MT = common_pb2.MessageType
MAX_CLIENT_ORDER_ID_BYTES = 64


class Client:
    """A participant's connection to the exchange.  Create with :meth:`connect`."""

    def __init__(
        self,
        username: str,
        *,
        request_timeout_s: float = 10.0,
        auto_client_order_ids: bool = True,
    ) -> None:
        self.username = username
        self.request_timeout_s = request_timeout_s
        self.auto_client_order_ids = auto_client_order_ids
        self.gateway: Link | None = None
        self.info: Link | None = None
        self.market = MarketData()
        self.orders = OrderTracker()
        self._fills: Fanout[Fill] = Fanout()
        self._cancels: Fanout[Cancel] = Fanout()
        self._coid_prefix = f"sdk-{secrets.token_hex(8)}-"
        self._coid_counter = itertools.count(1)

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        gateway_port: int | None = 7404,
        info_port: int | None = 7402,
        username: str = "",
        password: str = "",
        *,
        gateway_host: str | None = None,
        info_host: str | None = None,
        reconnect: bool = True,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        auto_client_order_ids: bool = True,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
        backoff_max_s: float = 2.0,
        ssl: SSLContext | None = None,
    ) -> _Connecting:
        """Connect and log in to the Risk Gateway and Info (either may be None).

        Use as ``async with Client.connect(...) as client:`` or
        ``client = await Client.connect(...)`` (then ``await client.close()``).
        Returns once logged in everywhere and :attr:`instruments` is complete.
        Raises :class:`LoginFailed` or :class:`Disconnected` if the first
        connection fails; later drops are repaired in the background.
        ``ssl``: a TLS context (e.g. ``services.common.wire.client.client_ssl_context
        (ca_file)``) when the exchange's participant ports speak TLS; None: plain TCP.
        """
        client = cls(
            username,
            request_timeout_s=request_timeout_s,
            auto_client_order_ids=auto_client_order_ids,
        )
        common: dict[str, Any] = {
            "reconnect": reconnect,
            "connect_timeout_s": connect_timeout_s,
            "heartbeat_interval_s": heartbeat_interval_s,
            "idle_timeout_s": idle_timeout_s,
            "backoff_max_s": backoff_max_s,
            "ssl": ssl,
        }
        if gateway_port is not None:
            client.gateway = Link(
                "risk-gateway",
                gateway_host or host,
                gateway_port,
                username,
                password,
                on_push=client._on_gateway_push,
                on_down=client._on_gateway_down,
                **common,
            )
        if info_port is not None:
            client.info = Link(
                "info",
                info_host or host,
                info_port,
                username,
                password,
                on_push=client.market.on_push,
                on_up=client.market.on_up,
                on_connecting=client.market.on_connecting,
                on_down=client._on_info_down,
                **common,
            )
            client.market.link = client.info
        return _Connecting(client)

    async def _start(self) -> None:
        try:
            if self.gateway is not None:
                await self.gateway.start()
            if self.info is not None:
                await self.info.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close both connections; streams end."""
        for link in (self.gateway, self.info):
            if link is not None:
                await link.close()
        self._fills.finish_all()
        self._cancels.finish_all()
        self.market.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True when every service this client uses is connected now."""
        links = [link for link in (self.gateway, self.info) if link is not None]
        return all(link.connected for link in links)

    @property
    def reconnects(self) -> int:
        """How many times a connection was re-established (0 if never lost)."""
        links = [link for link in (self.gateway, self.info) if link is not None]
        return sum(max(0, link.connections - 1) for link in links)

    # ------------------------------------------------------------------ trading

    def _gateway(self) -> Link:
        if self.gateway is None:
            raise NotAvailable("this client was connected without the Risk Gateway")
        return self.gateway

    def new_client_order_id(self) -> str:
        """A fresh id for an idempotent insert (unique per client object)."""
        return f"{self._coid_prefix}{next(self._coid_counter)}"

    async def insert(
        self,
        symbol: str,
        side: Side | str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """Send an order; returns its outcome or raises :class:`OrderRejected`
        (:class:`RiskLimitExceeded` when a risk limit refused it).

        Prices are sent as given: the exchange validates them against the tick.
        """
        side = Side.parse(side)
        tif = TimeInForce.parse(tif)
        if client_order_id is None:
            client_order_id = self.new_client_order_id() if self.auto_client_order_ids else ""
        if len(client_order_id.encode()) > MAX_CLIENT_ORDER_ID_BYTES:
            raise ValueError("client_order_id is limited to 64 bytes of UTF-8")
        request = translate.insert_request(symbol, side, price, quantity, tif, client_order_id)
        response = await self._gateway().call(
            MT.EXECUTION_INSERT_ORDER_REQUEST,
            request,
            timeout=self.request_timeout_s,
            resend=bool(client_order_id),
        )
        if response.error_message:
            raise order_error(response.error_message, "insert")
        result = translate.order_result(request, response)
        self.orders.inserted(result)
        return result

    async def buy(
        self,
        symbol: str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """Insert a buy order (see :meth:`insert`)."""
        return await self.insert(
            symbol, Side.BUY, price, quantity, tif, client_order_id=client_order_id
        )

    async def sell(
        self,
        symbol: str,
        price: float,
        quantity: int,
        tif: TimeInForce | str = TimeInForce.GTC,
        *,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """Insert a sell order (see :meth:`insert`)."""
        return await self.insert(
            symbol, Side.SELL, price, quantity, tif, client_order_id=client_order_id
        )

    async def cancel(self, symbol: str, order_id: int) -> CancelResult:
        """Cancel a resting order of this user; raises :class:`OrderRejected`
        (unknown, not yours, or no longer resting) or :class:`OutcomeUnknown`."""
        request = execution_pb2.CancelOrderRequest(instrument_symbol=symbol, order_id=order_id)
        response = await self._gateway().call(
            MT.EXECUTION_CANCEL_ORDER_REQUEST, request, timeout=self.request_timeout_s, resend=False
        )
        if response.error_message:
            raise order_error(response.error_message, "cancel", order_id)
        result = CancelResult(order_id, symbol, response.cancelled_quantity)
        self.orders.cancelled(result)
        return result

    async def amend(self, symbol: str, order_id: int, price: float, quantity: int) -> AmendResult:
        """Change a resting order's price and/or remaining quantity (same order id).

        Reducing the quantity at the same price keeps time priority; anything
        else goes to the back of the level and may trade at once.
        """
        request = execution_pb2.AmendOrderRequest(
            instrument_symbol=symbol, order_id=order_id, price=price, quantity=quantity
        )
        response = await self._gateway().call(
            MT.EXECUTION_AMEND_ORDER_REQUEST, request, timeout=self.request_timeout_s, resend=False
        )
        if response.error_message:
            raise order_error(response.error_message, "amend", order_id)
        result = translate.amend_result(request, response)
        self.orders.amended(result)
        return result

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every order this client knows to be resting; returns how many
        were cancelled (orders already gone are skipped quietly)."""
        cancelled = 0
        for order in list(self.orders.open_orders(symbol).values()):
            try:
                await self.cancel(order.symbol, order.order_id)
            except RiskLimitExceeded:
                raise
            except ExchangeError:
                self.orders.cancelled(CancelResult(order.order_id, order.symbol, 0))
            else:
                cancelled += 1
        return cancelled

    def open_orders(self, symbol: str | None = None) -> dict[int, OpenOrder]:
        """This user's resting orders as this client has seen them."""
        return self.orders.open_orders(symbol)

    def fills(self, symbol: str | None = None) -> EventStream[Fill]:
        """Every fill of this user's orders from now on (optionally one symbol)."""
        self._gateway()
        accept = None if symbol is None else (lambda fill: fill.symbol == symbol)
        return _ended_if_gone(self.gateway, self._fills.open(accept=accept))

    def cancels(self, symbol: str | None = None) -> EventStream[Cancel]:
        """Cancels the exchange made to this user's orders (book cleared or deleted)."""
        self._gateway()
        accept = None if symbol is None else (lambda cancel: cancel.symbol == symbol)
        return _ended_if_gone(self.gateway, self._cancels.open(accept=accept))

    def _on_gateway_push(self, message_type: int, message: Any) -> None:
        if message_type == MT.EXECUTION_ON_FILL:
            fill = translate.fill(message)
            self.orders.filled(fill)
            self._fills.publish(fill)
        elif message_type == MT.EXECUTION_ON_ORDER_CANCELLED:
            cancel = translate.cancel(message)
            self.orders.cancelled(cancel)
            self._cancels.publish(cancel)

    def _on_gateway_down(self) -> None:
        if self.gateway is not None and self.gateway.gone:
            # reconnect=False: nothing more can arrive; a reader waiting on
            # fills() must learn that rather than wait forever.
            error = self.gateway.gone_error()
            self._fills.finish_all(error)
            self._cancels.finish_all(error)
            return
        log.warning(
            "risk-gateway connection lost: fills and cancels until it is back are not "
            "replayed; open_orders() may be stale"
        )

    def _on_info_down(self) -> None:
        if self.info is not None and self.info.gone:
            # reconnect=False: end the market-data streams instead of leaving
            # their readers waiting for a connection that will not come back.
            self.market.close(self.info.gone_error())

    # ------------------------------------------------------------------ risk limits

    async def _limits_call(self, message_type: int, request: Any) -> Any:
        response = await self._gateway().call(
            message_type, request, timeout=self.request_timeout_s, resend=True
        )
        if response.error_message:
            raise LimitsError(response.error_message)
        return response

    async def get_user_limits(self, username: str = "") -> UserLimitLayers:
        """This user's own limits and the admin's limits for it (an admin may name a user)."""
        response = await self._limits_call(
            MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST,
            risk_limits_pb2.GetUserRiskLimitsRequest(username=username),
        )
        return UserLimitLayers(
            translate.user_limits(response.user_risk_limits),
            translate.user_limits(response.admin_user_risk_limits),
        )

    async def set_user_limits(self, limits: UserLimits, username: str = "") -> None:
        """Replace this user's own layer (an admin: the admin layer of ``username``)."""
        await self._limits_call(
            MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST,
            risk_limits_pb2.SetUserRiskLimitsRequest(
                user_risk_limits=translate.user_limits_to_pb(limits), username=username
            ),
        )

    async def get_instrument_limits(self, username: str = "") -> InstrumentLimitLayers:
        response = await self._limits_call(
            MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
            risk_limits_pb2.GetInstrumentRiskLimitsRequest(username=username),
        )
        return InstrumentLimitLayers(
            {
                s: translate.instrument_limits(v)
                for s, v in response.risk_limits_by_instrument.items()
            },
            {
                s: translate.instrument_limits(v)
                for s, v in response.admin_risk_limits_by_instrument.items()
            },
        )

    async def set_instrument_limits(
        self, symbol: str, limits: InstrumentLimits, username: str = ""
    ) -> None:
        """Replace the limits for one instrument (all zeros removes the entry)."""
        await self._limits_call(
            MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST,
            risk_limits_pb2.SetInstrumentRiskLimitsRequest(
                instrument_symbol=symbol,
                instrument_risk_limits=translate.instrument_limits_to_pb(limits),
                username=username,
            ),
        )

    # ------------------------------------------------------------------ market data

    def _info(self) -> MarketData:
        if self.info is None:
            raise NotAvailable("this client was connected without Info (market data)")
        return self.market

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        """Live instruments by symbol (kept current from Info's announcements)."""
        return MappingProxyType(self.market.instruments)

    def top_of_book(self, symbol: str) -> EventStream[TopOfBook]:
        """Best bid/ask of ``symbol``: the current state first, then every change.

        An unknown symbol raises :class:`SubscriptionError` from the first read;
        the stream ends if the instrument is deleted.
        """
        return _ended_if_gone(self.info, self._info().top_of_book(symbol))

    def depth(self, symbol: str, levels: int = 10) -> EventStream[Depth]:
        """The book of ``symbol`` cut to ``levels`` per side (0: all), current state first."""
        if levels < 0:
            raise ValueError("levels must be >= 0")
        return _ended_if_gone(self.info, self._info().depth(symbol, levels))

    def trades(self, symbol: str) -> EventStream[Trade]:
        """Every public trade in ``symbol`` from now on."""
        return _ended_if_gone(self.info, self._info().trades(symbol))

    def instrument_events(self) -> EventStream[InstrumentEvent]:
        """Instruments created and deleted from now on."""
        return _ended_if_gone(self.info, self._info().instrument_events())

    async def quotes(self) -> dict[str, Quote]:
        """Last trade price/quantity and traded volume of every live instrument."""
        info = self._info().link
        assert info is not None
        response = await info.call(
            MT.INFO_QUOTES_REQUEST,
            info_pb2.QuotesRequest(),
            timeout=self.request_timeout_s,
            resend=True,
        )
        if response.error_message:
            raise ExchangeError(response.error_message)
        return {q.instrument_symbol: translate.quote(q) for q in response.quotes}


S = TypeVar("S")


def _ended_if_gone(link: Link | None, stream: EventStream[S]) -> EventStream[S]:
    """``stream``, already ended with :class:`Disconnected` when ``link`` was lost
    for good (reconnect disabled): nothing could ever arrive on it."""
    if link is not None and link.gone:
        stream.finish(link.gone_error())
    return stream


class _Connecting:
    """What :meth:`Client.connect` returns: awaitable, or an async context manager."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._connect().__await__()

    async def _connect(self) -> Client:
        await self._client._start()
        return self._client

    async def __aenter__(self) -> Client:
        return await self._connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()
