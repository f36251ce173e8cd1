"""Races the real Order Book rarely shows, staged with a scripted fake Order Book:
a clear that beats the owner's cancel, and a gap in the event stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.pb import execution_pb2, order_book_pb2
from services.common.users import Role
from services.common.wire.framing import encode_frame
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session
from services.risk_gateway import execution
from tests.risk_gateway.conftest import BUY, MT, Exchange, _fast_verify
from tests.risk_gateway.test_service_recovery import free_port, until
from tests.support.inprocess import DEMO_PASSWORDS, demo_users
from tests.wire.rawclient import RawClient

ob = order_book_pb2
ex = execution_pb2


class ScriptedOrderBook:
    """A fake Order Book: a fixed snapshot (book 1, alice's order 7), stats answered
    at once, and a cancel handler the test scripts."""

    def __init__(self) -> None:
        self.logins = 0
        self.sessions: list[Session] = []
        self.on_cancel: Callable[[Session, Any], Any] = self._unknown
        clock = SystemClock()
        service = frozenset({int(Role.SERVICE)})
        self.server = WireServer(
            "scripted_order_book",
            self,
            [
                Route(MT.ORDER_BOOK_CANCEL_ORDER_REQUEST, self.cancel, service),
                Route(MT.ORDER_BOOK_GET_STATS_REQUEST, self.stats, service),
            ],
            login_roles={int(Role.SERVICE)},
            authenticator=Authenticator(demo_users(), clock, verify=_fast_verify()),
            clock=clock,
        )

    def on_login(self, session: Session) -> None:
        self.logins += 1
        self.sessions.append(session)
        session.send(
            MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED,
            ob.OnOrderBookCreated(order_book_id=1, tick_size=0.01),
        )
        session.send(
            MT.ORDER_BOOK_ON_ORDER_INSERTED,
            ob.OnOrderInserted(
                order_id=7,
                order_book_id=1,
                side=BUY,  # type: ignore[arg-type]
                price=10.0,
                quantity=5,
                username="alice",
            ),
        )

    def on_close(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    def cancel(self, session: Session, request: Any) -> Any:
        return self.on_cancel(session, request)

    def _unknown(self, session: Session, request: Any) -> Any:
        return ob.CancelOrderResponse(
            request_id=request.request_id, error_message="unknown order (not resting in this book)"
        )

    def stats(self, session: Session, request: Any) -> Any:
        return ob.GetStatsResponse(request_id=request.request_id)


async def start(tmp_path: Path) -> tuple[ScriptedOrderBook, Exchange, Any, RawClient]:
    fake = ScriptedOrderBook()
    _, port = await fake.server.start("127.0.0.1", 0)
    exchange = Exchange(tmp_path, book_port=port, info_port=free_port())
    app = await exchange.start_gateway()
    await until(lambda: app.order_book.ready)
    app.directory.added("AAPL", 1, 0.01, 0)
    raw = await RawClient.connect("127.0.0.1", exchange.gateway_port)
    assert (await raw.login("alice", DEMO_PASSWORDS["alice"])).error_message == ""
    return fake, exchange, app, raw


async def test_a_clear_that_beats_the_owners_cancel_is_still_reported(tmp_path: Path) -> None:
    fake, _, app, raw = await start(tmp_path)
    try:

        def cleared_first(session: Session, request: Any) -> Any:
            # The clear's event is written before this cancel's (failed) answer.
            session.send(
                MT.ORDER_BOOK_ON_ORDER_CANCELLED,
                ob.OnOrderCancelled(
                    order_id=7, order_book_id=1, cancelled_quantity=5, sequence_number=1
                ),
            )
            return fake._unknown(session, request)

        fake.on_cancel = cleared_first
        raw.send(ex.CancelOrderRequest(request_id=1, instrument_symbol="AAPL", order_id=7))
        kind, answer = await raw.recv()
        assert kind == MT.EXECUTION_CANCEL_ORDER_RESPONSE
        assert answer.error_message == execution.UNKNOWN_ORDER
        kind, push = await raw.recv()
        assert kind == MT.EXECUTION_ON_ORDER_CANCELLED
        assert (push.order_id, push.instrument_symbol, push.cancelled_quantity) == (7, "AAPL", 5)
        assert push.reason == "order book cleared"
        assert app.engine.user("alice").outstanding == 0
        await raw.close()
    finally:
        await app.stop()
        await fake.server.stop()


async def test_the_owners_own_cancel_is_not_pushed(tmp_path: Path) -> None:
    fake, _, app, raw = await start(tmp_path)
    try:
        fake.on_cancel = answer_then_event
        raw.send(ex.CancelOrderRequest(request_id=1, instrument_symbol="AAPL", order_id=7))
        kind, answer = await raw.recv()
        assert kind == MT.EXECUTION_CANCEL_ORDER_RESPONSE and answer.cancelled_quantity == 5
        raw.send(ex.CancelOrderRequest(request_id=2, instrument_symbol="AAPL", order_id=7))
        kind, answer = await raw.recv()  # no push in between: the next frame is this answer
        assert (kind, answer.request_id) == (MT.EXECUTION_CANCEL_ORDER_RESPONSE, 2)
        assert answer.error_message == execution.UNKNOWN_ORDER
        await raw.close()
    finally:
        await app.stop()
        await fake.server.stop()


def answer_then_event(session: Session, request: Any) -> None:
    """Answer a successful cancel, then write its event (as the real Order Book does)."""
    response = ob.CancelOrderResponse(request_id=request.request_id, cancelled_quantity=5)
    slot = session.reserve()
    session.fulfil(slot, _frame(MT.ORDER_BOOK_CANCEL_ORDER_RESPONSE, response))
    session.send(
        MT.ORDER_BOOK_ON_ORDER_CANCELLED,
        ob.OnOrderCancelled(order_id=7, order_book_id=1, cancelled_quantity=5, sequence_number=1),
    )


def _frame(message_type: int, message: Any) -> bytes:
    return encode_frame(message_type, message.SerializeToString())


async def test_a_gap_in_the_event_stream_resynchronises(tmp_path: Path) -> None:
    fake, _, app, raw = await start(tmp_path)
    try:
        assert fake.logins == 1
        (session,) = fake.sessions
        for number in (1, 3):  # 2 is missing
            session.send(
                MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED,
                ob.OnOrderBookCreated(
                    order_book_id=10 + number, tick_size=1.0, sequence_number=number
                ),
            )
        await until(lambda: fake.logins == 2 and app.order_book.ready)
        # The fresh snapshot rebuilt the table: alice's order 7 is there again.
        entry = app.table.get(7)
        assert entry is not None and entry.owner == "alice"
        await raw.close()
    finally:
        await app.stop()
        await fake.server.stop()
