"""Who may do what: roles per port, identity, limits across connections,
private messages, and no secret in any log line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.pb import admin_pb2, common_pb2, execution_pb2, info_pb2
from services.common.pb import risk_limits_pb2 as rl
from services.common.wire import errors
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import RemoteError
from services.common.wire.framing import encode_frame
from tests.reliability.cluster import DEMO_PASSWORDS, SERVICE_PASSWORD, Cluster
from tests.reliability.inprocess import InProcessExchange
from tests.support.inprocess import DEMO_PASSWORDS as INPROCESS_PASSWORDS
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
PRIVATE = {MT.EXECUTION_ON_FILL, MT.EXECUTION_ON_ORDER_CANCELLED}


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[InProcessExchange]:
    running = await InProcessExchange(tmp_path).start()
    await running.create("SEC")
    try:
        yield running
    finally:
        await running.stop()


async def reply(client: RawClient, request_id: int) -> tuple[int, Any]:
    while True:
        kind, message = await client.recv()
        if kind not in PRIVATE and getattr(message, "request_id", None) == request_id:
            return kind, message


@pytest.mark.parametrize(
    ("port", "user", "allowed"),
    [
        ("order_book", "alice", False),
        ("order_book", "admin", False),
        ("order_book", "service", True),
        ("admin", "alice", False),
        ("admin", "service", False),
        ("admin", "admin", True),
        ("risk_gateway", "service", False),
        ("risk_gateway", "admin", True),
        ("risk_gateway", "alice", True),
        ("info", "alice", True),
    ],
)
async def test_who_may_log_in_where(
    exchange: InProcessExchange, port: str, user: str, allowed: bool
) -> None:
    client = await exchange.ports[port].client()
    answer = await client.login(user, INPROCESS_PASSWORDS[user])
    if allowed:
        assert answer.error_message == ""
    else:
        assert (
            answer.error_message.startswith("role '") and "may not log in" in answer.error_message
        )
        # Still not logged in: a request is refused as such.
        served = exchange.ports[port].serves[0]
        client.send_raw(encode_frame(served, b"\x08\x03"))  # request_id 3
        _, refusal = await reply(client, 3)
        assert refusal.error_message == errors.NOT_LOGGED_IN
    await client.close()


async def test_participants_cannot_send_internal_types(exchange: InProcessExchange) -> None:
    before = exchange.state_hash()
    info = await exchange.ports["info"].logged_in("alice")
    for message in (
        info_pb2.CreateInstrumentRequest(
            request_id=1,
            instrument=common_pb2.Instrument(symbol="EVIL"),
            tick_size=0.01,
            order_book_id=exchange.symbols["SEC"],
        ),
        info_pb2.DeleteInstrumentRequest(request_id=2, instrument_symbol="SEC"),
    ):
        info.send(message)
        kind, answer = await reply(info, message.request_id)
        assert (kind, answer.error_message) == (MT.ON_ERROR, errors.NOT_PERMITTED)
    gateway = await exchange.ports["risk_gateway"].logged_in("alice")
    for message_type in (10, 12, 62, 130, 140, 142, 144, 146, 30, 32):
        gateway.send_raw(encode_frame(message_type, b"\x08\x07"))
        kind, answer = await gateway.recv()
        assert (kind, answer.message_type) == (MT.ON_ERROR, message_type)
        assert "not served" in answer.error_message
    # (An admin on the Gateway may trade, as itself: PROTOCOL.md section 3 lists
    # 40-56 for participants and admins alike; tests/risk_gateway covers it.)
    for client in (info, gateway):
        await client.close()
    assert exchange.state_hash() == before
    assert set(await _info_symbols(exchange)) == {"SEC"}


async def _info_symbols(exchange: InProcessExchange) -> list[str]:
    client = await exchange.ports["info"].logged_in("dave")
    client.send(info_pb2.QuotesRequest(request_id=1))
    _, quotes = await reply(client, 1)
    await client.close()
    return [quote.instrument_symbol for quote in quotes.quotes]


async def test_participants_cannot_choose_their_identity(exchange: InProcessExchange) -> None:
    alice = await exchange.ports["risk_gateway"].logged_in("alice")
    bob = await exchange.ports["risk_gateway"].logged_in("bob")
    # The Order Book's on_behalf_of_username is field 100; smuggled into an
    # execution insert it is an unknown field, and the Gateway stamps the login.
    request = execution_pb2.InsertOrderRequest(
        request_id=1, instrument_symbol="SEC", price=5.0, quantity=4, client_order_id="who"
    )
    smuggled = request.SerializeToString() + b"\xa2\x06\x03bob"  # field 100, "bob"
    alice.send_raw(encode_frame(MT.EXECUTION_INSERT_ORDER_REQUEST, smuggled))
    _, placed = await reply(alice, 1)
    assert placed.error_message == ""
    owners = {o.order_id: o.username for o in exchange.book.engine.resting_orders()}
    assert owners[placed.order_id] == "alice"
    bob.send(
        execution_pb2.CancelOrderRequest(
            request_id=2, instrument_symbol="SEC", order_id=placed.order_id
        )
    )
    assert (await reply(bob, 2))[1].error_message == "unknown order"
    # Limits: a participant may name only itself.
    for message_type, message in (
        (50, rl.GetUserRiskLimitsRequest(request_id=3, username="bob")),
        (52, rl.SetUserRiskLimitsRequest(request_id=3, username="bob")),
        (54, rl.GetInstrumentRiskLimitsRequest(request_id=3, username="bob")),
        (
            56,
            rl.SetInstrumentRiskLimitsRequest(
                request_id=3, username="bob", instrument_symbol="SEC"
            ),
        ),
    ):
        alice.send(message, message_type)
        _, answer = await reply(alice, 3)
        assert "not permitted" in answer.error_message, message_type
    # Login names the account; the password must be that account's.
    other = await exchange.ports["risk_gateway"].client()
    assert (await other.login("alice", INPROCESS_PASSWORDS["bob"])).error_message == (
        errors.INVALID_CREDENTIALS
    )
    for client in (alice, bob, other):
        await client.close()


async def _admin_limits(exchange: InProcessExchange, **limits: Any) -> None:
    admin = await exchange.ports["risk_gateway"].logged_in("admin")
    admin.send(
        rl.SetUserRiskLimitsRequest(
            request_id=1, username="alice", user_risk_limits=rl.UserRiskLimits(**limits)
        )
    )
    assert (await reply(admin, 1))[1].error_message == ""
    await admin.close()


async def test_limits_apply_across_all_of_a_users_connections(
    exchange: InProcessExchange,
) -> None:
    await _admin_limits(exchange, max_outstanding_quantity=10)
    first = await exchange.ports["risk_gateway"].logged_in("alice")
    second = await exchange.ports["risk_gateway"].logged_in("alice")
    first.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="SEC", price=5.0, quantity=6
        )
    )
    assert (await reply(first, 1))[1].error_message == ""
    second.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="SEC", price=5.0, quantity=6
        )
    )
    refused = (await reply(second, 1))[1].error_message
    assert "max_outstanding_quantity" in refused
    # Replaces the layer: no outstanding limit now, at most 5 messages a minute.
    # The first insert above counted (windows record from the start; the
    # refused one did not), so four more pass and the fifth is refused.
    await _admin_limits(
        exchange, message_rate_rolling_limit=rl.RollingWindowLimit(limit=5, window_in_seconds=60)
    )
    outcomes = []
    for request_id in range(2, 7):  # alternating connections
        client = first if request_id % 2 else second
        client.send(
            execution_pb2.InsertOrderRequest(
                request_id=request_id, instrument_symbol="SEC", price=5.0, quantity=1
            )
        )
        outcomes.append((await reply(client, request_id))[1].error_message)
    assert outcomes[:4] == ["", "", "", ""] and "message_rate_rolling_limit" in outcomes[4]
    await first.close()
    await second.close()


async def test_private_messages_reach_only_their_owner(exchange: InProcessExchange) -> None:
    gateway = exchange.ports["risk_gateway"]
    alice_a, alice_b = await gateway.logged_in("alice"), await gateway.logged_in("alice")
    bob, carol = await gateway.logged_in("bob"), await gateway.logged_in("carol")
    alice_a.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="SEC", price=5.0, quantity=10
        )
    )
    order = (await reply(alice_a, 1))[1]
    bob.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="SEC", price=5.0, quantity=4, side=common_pb2.SELL
        )
    )
    assert (await reply(bob, 1))[1].traded_quantity == 4
    admin = await exchange.ports["admin"].logged_in("admin")
    admin.send(admin_pb2.ClearOrderBookRequest(request_id=1, instrument_symbol="SEC"))
    assert (await reply(admin, 1))[1].cancelled_orders == 1

    async def pushes(client: RawClient) -> list[tuple[int, Any]]:
        """Everything private this connection got, up to a barrier request."""
        client.send(rl.GetUserRiskLimitsRequest(request_id=99))
        seen = []
        while True:
            kind, message = await client.recv()
            if kind in PRIVATE:
                seen.append((kind, message))
            elif getattr(message, "request_id", 0) == 99:
                return seen

    for connection in (alice_a, alice_b):
        got = await pushes(connection)
        assert [(k, m.order_id) for k, m in got] == [
            (MT.EXECUTION_ON_FILL, order.order_id),
            (MT.EXECUTION_ON_ORDER_CANCELLED, order.order_id),
        ]
    bob_got = await pushes(bob)
    assert [k for k, _ in bob_got] == [MT.EXECUTION_ON_FILL]
    assert bob_got[0][1].order_id != order.order_id
    assert await pushes(carol) == []
    for client in (alice_a, alice_b, bob, carol, admin):
        await client.close()


async def test_no_secret_appears_in_any_log_line(tmp_path: Path) -> None:
    """Every service at DEBUG, with good and bad logins of every kind; then grep."""
    debug = ("--log-level", "DEBUG")
    cluster = await asyncio.to_thread(Cluster(tmp_path, common=debug).start)
    wrong = ["hunter2-wrong-secret", "Tr0ub4dor&3", DEMO_PASSWORDS["bob"] + "-x"]
    try:
        await cluster.create("LOGS")
        targets = [
            (cluster.gateway.port, "alice"),
            (cluster.gateway.port, "admin"),
            (cluster.info.port, "dave"),
            (cluster.admin.port, "admin"),
            (cluster.book.port, "service"),
        ]
        passwords = {**DEMO_PASSWORDS, "service": SERVICE_PASSWORD}
        for port, user in targets:
            conn = await UpstreamConnection.open("127.0.0.1", port, user, passwords[user])
            conn.close()
            for password in [*wrong, passwords["bob"], SERVICE_PASSWORD]:
                if password == passwords[user]:
                    continue
                with pytest.raises(RemoteError, match=errors.INVALID_CREDENTIALS):
                    await UpstreamConnection.open("127.0.0.1", port, user, password)
        # The service account where it is not admitted (with its right password).
        for port in (cluster.gateway.port, cluster.admin.port):
            with pytest.raises(RemoteError, match="may not log in"):
                await UpstreamConnection.open("127.0.0.1", port, "service", SERVICE_PASSWORD)
        # An order and a limit change, so the request paths log what they log.
        trader = await UpstreamConnection.open(
            "127.0.0.1", cluster.gateway.port, "carol", "carol-demo"
        )
        await trader.request(
            MT.EXECUTION_INSERT_ORDER_REQUEST,
            execution_pb2.InsertOrderRequest(instrument_symbol="LOGS", price=1.0, quantity=1),
        )
        trader.close()
    finally:
        statuses = await asyncio.to_thread(cluster.stop)
    assert set(statuses.values()) == {0}
    lines = list(cluster.logs())
    at_debug = sum(" DEBUG " in line for _, line in lines)
    print(f"{len(lines)} log lines, {at_debug} at DEBUG")
    secrets = [*DEMO_PASSWORDS.values(), SERVICE_PASSWORD, *wrong]
    leaks = [(name, line) for name, line in lines for secret in secrets if secret in line]
    assert leaks == []
    assert any("failed login" in line or "failed logins" in line for _, line in lines)
