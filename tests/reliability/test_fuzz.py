"""Hypothesis against every service: arbitrary bytes and valid-but-hostile messages.

The four services run in-process on an event loop in a background thread, so
hypothesis (which calls the test function many times) drives them with plain
synchronous calls.  Properties, for every example:

* **arbitrary bytes** on a fresh connection (logged in or not), then a
  half-close: the service answers only with well-formed frames, closes within
  a bound, and still serves others; the Order Book's state is untouched;
* **hostile messages**: every request type a port serves, with every field
  drawn from extremes (NaN, infinities, huge and negative numbers, long and
  non-ASCII strings, out-of-range enums, nested messages, repeated and map
  fields): a response of the request's own type (or ``ON_ERROR``) arrives
  within a bound, and a refusal leaves the Order Book's state hash unchanged.

Examples are bounded (``max_examples``) so the module stays within seconds;
a failure prints hypothesis' reproduction seed.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.pb import common_pb2
from services.common.wire.framing import FrameDecoder, encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE
from tests.reliability.inprocess import InProcessExchange, Port
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
T = TypeVar("T")
RESPONSE_TYPES = set(RESPONSE_TYPE.values())
SERVICE_ONLY = {MT.INFO_CREATE_INSTRUMENT_REQUEST, MT.INFO_DELETE_INSTRUMENT_REQUEST}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)


@dataclass
class Live:
    """The in-process exchange on a background loop, and a connection per port."""

    loop: asyncio.AbstractEventLoop
    exchange: InProcessExchange
    clients: dict[tuple[str, str], RawClient]

    def run(self, coroutine: Awaitable[T], timeout: float = 15.0) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def client(self, port: Port, user: str) -> RawClient:
        """A logged-in connection, reopened if a previous example ended it."""
        key = (port.name, user)
        client = self.clients.get(key)
        if client is None or client.writer.is_closing() or client.reader.at_eof():
            client = self.run(port.logged_in(user))
            self.clients[key] = client
        return client


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()
    exchange = InProcessExchange(tmp_path_factory.mktemp("fuzz"))
    state = Live(loop, exchange, {})
    # Long idle deadline: a connection is reused across examples that may be far apart.
    state.run(exchange.start(idle_timeout_s=60.0))
    state.run(exchange.create("FUZZ"))
    try:
        yield state
    finally:
        for client in state.clients.values():
            state.run(client.close())
        state.run(exchange.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ---------------------------------------------------------------------- strategies

HOSTILE_INTS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 7, 2**31 - 1, -(2**31), 2**31, 2**53, 2**63 - 1, -(2**63)]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
HOSTILE_FLOATS = st.one_of(
    st.sampled_from(
        [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e-9, 0.01, 10.0, 10.005, 1e300, -1.0]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)
HOSTILE_STRINGS = st.one_of(
    st.sampled_from(["", "FUZZ", "fuzz", "A" * 17, "AAPL\n", "..", "-", "alice", "Ä", "\x00"]),
    st.text(max_size=80),
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return HOSTILE_INTS.map(lambda v: min(max(v, low), high))
    if kind == FieldDescriptor.TYPE_ENUM:
        return HOSTILE_INTS.map(lambda v: min(max(v, -(2**31)), 2**31 - 1))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return HOSTILE_FLOATS
    if kind == FieldDescriptor.TYPE_STRING:
        return HOSTILE_STRINGS
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    raise NotImplementedError(f"field type {kind} of {field.full_name}")


def messages(descriptor: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for ``descriptor``: any subset of fields, each hostile."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.name == "request_id":
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            sub = field.message_type
            if sub.GetOptions().map_entry:
                value = sub.fields_by_name["value"].message_type
                fields[field.name] = st.dictionaries(
                    HOSTILE_STRINGS, messages(value, depth + 1), max_size=3
                )
            elif _is_repeated(field):
                fields[field.name] = st.lists(messages(sub, depth + 1), max_size=3)
            else:
                fields[field.name] = messages(sub, depth + 1)
        elif _is_repeated(field):
            fields[field.name] = st.lists(_scalar(field), max_size=3)
        else:
            fields[field.name] = _scalar(field)
    return st.fixed_dictionaries({}, optional=fields)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    _fill(message, values)
    return message


def _fill(message: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key, sub in value.items():
                    _fill(target[key], sub)
            elif _is_repeated(field):
                for sub in value:
                    _fill(target.add(), sub)
            else:
                target.SetInParent()
                _fill(target, value)
        elif _is_repeated(field):
            target.extend(value)
        else:
            setattr(message, name, value)


PORTS = ("order_book", "info", "admin", "risk_gateway")


@st.composite
def hostile_requests(draw: Callable[..., Any], name: str) -> tuple[int, Message]:
    serves = {
        "order_book": (10, 12, 62, 140, 142, 144, 146),
        "info": (21, 26, 60, 130, 132),
        "admin": (30, 32, 34, 36, 38),
        "risk_gateway": (40, 42, 46, 50, 52, 54, 56),
    }[name]
    message_type = draw(st.sampled_from(serves))
    cls = MESSAGE_CLASSES[message_type]
    values = draw(messages(cls.DESCRIPTOR))
    return message_type, build(cls, values)


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", PORTS)
@FUZZ
@given(data=st.data())
def test_hostile_messages_get_a_clear_answer_and_refusals_change_nothing(
    live: Live, name: str, data: st.DataObject
) -> None:
    port = live.exchange.ports[name]
    message_type, message = data.draw(hostile_requests(name))
    user = "service" if message_type in SERVICE_ONLY else port.user
    client = live.client(port, user)
    before = live.exchange.state_hash()
    request_id = data.draw(st.integers(min_value=1, max_value=2**62))
    message.request_id = request_id  # type: ignore[attr-defined]

    async def exchange_one() -> tuple[int, Any]:
        client.send_raw(encode_frame(message_type, message.SerializeToString()))
        while True:
            kind, answer = await client.recv(timeout=5)
            if (kind in RESPONSE_TYPES or kind == MT.ON_ERROR) and answer.request_id == request_id:
                return kind, answer

    kind, answer = live.run(exchange_one())
    assert kind in (RESPONSE_TYPE[message_type], MT.ON_ERROR), (kind, answer)
    if kind == MT.ON_ERROR or answer.error_message:
        assert answer.error_message.strip(), "an error without words"
        assert live.exchange.state_hash() == before, f"refused {message} changed the book"


@pytest.mark.parametrize("name", PORTS)
@FUZZ
@given(payload=st.binary(min_size=1, max_size=2048), logged_in=st.booleans())
def test_arbitrary_bytes_get_well_formed_answers_and_a_bounded_close(
    live: Live, name: str, payload: bytes, logged_in: bool
) -> None:
    port = live.exchange.ports[name]
    before = live.exchange.state_hash()

    async def one() -> list[tuple[int, bytes]]:
        client = await (port.logged_in() if logged_in else port.client())
        client.send_raw(payload)
        client.writer.write_eof()
        # The service finishes what it owes after our EOF, then closes.
        frames = await client.expect_closed(timeout=5)
        await client.close()
        return frames

    frames = live.run(one())
    for kind, body in frames:
        assert kind in MESSAGE_CLASSES
        MESSAGE_CLASSES[kind].FromString(body)  # well-formed
    assert live.exchange.state_hash() == before
    live.run(live.exchange.healthy())


@given(
    frames=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300)), min_size=1, max_size=20
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_the_decoder_reassembles_any_split_and_never_buffers_past_the_limit(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode_frame(kind, body) for kind, body in frames)
    decoder = FrameDecoder(max_length=4 + 300)
    out: list[tuple[int, bytes]] = []
    pos = 0
    index = 0
    while pos < len(data):
        step = cuts[index % len(cuts)]
        out += decoder.feed(data[pos : pos + step])
        assert decoder.buffered <= 8 + 300
        pos += step
        index += 1
    assert out == frames and decoder.buffered == 0


def test_fuzz_exchange_survives(live: Live, tmp_path: Path) -> None:
    """After every example above: the services still serve, nothing leaked."""
    live.run(live.exchange.healthy())
