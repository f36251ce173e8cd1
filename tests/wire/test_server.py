"""The shared server layer over real TCP: login gate, bad frames, order, limits."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.common.clock import SystemClock
from services.common.pb import admin_pb2, common_pb2, execution_pb2, info_pb2
from services.common.wire import errors
from services.common.wire.client import UpstreamConnection
from services.common.wire.framing import encode_frame
from services.common.wire.server import Route, WireServer, WireSettings
from services.common.wire.session import Session
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
PARTICIPANT, ADMIN, SERVICE = 1, 2, 3


@dataclass(frozen=True)
class FakeUser:
    name: str
    role: int


class FakeAuthenticator:
    """Password equals ``<name>-pw``; the role is fixed per user."""

    ROLES = {"alice": PARTICIPANT, "root": ADMIN, "svc": SERVICE}

    async def authenticate(self, username: str, password: str, peer: str) -> FakeUser | None:
        await asyncio.sleep(0.001)  # like the real one: answered off the loop
        role = self.ROLES.get(username)
        if role is None or password != f"{username}-pw":
            return None
        return FakeUser(username, role)


class EchoService:
    """A test service: async inserts (delayed by quantity ms), sync cancels."""

    def __init__(self) -> None:
        self.logins: list[str] = []
        self.closed = 0

    def on_login(self, session: Session) -> None:
        self.logins.append(session.username)
        session.send(MT.INFO_ON_INSTRUMENT, info_pb2.OnInstrument(order_book_id=7))

    def on_close(self, session: Session) -> None:
        self.closed += 1

    async def insert(self, session: Session, request: Any) -> Any:
        await asyncio.sleep(request.quantity / 1000)
        return execution_pb2.InsertOrderResponse(
            request_id=request.request_id, order_id=int(request.price)
        )

    def cancel(self, session: Session, request: Any) -> Any:
        return execution_pb2.CancelOrderResponse(
            request_id=request.request_id, cancelled_quantity=int(request.order_id)
        )

    def routes(self) -> list[Route]:
        return [
            Route(MT.EXECUTION_INSERT_ORDER_REQUEST, self.insert, frozenset({PARTICIPANT})),
            Route(MT.EXECUTION_CANCEL_ORDER_REQUEST, self.cancel, frozenset({PARTICIPANT, ADMIN})),
        ]


@dataclass
class Harness:
    server: WireServer
    service: EchoService

    async def client(self, **kwargs: Any) -> RawClient:
        return await RawClient.connect(self.server.host, self.server.port, **kwargs)

    async def logged_in(self, user: str = "alice") -> RawClient:
        client = await self.client()
        response = await client.login(user, f"{user}-pw")
        assert response.error_message == ""
        kind, _ = await client.recv()  # the on_login push
        assert kind == MT.INFO_ON_INSTRUMENT
        return client


async def start(settings: WireSettings | None = None) -> Harness:
    service = EchoService()
    server = WireServer(
        "test",
        service,
        service.routes(),
        login_roles={PARTICIPANT, ADMIN},
        authenticator=FakeAuthenticator(),
        clock=SystemClock(),
        settings=settings,
    )
    await server.start("127.0.0.1", 0)
    return Harness(server, service)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = await start()
    yield h
    await h.server.stop()


async def assert_healthy(h: Harness) -> None:
    """A second, well-behaved connection still gets served."""
    other = await h.logged_in()
    other.send(execution_pb2.CancelOrderRequest(request_id=9, order_id=5))
    kind, response = await other.recv()
    assert (kind, response.request_id, response.cancelled_quantity) == (
        MT.EXECUTION_CANCEL_ORDER_RESPONSE,
        9,
        5,
    )
    await other.close()


# --------------------------------------------------------------------- login


async def test_login_success_reports_role_then_on_login_push(harness: Harness) -> None:
    client = await harness.client()
    response = await client.login("alice", "alice-pw", request_id=77)
    assert (response.request_id, response.error_message, response.role) == (77, "", PARTICIPANT)
    kind, push = await client.recv()
    assert kind == MT.INFO_ON_INSTRUMENT and push.order_book_id == 7
    assert harness.service.logins == ["alice"]


@pytest.mark.parametrize(("user", "password"), [("alice", "nope"), ("mallory", "mallory-pw")])
async def test_bad_credentials_get_the_same_answer(
    harness: Harness, user: str, password: str
) -> None:
    client = await harness.client()
    response = await client.login(user, password)
    assert response.error_message == errors.INVALID_CREDENTIALS
    # still unauthenticated, connection kept
    client.send(execution_pb2.CancelOrderRequest(request_id=3))
    _, refused = await client.recv()
    assert refused.error_message == errors.NOT_LOGGED_IN


async def test_role_not_admitted_on_port(harness: Harness) -> None:
    client = await harness.client()
    response = await client.login("svc", "svc-pw")
    assert "may not log in" in response.error_message
    assert response.role == 0


async def test_second_login_is_refused(harness: Harness) -> None:
    client = await harness.logged_in()
    response = await client.login("root", "root-pw", request_id=2)
    assert response.error_message == errors.ALREADY_LOGGED_IN


async def test_request_before_login_gets_not_logged_in_response(harness: Harness) -> None:
    client = await harness.client()
    client.send(common_pb2.Heartbeat(timestamp=1))  # simply accepted
    client.send(execution_pb2.CancelOrderRequest(request_id=5, order_id=1))
    kind, response = await client.recv()
    assert kind == MT.EXECUTION_CANCEL_ORDER_RESPONSE
    assert (response.request_id, response.error_message) == (5, errors.NOT_LOGGED_IN)
    assert response.cancelled_quantity == 0


async def test_login_pipelined_with_requests(harness: Harness) -> None:
    """Requests written right behind the login see the logged-in state."""
    client = await harness.client()
    client.send(common_pb2.LoginRequest(request_id=1, username="alice", password="alice-pw"))
    for i in range(5):
        client.send(execution_pb2.CancelOrderRequest(request_id=10 + i, order_id=i))
    kinds = [(await client.recv())[0] for _ in range(7)]
    assert kinds[0] == MT.LOGIN_RESPONSE
    assert kinds[1] == MT.INFO_ON_INSTRUMENT
    assert kinds[2:] == [MT.EXECUTION_CANCEL_ORDER_RESPONSE] * 5


# --------------------------------------------------------------------- bad frames


async def test_length_below_four_errors_then_closes(harness: Harness) -> None:
    client = await harness.logged_in()
    client.send_raw((3).to_bytes(4, "big") + b"\x00\x00\x00")
    frames = await client.expect_closed()
    assert [kind for kind, _ in frames] == [MT.ON_ERROR]
    error = common_pb2.OnError.FromString(frames[0][1])
    assert "below the minimum" in error.error_message
    await assert_healthy(harness)


@pytest.mark.parametrize("bad_length", [2, 0xFFFFFFFF])
async def test_requests_before_a_bad_length_in_the_same_read_are_answered_first(
    harness: Harness, bad_length: int
) -> None:
    """PROTOCOL.md: frames are read "however the TCP stream splits or coalesces
    them". Two good requests and a bad length in one write get what they would
    get in three reads: both answers, in order, then ON_ERROR and the close."""
    client = await harness.logged_in()
    good = b"".join(
        encode_frame(
            MT.EXECUTION_CANCEL_ORDER_REQUEST,
            execution_pb2.CancelOrderRequest(request_id=i, order_id=10 + i).SerializeToString(),
        )
        for i in (7, 8)
    )
    client.send_raw(good + bad_length.to_bytes(4, "big") + (40).to_bytes(4, "big"))
    frames = await client.expect_closed()
    assert [kind for kind, _ in frames] == [
        MT.EXECUTION_CANCEL_ORDER_RESPONSE,
        MT.EXECUTION_CANCEL_ORDER_RESPONSE,
        MT.ON_ERROR,
    ]
    answers = [execution_pb2.CancelOrderResponse.FromString(p) for _, p in frames[:2]]
    assert [(a.request_id, a.cancelled_quantity) for a in answers] == [(7, 17), (8, 18)]
    assert "frame length" in common_pb2.OnError.FromString(frames[2][1]).error_message
    await assert_healthy(harness)


async def test_length_over_limit_errors_then_closes(harness: Harness) -> None:
    client = await harness.logged_in()
    client.send_raw((0xFFFFFFFF).to_bytes(4, "big") + (40).to_bytes(4, "big"))
    frames = await client.expect_closed()
    error = common_pb2.OnError.FromString(frames[-1][1])
    assert error.message_type == 40 and "exceeds the maximum" in error.error_message
    await assert_healthy(harness)


async def test_oversized_frame_before_login_errors_then_closes(harness: Harness) -> None:
    client = await harness.client()
    big = common_pb2.LoginRequest(username="alice", password="x" * 5000)
    client.send(big)
    frames = await client.expect_closed()
    assert [kind for kind, _ in frames] == [MT.ON_ERROR]
    await assert_healthy(harness)


async def test_large_frame_allowed_after_login(harness: Harness) -> None:
    client = await harness.logged_in()
    client.send(execution_pb2.CancelOrderRequest(request_id=4, instrument_symbol="X" * 100_000))
    kind, response = await client.recv()
    assert (kind, response.request_id) == (MT.EXECUTION_CANCEL_ORDER_RESPONSE, 4)


@pytest.mark.parametrize(
    ("frame", "expected_type", "text"),
    [
        (encode_frame(99, b""), 99, "unknown message type 99"),
        (encode_frame(5000, b"\x08\x01"), 5000, "unknown message type"),
        (encode_frame(30, b""), 30, "not served on this port"),
        (encode_frame(140, b""), 140, "not served on this port"),
        (encode_frame(42, b"\xff\xff\xff"), 42, "does not parse"),
        (encode_frame(42, b"\x0a\x05ab"), 42, "does not parse"),
    ],
)
async def test_bad_type_or_payload_errors_and_keeps_connection(
    harness: Harness, frame: bytes, expected_type: int, text: str
) -> None:
    client = await harness.logged_in()
    client.send_raw(frame)
    kind, error = await client.recv()
    assert kind == MT.ON_ERROR
    assert error.message_type == expected_type and text in error.error_message
    client.send(execution_pb2.CancelOrderRequest(request_id=8, order_id=2))
    kind, response = await client.recv()
    assert (kind, response.request_id) == (MT.EXECUTION_CANCEL_ORDER_RESPONSE, 8)
    await assert_healthy(harness)


@pytest.mark.parametrize(
    ("frame", "request_id"),
    [
        (encode_frame(999, b"\x08\x07\x12\x01x"), 7),  # unknown type: field 1 by convention
        (encode_frame(30, b"\x08\x0c\x12\x01A"), 12),  # a request type served elsewhere
        # an event type keeps another id in field 1 (OnTrade.trade_id): none to echo
        (encode_frame(MT.INFO_ON_TRADE, b"\x08\x0c"), 0),
        (encode_frame(42, b"\x08\x05\xff\xff\xff"), 5),  # id readable, rest garbage
        (encode_frame(999, b"\x08" + b"\xff" * 9 + b"\x01"), -1),  # int64, two's complement
        (encode_frame(999, b"\x08\xff"), 0),  # a truncated varint is not an id
        (encode_frame(30, b"\x12\x01A"), 0),  # no request_id at all
    ],
)
async def test_on_error_carries_the_request_id_when_it_can_be_read(
    harness: Harness, frame: bytes, request_id: int
) -> None:
    """PROTOCOL.md: ON_ERROR field 3 is the request_id "when it could be read"."""
    client = await harness.logged_in()
    client.send_raw(frame)
    kind, error = await client.recv()
    assert kind == MT.ON_ERROR
    assert error.request_id == request_id


async def test_role_not_permitted_gets_on_error(harness: Harness) -> None:
    client = await harness.logged_in("root")  # admin may cancel but not insert here
    client.send(execution_pb2.InsertOrderRequest(request_id=12, price=1, quantity=1))
    kind, error = await client.recv()
    assert kind == MT.ON_ERROR
    assert (error.message_type, error.request_id, error.error_message) == (
        40,
        12,
        errors.NOT_PERMITTED,
    )


async def test_unparsable_login_and_unknown_type_before_login(harness: Harness) -> None:
    client = await harness.client()
    client.send_raw(encode_frame(0, b"\xff"))
    kind, error = await client.recv()
    assert kind == MT.ON_ERROR and error.message_type == 0
    client.send(admin_pb2.ListInstrumentsRequest(request_id=3))  # type 34: not served here
    kind, error = await client.recv()
    assert kind == MT.ON_ERROR and "not served" in error.error_message


# --------------------------------------------------------------------- ordering


async def test_pipelined_responses_come_back_in_request_order(harness: Harness) -> None:
    client = await harness.logged_in()
    # Earlier requests take longer: completion order is the reverse of arrival.
    for i in range(30):
        client.send(execution_pb2.InsertOrderRequest(request_id=i + 1, price=i, quantity=30 - i))
        client.send(execution_pb2.CancelOrderRequest(request_id=1000 + i, order_id=i))
    seen = []
    for _ in range(60):
        _, response = await client.recv()
        seen.append(response.request_id)
    expected = [x for i in range(30) for x in (i + 1, 1000 + i)]
    assert seen == expected


async def test_one_byte_writes_are_served(harness: Harness) -> None:
    client = await harness.client()
    data = encode_frame(
        0,
        common_pb2.LoginRequest(
            request_id=1, username="alice", password="alice-pw"
        ).SerializeToString(),
    ) + encode_frame(
        42, execution_pb2.CancelOrderRequest(request_id=2, order_id=3).SerializeToString()
    )
    for byte in data:
        client.send_raw(bytes([byte]))
        await client.writer.drain()
    kinds = [(await client.recv())[0] for _ in range(3)]
    assert kinds == [MT.LOGIN_RESPONSE, MT.INFO_ON_INSTRUMENT, MT.EXECUTION_CANCEL_ORDER_RESPONSE]


async def test_thousand_frames_in_one_write(harness: Harness) -> None:
    client = await harness.logged_in()
    client.send_raw(
        b"".join(
            encode_frame(42, execution_pb2.CancelOrderRequest(request_id=i).SerializeToString())
            for i in range(1, 1001)
        )
    )
    ids = [(await client.recv())[1].request_id for _ in range(1000)]
    assert ids == list(range(1, 1001))


# --------------------------------------------------------------------- timers


async def test_heartbeat_sent_when_idle_and_silent_peer_closed() -> None:
    h = await start(WireSettings(heartbeat_interval_s=0.1, idle_timeout_s=0.6))
    try:
        client = await h.logged_in()
        kind, _ = await client.recv_frame(timeout=2, skip_heartbeats=False)
        assert kind == MT.HEARTBEAT
        frames = await client.expect_closed(timeout=3)
        error = common_pb2.OnError.FromString(frames[-1][1])
        assert error.error_message == errors.IDLE_TIMEOUT
    finally:
        await h.server.stop()


async def test_heartbeats_from_peer_keep_connection_open() -> None:
    h = await start(WireSettings(heartbeat_interval_s=0.1, idle_timeout_s=0.4))
    try:
        client = await h.logged_in()
        for _ in range(8):
            client.send(common_pb2.Heartbeat(timestamp=1))
            await asyncio.sleep(0.1)
        client.send(execution_pb2.CancelOrderRequest(request_id=6))
        kind, _ = await client.recv()
        assert kind == MT.EXECUTION_CANCEL_ORDER_RESPONSE
    finally:
        await h.server.stop()


async def test_no_login_within_deadline_closes() -> None:
    h = await start(WireSettings(login_timeout_s=0.3))
    try:
        client = await h.client()
        client.send(common_pb2.Heartbeat(timestamp=1))  # heartbeats do not count as login
        frames = await client.expect_closed(timeout=3)
        assert common_pb2.OnError.FromString(frames[-1][1]).error_message == errors.LOGIN_TIMEOUT
        await assert_healthy(h)
    finally:
        await h.server.stop()


# --------------------------------------------------------------------- slow readers


async def test_peer_that_does_not_read_is_dropped_at_the_output_cap() -> None:
    cap = 256 * 1024
    h = await start(WireSettings(max_output_buffer_bytes=cap))
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((h.server.host, h.server.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        slow = RawClient(reader, writer)
        assert (await slow.login("alice", "alice-pw")).error_message == ""
        session = next(s for s in h.server.sessions if s.username == "alice")
        payload = info_pb2.OnPriceDepthBook(instrument_symbol="X" * 1000)
        peak = 0
        for _ in range(50_000):  # 50 MB offered: far beyond kernel buffers plus the cap
            if session.closed:
                break
            session.send(MT.INFO_ON_PRICE_DEPTH_BOOK, payload)
            peak = max(peak, session.output_bytes)
            await asyncio.sleep(0)
        assert session.closed, "a peer that never reads must be disconnected"
        assert peak <= cap + 2048
        await assert_healthy(h)
        writer.close()
    finally:
        await h.server.stop()


async def test_closed_sessions_are_released(harness: Harness) -> None:
    for _ in range(20):
        client = await harness.logged_in()
        await client.close()
    for _ in range(100):
        if not harness.server.sessions:
            break
        await asyncio.sleep(0.01)
    gc.collect()
    assert harness.server.sessions == set()
    assert harness.service.closed == 20


# --------------------------------------------------------------------- after_read


async def test_after_read_runs_once_per_read_after_all_its_requests(harness: Harness) -> None:
    """A service batching per read (the Risk Gateway's outbox) sees every request
    of a read dispatched before its hook runs, and the hook runs once."""
    seen: list[str] = []
    original = harness.service.cancel

    def cancel(session: Session, request: Any) -> Any:
        seen.append(f"cancel {request.request_id}")
        return original(session, request)

    harness.server.routes[MT.EXECUTION_CANCEL_ORDER_REQUEST].handler = cancel
    harness.server.after_read = lambda: seen.append("after_read")
    client = await harness.logged_in()
    seen.clear()
    client.send_raw(
        b"".join(
            encode_frame(42, execution_pb2.CancelOrderRequest(request_id=i).SerializeToString())
            for i in range(1, 6)
        )
    )
    ids = [(await client.recv())[1].request_id for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert seen == [f"cancel {i}" for i in range(1, 6)] + ["after_read"]


async def test_after_read_also_follows_requests_held_behind_a_login(harness: Harness) -> None:
    seen: list[str] = []
    harness.server.after_read = lambda: seen.append("after_read")
    client = await harness.client()
    client.send_raw(
        encode_frame(
            0,
            common_pb2.LoginRequest(
                request_id=1, username="alice", password="alice-pw"
            ).SerializeToString(),
        )
        + encode_frame(42, execution_pb2.CancelOrderRequest(request_id=2).SerializeToString())
    )
    kinds = [(await client.recv())[0] for _ in range(3)]
    assert kinds[-1] == MT.EXECUTION_CANCEL_ORDER_RESPONSE
    # Once for the read (only the login was dispatched), once for the backlog.
    assert seen == ["after_read", "after_read"]


async def test_client_after_read_follows_the_answers_of_a_read(harness: Harness) -> None:
    seen: list[str] = []
    conn = await UpstreamConnection.open(
        harness.server.host,
        harness.server.port,
        "alice",
        "alice-pw",
        on_push=lambda kind, message: seen.append("push"),
    )
    try:
        conn.after_read = lambda: seen.append("after_read")
        while "push" not in seen:  # the on_login push
            await asyncio.sleep(0.001)
        seen.clear()
        answered = asyncio.Event()

        def answer(outcome: Any) -> None:
            seen.append(f"answer {outcome.cancelled_quantity}")
            if len(seen) >= 3:
                answered.set()

        for order_id in (4, 5, 6):
            conn.request_callback(
                MT.EXECUTION_CANCEL_ORDER_REQUEST,
                execution_pb2.CancelOrderRequest(order_id=order_id),
                answer,
            )
        await asyncio.wait_for(answered.wait(), 5)
        await asyncio.sleep(0.01)
        answers = [s for s in seen if s.startswith("answer")]
        assert answers == ["answer 4", "answer 5", "answer 6"]
        # The hook closes each read: it runs after the answers it carried.
        assert seen[0] == "answer 4" and seen[-1] == "after_read"
    finally:
        conn.close()


async def test_broadcast_reaches_a_session_only_after_its_login_hook(harness: Harness) -> None:
    """A push sent while a session's ``on_login`` hook runs (or in the step
    between its login answer and the hook) is not for it: the hook sends it the
    current state, and the push would arrive ahead of that or twice."""
    first = await harness.logged_in()
    hook = harness.service.on_login

    def on_login(session: Session) -> None:
        harness.server.broadcast(MT.INFO_ON_INSTRUMENT, info_pb2.OnInstrument(order_book_id=99))
        hook(session)

    harness.service.on_login = on_login  # type: ignore[method-assign]
    second = await harness.client()
    assert (await second.login("alice", "alice-pw")).error_message == ""
    kind, welcome = await second.recv()
    assert (kind, welcome.order_book_id) == (MT.INFO_ON_INSTRUMENT, 7)  # the hook's, alone
    kind, pushed = await first.recv()
    assert (kind, pushed.order_book_id) == (MT.INFO_ON_INSTRUMENT, 99)  # the others get it
    harness.server.broadcast(MT.INFO_ON_INSTRUMENT, info_pb2.OnInstrument(order_book_id=5))
    for client in (first, second):
        kind, later = await client.recv()
        assert (kind, later.order_book_id) == (MT.INFO_ON_INSTRUMENT, 5)


async def test_a_request_given_up_on_leaves_no_pending_entry(harness: Harness) -> None:
    """A caller that stops waiting (a timeout) cancels the request's future; the
    connection forgets it at once, ignores the late answer, and keeps working.
    Before, each abandoned request stayed in the pending table until the
    connection closed: a slow leak on a long-lived connection."""
    conn = await UpstreamConnection.open(
        harness.server.host, harness.server.port, "alice", "alice-pw"
    )
    try:
        slow = execution_pb2.InsertOrderRequest(price=3, quantity=300)  # answered after 0.3 s
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.request(MT.EXECUTION_INSERT_ORDER_REQUEST, slow), 0.05)
        assert conn._pending == {}  # white-box: the table this is about
        await asyncio.sleep(0.35)  # the late answer arrives and is dropped
        quick = execution_pb2.CancelOrderRequest(order_id=4)
        answer = await asyncio.wait_for(conn.request(MT.EXECUTION_CANCEL_ORDER_REQUEST, quick), 2)
        assert answer.cancelled_quantity == 4
        assert conn._pending == {}
    finally:
        conn.close()
