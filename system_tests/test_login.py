"""Login and roles: PROTOCOL.md sections 2 and 3 (who logs in where, before-login rules)."""

from __future__ import annotations

import asyncio
import time

import pytest

from system_tests.harness.checks import ADMIN, BUY, IOC, PARTICIPANT, SELL, SERVICE, eq, ok, refused
from system_tests.harness.messages import ON_ERROR, RESPONSE_OF, name_of, type_of
from system_tests.harness.ports import PORTS, endpoint, probe
from system_tests.harness.world import World, insert, new_symbol
from system_tests.pb import admin_pb2, common_pb2, execution_pb2, info_pb2, risk_limits_pb2

ROLE_NAMES = {PARTICIPANT: "participant", ADMIN: "admin", SERVICE: "service"}


def _login(world: World, who: str) -> tuple[str, str]:
    if who == "participant":
        return world.participant(0)
    if who == "admin":
        return world.target.admin_login
    return world.service_login()


@pytest.mark.parametrize(
    ("port", "who", "role"),
    [
        ("info", "participant", PARTICIPANT),
        ("info", "admin", ADMIN),
        ("info", "service", SERVICE),
        ("gateway", "participant", PARTICIPANT),
        ("gateway", "admin", ADMIN),
        ("admin", "admin", ADMIN),
        ("order_book", "service", SERVICE),
    ],
)
async def test_admitted_role_logs_in_and_learns_its_role(
    world: World, port: str, who: str, role: int
) -> None:
    """Ports admit: Order Book `service`; Info any user; Admin `admin`; Risk Gateway `participant` or `admin`. LoginResponse carries the role."""
    user, password = _login(world, who)
    conn = await world.connect(endpoint(world, port))
    response = await conn.login(user, password)
    ok(response, f"login of {who} {user!r} on {port}")
    eq(response.role, role, f"LoginResponse.role of {who} {user!r}")
    frame = await conn.request_frame(probe(port))
    assert frame.type != ON_ERROR and frame.msg.error_message != "not logged in", (
        f"after logging in as {who} on {port}: expected the probe request to be served, "
        f"received {frame.describe()}"
    )


async def test_wrong_password_is_refused_and_connection_stays_unauthenticated(world: World) -> None:
    """A wrong password gets a LOGIN_RESPONSE with an error and the connection stays unauthenticated (a later correct login works)."""
    user, password = world.participant(2 if len(world.target.participants) > 2 else 0)
    conn = await world.connect(world.target.info)
    refused(await conn.login(user, password + "-wrong"), f"login of {user!r} with a wrong password")
    quotes = await conn.request(info_pb2.QuotesRequest())
    refused(quotes, "QuotesRequest after a failed login", contains="not logged in")
    ok(await conn.login(user, password), f"login of {user!r} with the right password afterwards")


async def test_unknown_user_is_refused(world: World) -> None:
    """An unknown user gets a LOGIN_RESPONSE with an error; the connection stays unauthenticated."""
    conn = await world.connect(world.target.gateway)
    refused(await conn.login("no-such-user-x", "whatever"), "login of an unknown user")
    response = await conn.request(risk_limits_pb2.GetUserRiskLimitsRequest())
    refused(response, "a request after a refused login", contains="not logged in")


@pytest.mark.parametrize(
    ("port", "who"),
    [
        ("admin", "participant"),
        ("order_book", "participant"),
        ("order_book", "admin"),
        ("gateway", "service"),
    ],
)
async def test_role_not_admitted_is_refused(world: World, port: str, who: str) -> None:
    """A role the port does not admit gets a LOGIN_RESPONSE with an error and the connection stays unauthenticated."""
    user, password = _login(world, who)
    conn = await world.connect(endpoint(world, port))
    refused(await conn.login(user, password), f"login of {who} {user!r} on the {port} port")
    frame = await conn.request_frame(probe(port))
    assert frame.type != ON_ERROR, (
        f"after a refused login on {port}: expected the probe's response, received {frame.describe()}"
    )
    refused(frame.msg, f"a request after {who} was refused on {port}", contains="not logged in")


@pytest.mark.parametrize("port", PORTS)
async def test_request_before_login_gets_not_logged_in(world: World, port: str) -> None:
    """Before a successful LOGIN_RESPONSE, any other request gets its response with error_message "not logged in"."""
    conn = await world.connect(endpoint(world, port))
    request = probe(port)
    frame = await conn.request_frame(request)
    expected = RESPONSE_OF[type_of(request)]
    assert frame.type == expected, (
        f"{name_of(type_of(request))} before login on {port}: expected {name_of(expected)}, "
        f"received {frame.describe()}"
    )
    eq(
        frame.msg.error_message,
        "not logged in",
        f"error_message of {name_of(expected)} before login",
    )


async def test_insert_before_login_changes_nothing(world: World) -> None:
    """A request before login is answered "not logged in" and changes nothing (no order rests)."""
    instrument = await world.create_instrument()
    early = await world.connect(world.target.gateway)
    response = await insert(early, instrument.symbol, SELL, instrument.px(1000), 5)
    eq(response.error_message, "not logged in", "InsertOrderResponse.error_message before login")
    taker = await world.gateway(1)
    cross = ok(
        await insert(taker, instrument.symbol, BUY, instrument.px(1000), 5, IOC), "crossing IOC"
    )
    eq(cross.traded_quantity, 0, "quantity traded against an order sent before login")


@pytest.mark.parametrize("port", PORTS)
async def test_heartbeat_before_login_is_accepted(world: World, port: str) -> None:
    """Before login, HEARTBEAT is simply accepted (no answer, connection kept)."""
    conn = await world.connect(endpoint(world, port))
    conn.send(common_pb2.Heartbeat(timestamp=time.time_ns()))
    request_id = conn.send_request(probe(port))
    frame = await conn.expect_frame(lambda f: True, "the next frame after HEARTBEAT and a request")
    assert getattr(frame.msg, "request_id", None) == request_id and frame.type != ON_ERROR, (
        f"HEARTBEAT before login on {port}: expected no answer (the probe's response next), "
        f"received {frame.describe()}"
    )


async def _sentinel_closed(world: World, port: str) -> object:
    sentinel = world.target.sentinels[endpoint(world, port).name]
    await asyncio.get_running_loop().run_in_executor(None, sentinel.done.wait, 90)
    return sentinel


@pytest.mark.parametrize("port", PORTS)
async def test_connection_not_logged_in_within_timeout_is_closed(
    world: World, port: str, request: pytest.FixtureRequest
) -> None:
    """A connection that has not logged in within 10 s (configurable: --login-timeout) is closed."""
    limit = float(request.config.getoption("--login-timeout"))
    sentinel = await _sentinel_closed(world, port)
    assert sentinel.closed_at is not None and sentinel.error is None, (  # type: ignore[attr-defined]
        f"{port}: expected a connection never logged in to be closed after {limit:.0f} s, "
        f"received {sentinel.error}"  # type: ignore[attr-defined]
    )
    lived = sentinel.closed_at - sentinel.opened_at  # type: ignore[attr-defined]
    assert limit - 1.0 <= lived <= limit + 5.0, (
        f"{port}: expected a connection never logged in to be closed after about {limit:.0f} s, "
        f"received it closed after {lived:.1f} s"
    )


@pytest.mark.parametrize("port", PORTS)
async def test_heartbeats_on_connection_not_yet_logged_in(world: World, port: str) -> None:
    """A service sends HEARTBEAT on *any* connection idle for 1 s, also one not logged in yet."""
    sentinel = await _sentinel_closed(world, port)
    beats = sentinel.heartbeats  # type: ignore[attr-defined]
    assert beats, (
        f"{port}: expected heartbeats on a connection left idle before login, received none"
    )
    first = beats[0] - sentinel.opened_at  # type: ignore[attr-defined]
    assert first <= 2.5, (
        f"{port}: expected the first HEARTBEAT about 1 s after connecting, received it after {first:.1f} s"
    )


async def test_participant_sending_internal_create_to_info_is_not_permitted(world: World) -> None:
    """A type the port serves, sent by a role that may not send it (a participant sending 130 to Info), gets ON_ERROR "not permitted", changes nothing, connection stays open."""
    conn = await world.info(0)
    symbol = new_symbol("NP")
    request = info_pb2.CreateInstrumentRequest(
        instrument=common_pb2.Instrument(symbol=symbol), tick_size=0.01, order_book_id=1
    )
    frame = await conn.request_frame(request)
    assert frame.type == ON_ERROR, (
        f"participant sending 130 to Info: expected ON_ERROR, received {frame.describe()}"
    )
    assert "not permitted" in frame.msg.error_message, (
        f"participant sending 130 to Info: expected ON_ERROR 'not permitted', received {frame.msg.error_message!r}"
    )
    eq(frame.msg.request_id, request.request_id, "OnError.request_id (it could be read)")
    eq(frame.msg.message_type, 130, "OnError.message_type")
    quotes = ok(await conn.request(info_pb2.QuotesRequest()), "QuotesRequest after 'not permitted'")
    listed = [q.instrument_symbol for q in quotes.quotes]
    assert symbol not in listed, (
        f"after a refused 130: expected {symbol} not to exist, received it in the quotes"
    )
    admin = await world.admin()
    names = [
        i.instrument.symbol
        for i in (await admin.request(admin_pb2.ListInstrumentsRequest())).instruments
    ]
    assert symbol not in names, (
        f"after a refused 130: expected {symbol} unknown to Admin, received it listed"
    )


@pytest.mark.parametrize("who", ["participant", "admin"])
async def test_internal_delete_on_info_is_not_permitted(world: World, who: str) -> None:
    """Only `service` may send 132 to Info; anyone else gets ON_ERROR "not permitted" and the instrument stays."""
    instrument = await world.create_instrument()
    user, password = _login(world, who)
    conn = await world.logged_in(world.target.info, user, password)
    frame = await conn.request_frame(
        info_pb2.DeleteInstrumentRequest(instrument_symbol=instrument.symbol)
    )
    assert frame.type == ON_ERROR and "not permitted" in frame.msg.error_message, (
        f"{who} sending 132 to Info: expected ON_ERROR 'not permitted', received {frame.describe()}"
    )
    quotes = ok(await conn.request(info_pb2.QuotesRequest()), "QuotesRequest after 'not permitted'")
    assert instrument.symbol in [q.instrument_symbol for q in quotes.quotes], (
        f"after a refused 132: expected {instrument.symbol} still live in Info, received it gone"
    )


async def test_admin_sending_internal_create_to_info_is_not_permitted(world: World) -> None:
    """130 on Info is for `service` only: an admin gets ON_ERROR "not permitted"."""
    admin_user, admin_password = world.target.admin_login
    conn = await world.logged_in(world.target.info, admin_user, admin_password)
    request = info_pb2.CreateInstrumentRequest(
        instrument=common_pb2.Instrument(symbol=new_symbol("NP")), tick_size=0.01, order_book_id=1
    )
    frame = await conn.request_frame(request)
    assert frame.type == ON_ERROR and "not permitted" in frame.msg.error_message, (
        f"admin sending 130 to Info: expected ON_ERROR 'not permitted', received {frame.describe()}"
    )


async def test_participant_on_gateway_cannot_use_order_book_messages(world: World) -> None:
    """The Risk Gateway accepts 0, 40, 42, 46, 50, 52, 54, 56 only: an Order Book insert (10) there gets ON_ERROR naming it."""
    conn = await world.gateway(0)
    conn.send(
        execution_pb2.InsertOrderRequest(instrument_symbol="X", price=1, quantity=1),
        message_type=10,
    )
    error = await conn.expect(ON_ERROR, what="ON_ERROR for type 10 on the Risk Gateway")
    eq(error.message_type, 10, "OnError.message_type")
