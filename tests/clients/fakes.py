"""Scriptable stand-ins for the Risk Gateway and Info, on the real wire server.

Why fakes when the real services exist: they let the SDK tests provoke what a
real exchange does rarely and unpredictably (a connection dropped between an
insert and its answer, a lost market-data message, a restart on the same
port) deterministically and in milliseconds.  They speak the real protocol
through :class:`WireServer`, so the SDK is exercised over real TCP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.pb import common_pb2, execution_pb2, info_pb2, risk_limits_pb2
from services.common.users import Role
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session
from tests.support.inprocess import demo_users

MT = common_pb2.MessageType
PARTICIPANTS = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN)})


class _Base:
    name = "fake"
    login_roles: frozenset[int] = PARTICIPANTS

    def __init__(self) -> None:
        self.server: WireServer | None = None
        self.port = 0
        self.requests: list[tuple[int, Any]] = []

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def start(self, port: int = 0) -> int:
        clock = SystemClock()
        self.server = WireServer(
            self.name,
            self,
            self.routes(),
            self.login_roles,
            Authenticator(demo_users(), clock),
            clock,
        )
        _, self.port = await self.server.start("127.0.0.1", port)
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace_s=0.2)
            self.server = None

    def sessions(self, username: str | None = None) -> list[Session]:
        assert self.server is not None
        return [
            s
            for s in self.server.sessions
            if s.user is not None and (username is None or s.username == username)
        ]

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass


def later(session: Session, message_type: int, message: Any) -> None:
    """Push after the response being returned now (handlers run before it is queued)."""
    asyncio.get_running_loop().call_soon(session.send, message_type, message)


class FakeGateway(_Base):
    """Accepts every order (it rests), unless told otherwise; fills on demand."""

    name = "fake-gateway"

    def __init__(self) -> None:
        super().__init__()
        self.next_order_id = 1
        self.reject: str | None = None
        self.drop_next_insert = False
        self.by_coid: dict[tuple[str, str], execution_pb2.InsertOrderResponse] = {}
        self.orders: dict[int, tuple[str, execution_pb2.InsertOrderRequest]] = {}
        self.user_limits: dict[str, risk_limits_pb2.UserRiskLimits] = {}
        self.inserts = 0

    def routes(self) -> list[Route]:
        return [
            Route(MT.EXECUTION_INSERT_ORDER_REQUEST, self.insert, PARTICIPANTS),
            Route(MT.EXECUTION_CANCEL_ORDER_REQUEST, self.cancel, PARTICIPANTS),
            Route(MT.EXECUTION_AMEND_ORDER_REQUEST, self.amend, PARTICIPANTS),
            Route(MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, self.get_limits, PARTICIPANTS),
            Route(MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST, self.set_limits, PARTICIPANTS),
        ]

    def insert(self, session: Session, request: Any) -> Any:
        self.requests.append((MT.EXECUTION_INSERT_ORDER_REQUEST, request))
        key = (session.username, request.client_order_id)
        if request.client_order_id and key in self.by_coid:
            response = execution_pb2.InsertOrderResponse()
            response.CopyFrom(self.by_coid[key])
            response.request_id = request.request_id
            return response
        if self.reject is not None:
            return execution_pb2.InsertOrderResponse(
                request_id=request.request_id, error_message=self.reject
            )
        self.inserts += 1
        order_id = self.next_order_id
        self.next_order_id += 1
        self.orders[order_id] = (session.username, request)
        response = execution_pb2.InsertOrderResponse(
            request_id=request.request_id,
            order_id=order_id,
            timestamp=1,
            resting_quantity=request.quantity,
        )
        if request.client_order_id:
            self.by_coid[key] = response
        if self.drop_next_insert:
            self.drop_next_insert = False
            session.abort()  # processed, but the answer is lost with the connection
            return None
        return response

    def cancel(self, session: Session, request: Any) -> Any:
        self.requests.append((MT.EXECUTION_CANCEL_ORDER_REQUEST, request))
        entry = self.orders.get(request.order_id)
        if entry is None or entry[0] != session.username:
            return execution_pb2.CancelOrderResponse(
                request_id=request.request_id, error_message="unknown order"
            )
        del self.orders[request.order_id]
        return execution_pb2.CancelOrderResponse(
            request_id=request.request_id, cancelled_quantity=entry[1].quantity
        )

    def amend(self, session: Session, request: Any) -> Any:
        self.requests.append((MT.EXECUTION_AMEND_ORDER_REQUEST, request))
        if request.order_id not in self.orders:
            return execution_pb2.AmendOrderResponse(
                request_id=request.request_id, error_message="unknown order"
            )
        return execution_pb2.AmendOrderResponse(
            request_id=request.request_id, resting_quantity=request.quantity, timestamp=2
        )

    def get_limits(self, session: Session, request: Any) -> Any:
        return risk_limits_pb2.GetUserRiskLimitsResponse(
            request_id=request.request_id,
            user_risk_limits=self.user_limits.get(session.username),
        )

    def set_limits(self, session: Session, request: Any) -> Any:
        if request.username and request.username != session.username:
            return risk_limits_pb2.SetUserRiskLimitsResponse(
                request_id=request.request_id, error_message="not permitted"
            )
        self.user_limits[session.username] = request.user_risk_limits
        return risk_limits_pb2.SetUserRiskLimitsResponse(request_id=request.request_id)

    def fill(self, order_id: int, quantity: int, remaining: int, trade_id: int = 1) -> None:
        username, request = self.orders[order_id]
        message = execution_pb2.OnFill(
            order_id=order_id,
            instrument_symbol=request.instrument_symbol,
            trade_id=trade_id,
            side=request.side,
            price=request.price,
            quantity=quantity,
            remaining_quantity=remaining,
            timestamp=3,
        )
        for session in self.sessions(username):
            session.send(MT.EXECUTION_ON_FILL, message)

    def cancel_unsolicited(self, order_id: int) -> None:
        username, request = self.orders.pop(order_id)
        message = execution_pb2.OnOrderCancelled(
            order_id=order_id,
            instrument_symbol=request.instrument_symbol,
            cancelled_quantity=request.quantity,
            reason="order book cleared",
            timestamp=4,
        )
        for session in self.sessions(username):
            session.send(MT.EXECUTION_ON_ORDER_CANCELLED, message)


@dataclass
class _FakeBook:
    bids: list[tuple[float, int]] = field(default_factory=list)
    asks: list[tuple[float, int]] = field(default_factory=list)
    trades: int = 0


class FakeInfo(_Base):
    """Instruments, subscriptions with per-subscription numbering, and scripted books."""

    name = "fake-info"
    login_roles = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN), int(Role.SERVICE)})

    def __init__(self, symbols: tuple[str, ...] = ("AAPL", "MSFT")) -> None:
        super().__init__()
        self.books: dict[str, _FakeBook] = {s: _FakeBook() for s in symbols}
        self.ids = {s: i + 1 for i, s in enumerate(symbols)}
        # (session, symbol, type) -> next sequence number
        self.subs: dict[tuple[Session, str, int], int] = {}
        self.subscribe_count = 0

    def routes(self) -> list[Route]:
        anyone = self.login_roles
        return [
            Route(MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST, self.subscribe, anyone),
            Route(MT.INFO_ORDER_BOOK_UNSUBSCRIBE_REQUEST, self.unsubscribe, anyone),
            Route(MT.INFO_QUOTES_REQUEST, self.quotes, anyone),
        ]

    def instrument(self, symbol: str) -> info_pb2.OnInstrument:
        return info_pb2.OnInstrument(
            instrument=common_pb2.Instrument(
                symbol=symbol, description=f"{symbol} Inc.", currency="USD"
            ),
            tick_size=0.01,
            order_book_id=self.ids[symbol],
        )

    def on_login(self, session: Session) -> None:
        for symbol in self.books:
            session.send(MT.INFO_ON_INSTRUMENT, self.instrument(symbol))

    def on_close(self, session: Session) -> None:
        for key in [k for k in self.subs if k[0] is session]:
            del self.subs[key]

    def quotes(self, session: Session, request: Any) -> Any:
        return info_pb2.QuotesResponse(
            request_id=request.request_id,
            quotes=[info_pb2.Quote(instrument_symbol=s) for s in self.books],
        )

    def subscribe(self, session: Session, request: Any) -> Any:
        self.subscribe_count += 1
        key = (session, request.instrument_symbol, request.subscription_type)
        if request.instrument_symbol not in self.books:
            return info_pb2.OrderBookSubscribeResponse(
                request_id=request.request_id, error_message="unknown instrument"
            )
        if key in self.subs:
            return info_pb2.OrderBookSubscribeResponse(
                request_id=request.request_id, error_message="already subscribed"
            )
        self.subs[key] = 1
        asyncio.get_running_loop().call_soon(self._send_state, key)
        return info_pb2.OrderBookSubscribeResponse(request_id=request.request_id)

    def unsubscribe(self, session: Session, request: Any) -> Any:
        key = (session, request.instrument_symbol, request.subscription_type)
        if self.subs.pop(key, None) is None:
            return info_pb2.OrderBookUnsubscribeResponse(
                request_id=request.request_id, error_message="not subscribed"
            )
        return info_pb2.OrderBookUnsubscribeResponse(request_id=request.request_id)

    def _send_state(self, key: tuple[Session, str, int], skip: int = 0) -> None:
        if key not in self.subs:
            return
        session, symbol, kind = key
        book = self.books[symbol]
        self.subs[key] += skip
        seq = self.subs[key]
        self.subs[key] += 1
        if kind == info_pb2.TOP_OF_BOOK:
            message: Any = info_pb2.OnTopOfBook(instrument_symbol=symbol, sequence_number=seq)
            if book.bids:
                message.best_bid.CopyFrom(self._levels(book.bids[:1])[0])
            if book.asks:
                message.best_ask.CopyFrom(self._levels(book.asks[:1])[0])
            session.send(MT.INFO_ON_TOP_OF_BOOK, message)
        else:
            message = info_pb2.OnPriceDepthBook(
                instrument_symbol=symbol,
                sequence_number=seq,
                bids=self._levels(book.bids),
                asks=self._levels(book.asks),
            )
            session.send(MT.INFO_ON_PRICE_DEPTH_BOOK, message)

    @staticmethod
    def _levels(side: list[tuple[float, int]]) -> list[info_pb2.PriceLevel]:
        return [info_pb2.PriceLevel(price=p, quantity=q) for p, q in side]

    def set_book(
        self,
        symbol: str,
        bids: list[tuple[float, int]],
        asks: list[tuple[float, int]],
        skip: int = 0,
    ) -> None:
        """Change a book and publish it to subscribers (``skip`` numbers: a gap)."""
        book = self.books[symbol]
        book.bids, book.asks = bids, asks
        for key in list(self.subs):
            if key[1] == symbol:
                self._send_state(key, skip)

    def trade(self, symbol: str, price: float, quantity: int, skip: int = 0) -> None:
        book = self.books[symbol]
        book.trades += 1 + skip
        message = info_pb2.OnTrade(
            trade_id=1000 + book.trades,
            instrument_symbol=symbol,
            price=price,
            quantity=quantity,
            sequence_number=book.trades,
        )
        sent: set[Session] = set()
        for session, sym, _ in list(self.subs):
            if sym == symbol and session not in sent:
                sent.add(session)
                session.send(MT.INFO_ON_TRADE, message)

    def add_instrument(self, symbol: str) -> None:
        self.books[symbol] = _FakeBook()
        self.ids[symbol] = max(self.ids.values(), default=0) + 1
        assert self.server is not None
        self.server.broadcast(MT.INFO_ON_INSTRUMENT, self.instrument(symbol))

    def delete_instrument(self, symbol: str) -> None:
        del self.books[symbol]
        for key in [k for k in self.subs if k[1] == symbol]:
            del self.subs[key]
        assert self.server is not None
        self.server.broadcast(
            MT.INFO_ON_INSTRUMENT_DELETED, info_pb2.OnInstrumentDeleted(instrument_symbol=symbol)
        )
