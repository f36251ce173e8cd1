"""Framing and errors: PROTOCOL.md section 1 and the error conventions of section 2."""

from __future__ import annotations

import asyncio
import struct

import pytest

from system_tests.harness.checks import PRICE_DEPTH_BOOK, TOP_OF_BOOK, eq, ok
from system_tests.harness.conn import Conn
from system_tests.harness.framing import encode_frame, encode_header
from system_tests.harness.messages import ON_ERROR, RESPONSE_OF, name_of, type_of
from system_tests.harness.ports import NOT_SERVED, PORTS, alive, endpoint, logged_in, probe
from system_tests.harness.world import World
from system_tests.pb import admin_pb2, common_pb2, info_pb2, order_book_pb2, risk_limits_pb2

port_param = pytest.mark.parametrize("port", PORTS)


async def test_response_frame_length_counts_type_and_payload(world: World) -> None:
    """Frame = u32 big-endian length (bytes that follow it: 4 + len(payload)), u32 type, payload."""
    user, password = world.participant(0)
    reader, writer = await asyncio.open_connection(world.target.info.host, world.target.info.port)
    try:
        request = common_pb2.LoginRequest(request_id=7, username=user, password=password)
        writer.write(encode_frame(0, request.SerializeToString()))
        header = await asyncio.wait_for(reader.readexactly(8), 5)
        length, message_type = struct.unpack(">II", header)
        eq(message_type, 1, "type of the answer to LOGIN_REQUEST")
        assert 4 <= length < 4096, (
            f"LoginResponse frame length: expected 4 + payload size, received {length}"
        )
        payload = await asyncio.wait_for(reader.readexactly(length - 4), 5)
        response = common_pb2.LoginResponse.FromString(payload)
        eq(response.request_id, 7, "LoginResponse.request_id (echoed)")
        eq(response.error_message, "", "LoginResponse.error_message")
    finally:
        writer.close()


async def test_empty_payload_vector_is_a_valid_request(world: World) -> None:
    """Test vector: ListInstrumentsRequest{} is the frame 00000004 00000022 (empty payload)."""
    admin = await world.admin_conn()
    admin.send_raw(bytes.fromhex("0000000400000022"))
    response = await admin.expect(
        35, what="ADMIN_LIST_INSTRUMENTS_RESPONSE to the empty-payload frame"
    )
    eq(response.request_id, 0, "request_id of the response to an empty payload")
    ok(response, "ListInstruments with an empty payload")


@port_param
async def test_length_below_four_gets_on_error_then_close(world: World, port: str) -> None:
    """`length < 4`: send ON_ERROR, then close the connection (the stream can no longer be trusted)."""
    conn = await world.connect(endpoint(world, port))
    conn.send_raw(struct.pack(">I", 2) + b"\x00\x00")
    await conn.expect(ON_ERROR, what="ON_ERROR for a frame with length 2")
    await conn.expect_closed(what="after a frame with length < 4")


@port_param
async def test_request_before_a_bad_length_in_the_same_write_is_answered_first(
    world: World, port: str
) -> None:
    """ "Read exactly `length` bytes, however the TCP stream splits or coalesces them":
    a good request coalesced with a bad length is answered as if it had come alone,
    then ON_ERROR and the close."""
    conn = await logged_in(world, port)
    request = probe(port)
    request.request_id = 77  # type: ignore[attr-defined]
    good = encode_frame(type_of(request), request.SerializeToString())
    conn.send_raw(good + struct.pack(">I", 2) + b"\x00\x00")
    response = await conn.expect_next(
        RESPONSE_OF[type_of(request)],
        what=f"the answer to {name_of(type_of(request))} sent in the same write as a bad length",
    )
    eq(response.request_id, 77, "request_id of that answer")
    await conn.expect(ON_ERROR, what="ON_ERROR for the frame with length 2 after it")
    await conn.expect_closed(what="after a frame with length < 4")


@port_param
async def test_length_above_maximum_gets_on_error_then_close(world: World, port: str) -> None:
    """`length` above the configured maximum (default 1 MiB): ON_ERROR, then close; the body is never awaited."""
    conn = await logged_in(world, port)
    conn.send_raw(encode_header(0x7FFFFFF0, type_of(probe(port))))
    await conn.expect(ON_ERROR, what="ON_ERROR for a frame header announcing ~2 GiB")
    await conn.expect_closed(what="after an oversized frame header")


@port_param
async def test_oversized_before_login_gets_on_error_then_close(world: World, port: str) -> None:
    """Until logged in, `length` may be at most 4096 (more is ON_ERROR then close)."""
    conn = await world.connect(endpoint(world, port))
    conn.send_raw(encode_header(8192, 0) + b"\x00" * 100)
    await conn.expect(ON_ERROR, what="ON_ERROR for a 8192-byte frame before login")
    await conn.expect_closed(what="after a 8192-byte frame before login")


@port_param
async def test_frame_of_4096_before_login_is_accepted(world: World, port: str) -> None:
    """Until logged in, `length` may be at most 4096: exactly 4096 is allowed."""
    conn = await world.connect(endpoint(world, port))
    # A HEARTBEAT carrying an unknown length-delimited field (number 15) as padding:
    # still a valid Heartbeat, and a heartbeat is "simply accepted" before login.
    pad = 4096 - 4 - 3
    payload = bytes([0x7A]) + bytes([0x80 | (pad & 0x7F), pad >> 7]) + b"x" * pad
    assert len(payload) == 4092
    conn.send_raw(encode_frame(3, payload))
    frame = await conn.request_frame(probe(port))
    assert frame.type != ON_ERROR, (
        f"after a 4096-byte frame before login: expected the probe's response "
        f"('not logged in'), received {frame.describe()}"
    )
    assert not conn.is_closed, (
        "after a 4096-byte frame before login: expected the connection open, received it closed"
    )


@port_param
async def test_unknown_type_gets_on_error_and_connection_stays(world: World, port: str) -> None:
    """Unknown `message_type`: send ON_ERROR naming the type, keep the connection."""
    conn = await logged_in(world, port)
    for unknown in (9999, 5):
        conn.send_frame(unknown, b"")
        error = await conn.expect(ON_ERROR, what=f"ON_ERROR for message_type {unknown}")
        eq(error.message_type, unknown, f"OnError.message_type for a frame of type {unknown}")
    await alive(conn, port, "after unknown message types")


@port_param
async def test_type_not_served_gets_on_error_and_connection_stays(world: World, port: str) -> None:
    """A type this port does not serve: send ON_ERROR naming the type, keep the connection."""
    conn = await logged_in(world, port)
    kind = NOT_SERVED[port]
    conn.send_frame(kind, b"\x08\x2a")  # request_id = 42
    error = await conn.expect(ON_ERROR, what=f"ON_ERROR for {name_of(kind)} (not served here)")
    eq(error.message_type, kind, f"OnError.message_type for {name_of(kind)} sent to {port}")
    # OnError field 3: "request_id (when it could be read)"; this payload is a
    # request of that type carrying request_id 42, so it can be.
    eq(error.request_id, 42, f"OnError.request_id for {name_of(kind)} sent to {port}")
    await alive(conn, port, f"after {name_of(kind)} on the {port} port")


@port_param
async def test_unparsable_payload_gets_on_error_and_connection_stays(
    world: World, port: str
) -> None:
    """A payload that does not parse: send ON_ERROR naming the type, keep the connection."""
    conn = await logged_in(world, port)
    kind = type_of(probe(port))
    conn.send_frame(kind, b"\x0a\x05ab")  # field 1 claims 5 bytes, 2 follow
    error = await conn.expect(ON_ERROR, what=f"ON_ERROR for an unparsable {name_of(kind)}")
    eq(error.message_type, kind, "OnError.message_type for an unparsable payload")
    await alive(conn, port, "after an unparsable payload")


PIPELINES = {
    "order_book": [
        order_book_pb2.CancelOrderRequest(
            order_book_id=1 << 40, order_id=1, on_behalf_of_username="x"
        ),
        order_book_pb2.AmendOrderRequest(
            order_book_id=1 << 40, order_id=1, price=1.0, quantity=1, on_behalf_of_username="x"
        ),
        order_book_pb2.ClearOrderBookRequest(order_book_id=1 << 40),
    ],
    "info": [
        info_pb2.QuotesRequest(),
        info_pb2.OrderBookSubscribeRequest(
            instrument_symbol="NO.SUCH-SYM", subscription_type=TOP_OF_BOOK
        ),
        info_pb2.OrderBookUnsubscribeRequest(
            instrument_symbol="NO.SUCH-SYM", subscription_type=PRICE_DEPTH_BOOK
        ),
    ],
    "admin": [
        admin_pb2.ListInstrumentsRequest(),
        admin_pb2.GetExchangeStatsRequest(),
        admin_pb2.DeleteInstrumentRequest(instrument_symbol="NO.SUCH-SYM"),
    ],
    "gateway": [
        risk_limits_pb2.GetUserRiskLimitsRequest(),
        risk_limits_pb2.GetInstrumentRiskLimitsRequest(),
        admin_pb2.ListInstrumentsRequest(),  # not served here: ON_ERROR, in its place
    ],
}


@port_param
async def test_pipelined_requests_are_answered_in_request_order(world: World, port: str) -> None:
    """A peer may send many requests without waiting; responses come back in the order the requests were received."""
    conn = await logged_in(world, port)
    sent: list[tuple[int, int]] = []
    data = b""
    for i in range(30):
        template = PIPELINES[port][i % 3]
        msg = type(template)()
        msg.CopyFrom(template)
        request_id = Conn.assign_id(msg)
        sent.append((request_id, type_of(msg)))
        data += encode_frame(type_of(msg), msg.SerializeToString())
    conn.send_raw(data)
    for request_id, kind in sent:
        frame = await conn.expect_frame(lambda f: True, f"the answer to request {request_id}")
        if kind == 34 and port == "gateway":
            # Not served here: its ON_ERROR takes its place in the order.
            matches = frame.type == ON_ERROR and frame.msg.message_type == 34
            expected_name = "ON_ERROR for type 34"
        else:
            matches = frame.type == RESPONSE_OF[kind] and frame.msg.request_id == request_id
            expected_name = f"{name_of(RESPONSE_OF[kind])} with request_id {request_id}"
        assert matches, (
            f"pipelined answers on {port}: expected {expected_name} next, received {frame.describe()}"
        )


@port_param
async def test_heartbeat_needs_no_answer(world: World, port: str) -> None:
    """HEARTBEAT may be sent by either side at any time and needs no answer."""
    conn = await logged_in(world, port)
    conn.send(common_pb2.Heartbeat(timestamp=1))
    request = probe(port)
    request_id = conn.send_request(request)
    frame = await conn.expect_frame(
        lambda f: True, "the next frame after a HEARTBEAT and a request"
    )
    assert getattr(frame.msg, "request_id", None) == request_id and frame.type != ON_ERROR, (
        f"after sending HEARTBEAT: expected the probe's response as the next frame, received "
        f"{frame.describe()}"
    )


@port_param
async def test_service_sends_heartbeat_on_idle_connection(world: World, port: str) -> None:
    """A service sends a HEARTBEAT on any connection on which it has sent nothing for 1 s."""
    conn = await logged_in(world, port)
    await conn.expect_heartbeat(3.0, "on a logged-in idle connection")
    last_before = max([f.at for f in conn.frames] + [conn.opened_at])
    gap = conn.heartbeats[0] - last_before
    assert gap <= 2.0, (
        f"{port}: expected a HEARTBEAT about 1 s after the last frame, received it after {gap:.2f} s"
    )
