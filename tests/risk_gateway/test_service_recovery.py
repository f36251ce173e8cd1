"""Failures and restarts: the Order Book down and back, requests in flight when
its connection drops, and a Gateway restart keeping limits, windows and
client_order_ids (outstanding rebuilt from the Order Book's snapshot)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.auth import Authenticator
from services.common.clock import ManualClock, SystemClock
from services.common.pb import common_pb2, execution_pb2, order_book_pb2, risk_limits_pb2
from services.common.users import Role
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session
from services.risk_gateway import app as app_module
from services.risk_gateway import compaction as compaction_module
from services.risk_gateway import execution
from services.risk_gateway.app import RiskGatewayApp
from tests.risk_gateway.conftest import BUY, MT, Exchange, Trader, _fast_verify
from tests.support.inprocess import DEMO_PASSWORDS, demo_users
from tests.wire.rawclient import RawClient

rl = risk_limits_pb2
ex = execution_pb2


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a state change of a background task (reconnects), with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


def gateway(exchange: Exchange) -> RiskGatewayApp:
    assert exchange.gateway is not None
    return exchange.gateway


async def test_order_book_down_and_back(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    await alice.set_user_limits(max_outstanding_quantity=10)
    resting = await alice.insert("AAPL", BUY, 10.0, 5)
    messages = gateway(exchange).engine.user("alice").messages
    counted = messages.sum_since(3600, 0.0)
    await exchange.book.stop()
    await until(lambda: not gateway(exchange).order_book.ready)
    for answer in (
        await alice.insert("AAPL", BUY, 10.0, 1),
        await alice.cancel("AAPL", resting.order_id),
        await alice.amend("AAPL", resting.order_id, 10.0, 1),
    ):
        assert answer.error_message == execution.UNAVAILABLE
    assert messages.sum_since(3600, 0.0) == counted  # nothing forwarded, nothing counted
    # Limits still answer while the Order Book is away.
    got = await alice.call(
        MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, rl.GetUserRiskLimitsRequest()
    )
    assert got.user_risk_limits.max_outstanding_quantity == 10
    await exchange.start_book()
    await until(lambda: gateway(exchange).order_book.ready)
    # The order table and exposures were rebuilt from the fresh snapshot.
    refused = await alice.insert("AAPL", BUY, 10.0, 6)
    assert "max_outstanding_quantity" in refused.error_message
    cancelled = await alice.cancel("AAPL", resting.order_id)
    assert cancelled.error_message == "" and cancelled.cancelled_quantity == 5
    assert (await alice.insert("AAPL", BUY, 10.0, 10)).error_message == ""


class HangingOrderBook:
    """A fake Order Book: empty snapshot, answers the barrier, never answers orders."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        clock = SystemClock()
        service = frozenset({int(Role.SERVICE)})
        routes = [
            Route(MT.ORDER_BOOK_INSERT_ORDER_REQUEST, self.hold, service),
            Route(MT.ORDER_BOOK_CANCEL_ORDER_REQUEST, self.hold, service),
            Route(MT.ORDER_BOOK_AMEND_ORDER_REQUEST, self.hold, service),
            Route(MT.ORDER_BOOK_GET_STATS_REQUEST, self.stats, service),
        ]
        self.server = WireServer(
            "fake_order_book",
            self,
            routes,
            login_roles={int(Role.SERVICE)},
            authenticator=Authenticator(demo_users(), clock, verify=_fast_verify()),
            clock=clock,
        )

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass

    def hold(self, session: Session, request: Any) -> Any:
        self.received.append(request)
        return asyncio.get_running_loop().create_future()  # never answered

    def stats(self, session: Session, request: Any) -> Any:
        return order_book_pb2.GetStatsResponse(request_id=request.request_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_requests_in_flight_when_the_order_book_drops_are_answered_once(
    tmp_path: Path,
) -> None:
    fake = HangingOrderBook()
    _, book_port = await fake.server.start("127.0.0.1", 0)
    exchange = Exchange(tmp_path, book_port=book_port, info_port=free_port())
    app = await exchange.start_gateway()
    try:
        await until(lambda: app.order_book.ready)
        app.directory.added("AAPL", 1, 0.01, 0)
        app.table.book_created(1, 0.01)
        app.table.inserted(7, 1, BUY, 10.0, 5, "alice", 0, snapshot=True)
        raw = await RawClient.connect("127.0.0.1", exchange.gateway_port)
        assert (await raw.login("alice", DEMO_PASSWORDS["alice"])).error_message == ""
        raw.send(
            ex.InsertOrderRequest(
                request_id=1,
                instrument_symbol="AAPL",
                side=BUY,  # type: ignore[arg-type]
                price=10.0,
                quantity=3,
                client_order_id="c1",
            )
        )
        raw.send(ex.CancelOrderRequest(request_id=2, instrument_symbol="AAPL", order_id=7))
        raw.send(
            ex.AmendOrderRequest(
                request_id=3, instrument_symbol="AAPL", order_id=7, price=10.0, quantity=9
            )
        )
        await until(lambda: len(fake.received) == 3)
        assert app.engine.user("alice").reserved == 3 + 4
        await fake.server.stop()
        answers = [await raw.recv() for _ in range(3)]
        assert [(kind, m.request_id) for kind, m in answers] == [
            (MT.EXECUTION_INSERT_ORDER_RESPONSE, 1),
            (MT.EXECUTION_CANCEL_ORDER_RESPONSE, 2),
            (MT.EXECUTION_AMEND_ORDER_RESPONSE, 3),
        ]
        assert answers[0][1].error_message == execution.LOST_INSERT
        assert answers[1][1].error_message == execution.LOST_CANCEL
        assert answers[2][1].error_message == execution.LOST_AMEND
        assert app.engine.user("alice").reserved == 0
        # Nothing else is owed: the next answer is the next request's.
        raw.send(rl.GetUserRiskLimitsRequest(request_id=4))
        kind, message = await raw.recv()
        assert (kind, message.request_id) == (MT.RISK_LIMITS_GET_USER_RISK_LIMITS_RESPONSE, 4)
        # While it is away, requests are refused at once.
        raw.send(
            ex.InsertOrderRequest(
                request_id=5,
                instrument_symbol="AAPL",
                side=BUY,  # type: ignore[arg-type]
                price=10.0,
                quantity=1,
            )
        )
        kind, message = await raw.recv()
        assert message.request_id == 5 and message.error_message == execution.UNAVAILABLE
        await raw.close()
    finally:
        await app.stop()


async def test_a_restarted_gateway_keeps_limits_windows_and_client_order_ids(
    exchange: Exchange,
) -> None:
    clock = exchange.clock
    assert isinstance(clock, ManualClock)
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    await alice.set_user_limits(max_outstanding_quantity=20)
    await admin.set_instrument_limits(
        "AAPL",
        "alice",
        order_quantity_rolling_limit=risk_limits_pb2.RollingWindowLimit(
            limit=20, window_in_seconds=60
        ),
    )
    first = await alice.insert("AAPL", BUY, 10.0, 8, client_order_id="keep")
    assert first.error_message == ""
    ioc = await alice.insert("AAPL", BUY, 9.0, 10, tif=1)  # traded nothing, still counted
    assert ioc.error_message == ""
    await gateway(exchange).stop()
    clock.advance(30)
    await exchange.start_gateway()
    alice = await exchange.trader("alice")
    got = await alice.call(
        MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, rl.GetUserRiskLimitsRequest()
    )
    assert got.user_risk_limits.max_outstanding_quantity == 20
    instruments = await alice.call(
        MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST, rl.GetInstrumentRiskLimitsRequest()
    )
    assert (
        instruments.admin_risk_limits_by_instrument["AAPL"].order_quantity_rolling_limit.limit == 20
    )
    # The resend returns the original outcome, without a new order.
    sequence = exchange.book.engine.last_sequence_number
    again = await alice.insert("AAPL", BUY, 10.0, 8, client_order_id="keep")
    assert again.order_id == first.order_id and again.resting_quantity == 8
    assert exchange.book.engine.last_sequence_number == sequence
    # The window still holds 18 of 20; outstanding (8 resting) came from the snapshot.
    assert (
        "order_quantity_rolling_limit"
        in (await alice.insert("AAPL", BUY, 9.0, 3, tif=1)).error_message
    )
    assert "max_outstanding_quantity" in (await alice.insert("AAPL", BUY, 9.0, 13)).error_message
    clock.advance(30)  # the first two orders leave the 60 s window
    assert (await alice.insert("AAPL", BUY, 9.0, 4)).error_message == ""


async def test_a_gateway_started_before_the_order_book_connects_when_it_appears(
    tmp_path: Path,
) -> None:
    exchange = Exchange(tmp_path, book_port=free_port(), info_port=free_port())
    app = await exchange.start_gateway()
    try:
        alice = await exchange.trader("alice")
        app.directory.added("AAPL", 1, 0.01, 0)
        answer = await alice.insert("AAPL", BUY, 10.0, 1)
        assert answer.error_message == execution.UNAVAILABLE
        await exchange.start_book()
        await until(lambda: app.order_book.ready)
        assert app.order_book.conn is not None
        response = await app.order_book.conn.request_raw(
            MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=0.01)
        )
        assert response.order_book_id == 1
        assert (await alice.insert("AAPL", BUY, 10.0, 1)).error_message == ""
        assert common_pb2.MessageType.Name(MT.EXECUTION_ON_FILL) == "EXECUTION_ON_FILL"
    finally:
        await exchange.stop()


async def test_an_unreadable_risk_state_refuses_to_start(tmp_path: Path) -> None:
    exchange = Exchange(tmp_path, book_port=free_port(), info_port=free_port())
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "risk_state.json").write_text("{not json")
    try:
        await exchange.start_gateway()
    except OSError as exc:
        assert "unreadable" in str(exc)
    else:
        raise AssertionError("started on an unreadable risk state")


async def _alice_with_quantity_window(exchange: Exchange, limit: int) -> Trader:
    """AAPL created, and alice trading it under an admin-set 60 s quantity window."""
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    await admin.set_instrument_limits(
        "AAPL",
        "alice",
        order_quantity_rolling_limit=risk_limits_pb2.RollingWindowLimit(
            limit=limit, window_in_seconds=60
        ),
    )
    return alice


async def test_compacting_while_serving_keeps_every_record(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """The Gateway compacts its journal on a worker thread while it serves; what
    arrives meanwhile goes to the second journal, and a restart sees it all.
    The compaction says so in one line of the log."""
    app = gateway(exchange)
    clock = exchange.clock
    assert isinstance(clock, ManualClock)
    alice = await _alice_with_quantity_window(exchange, 10)
    assert (await alice.insert("AAPL", BUY, 9.0, 4, tif=1)).error_message == ""
    compaction = asyncio.create_task(app.compact())
    await asyncio.sleep(0)  # begun: state copied, new records go to the next journal
    assert app.store.rotated
    assert (await alice.insert("AAPL", BUY, 9.0, 4, tif=1)).error_message == ""
    with caplog.at_level(logging.INFO, logger="optivex.risk_gateway"):
        await compaction
    lines = [r.getMessage() for r in caplog.records if "compacted" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("risk journal compacted in the background: ")
    assert "loop turns of copying" in lines[0]
    assert not app.store.rotated
    assert sorted(p.name for p in app.store.data_dir.iterdir() if "journal" in p.name) == [
        "risk_journal.jsonl"
    ]
    await app.stop()
    await exchange.start_gateway()
    alice = await exchange.trader("alice")
    # 8 of 10 lots are in the window: 2 more fit, 3 do not.
    refused = await alice.insert("AAPL", BUY, 9.0, 3, tif=1)
    assert "order_quantity_rolling_limit" in refused.error_message
    assert (await alice.insert("AAPL", BUY, 9.0, 2, tif=1)).error_message == ""


async def test_compactions_the_housekeeping_starts_keep_every_record(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The housekeeping starts compactions as tasks of their own (trimming goes
    on meanwhile), each copying a few entries per loop turn while requests
    arrive; the Gateway stops in the middle of one. A restart sees every
    order and client_order_id."""
    monkeypatch.setattr(app_module, "HOUSEKEEPING_S", 0.002)
    monkeypatch.setattr(app_module, "COMPACT_CHECK_EVERY", 1)
    monkeypatch.setattr(app_module, "COMPACT_BYTES", 0)
    monkeypatch.setattr(compaction_module, "COPY_STEP", 2)
    await gateway(exchange).stop()
    app = await exchange.start_gateway()
    finished: list[None] = []
    finish = app.store.finish_compaction
    monkeypatch.setattr(app.store, "finish_compaction", lambda: finished.append(finish()))
    alice = await _alice_with_quantity_window(exchange, 30)
    for number in range(15):
        reply = await alice.insert("AAPL", BUY, 9.0, 2, tif=1, client_order_id=f"c{number}")
        assert reply.error_message == ""
        await asyncio.sleep(0.003)
    await until(lambda: len(finished) >= 2)
    await until(lambda: app.store.rotated)  # stopped with a compaction under way
    await app.stop()
    await exchange.start_gateway()
    alice = await exchange.trader("alice")
    assert (await alice.insert("AAPL", BUY, 9.0, 30, tif=1, client_order_id="c3")).order_id
    refused = await alice.insert("AAPL", BUY, 9.0, 1, tif=1)
    assert "order_quantity_rolling_limit" in refused.error_message


async def test_a_snapshot_is_written_with_the_collector_paused_and_short_thread_turns(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the background snapshot is written the loop must keep its pace: the
    GIL changes hands every 0.5 ms instead of 5, and no full collection runs
    (one walks the whole window history). Both come back afterwards, also when
    the write fails."""
    app = gateway(exchange)
    alice = await _alice_with_quantity_window(exchange, 10)
    assert (await alice.insert("AAPL", BUY, 9.0, 1, tif=1)).error_message == ""
    seen: list[tuple[bool, float]] = []
    write = compaction_module.Compaction.write

    def recording(self: compaction_module.Compaction) -> None:
        seen.append((gc.isenabled(), sys.getswitchinterval()))
        write(self)

    monkeypatch.setattr(compaction_module.Compaction, "write", recording)
    interval = sys.getswitchinterval()
    await app.compact()
    assert seen == [(False, app_module.SNAPSHOT_SWITCH_INTERVAL_S)]
    assert gc.isenabled() and sys.getswitchinterval() == interval
    with pytest.raises(OSError), app_module._writing_a_snapshot():
        raise OSError("disk full")
    assert gc.isenabled() and sys.getswitchinterval() == interval
