"""An asyncio connection to one exchange port that keeps every frame it receives.

Tests need three things from a connection: ask and get the matching answer
(:meth:`Conn.request`), wait for a push that satisfies a condition
(:meth:`Conn.expect`), and look at the order in which things arrived (every
:class:`Frame` has an arrival ``index``).  So a background task reads and decodes
everything into :attr:`Conn.frames`; waiting never consumes what it skips, and
heartbeats are recorded apart (:attr:`Conn.heartbeats`) so that no test trips on
one.  Failures raise ``AssertionError`` whose first line says what was expected
and what was received, because that line is what the graded report shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message

from system_tests.harness.framing import FrameDecoder, FramingError, encode_frame
from system_tests.harness.messages import (
    HEARTBEAT,
    ON_ERROR,
    RESPONSE_OF,
    name_of,
    parse,
    type_of,
)
from system_tests.pb import common_pb2

DEFAULT_TIMEOUT = 5.0
"""Seconds to wait for an expected frame (``--grade-timeout`` changes it)."""

EXECUTION_REQUESTS = frozenset({40, 42, 46})
LAST_EXECUTION_REQUEST: dict[str, float] = {}
"""username -> monotonic time of the last insert/cancel/amend this suite sent for
it, so message-rate tests can wait until a user's window is empty."""

ISSUED_ORDER_IDS: set[int] = set()
ISSUED_TRADE_IDS: set[int] = set()
"""Every order and trade id any connection of this run has seen, so the restart
tests can show that ids are never reused."""

_request_ids = itertools.count(1000)


def _note_ids(message_type: int, msg: Any) -> None:
    if message_type in (11, 41, 15):
        if msg.order_id:
            ISSUED_ORDER_IDS.add(msg.order_id)
        ISSUED_TRADE_IDS.update(msg.trade_ids)
    elif message_type in (47, 63, 19):
        ISSUED_TRADE_IDS.update(msg.trade_ids)
    elif message_type in (17, 44, 25):
        ISSUED_TRADE_IDS.add(msg.trade_id)


@dataclass(frozen=True)
class Endpoint:
    """Where one service listens, with a name for messages."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.port})"


@dataclass
class Frame:
    """One received frame, parsed when its type is in the contract."""

    index: int
    type: int
    payload: bytes
    msg: Any
    at: float

    def describe(self) -> str:
        return describe(self.type, self.msg, self.payload)


def describe(message_type: int, msg: Message | None, payload: bytes = b"") -> str:
    """``NAME{field: value ...}`` on one line (payload hex when it does not parse)."""
    if msg is None:
        return f"{name_of(message_type)}<{len(payload)} bytes: {payload[:32].hex()}>"
    body = text_format.MessageToString(msg, as_one_line=True)
    if len(body) > 300:
        body = body[:300] + "..."
    return f"{name_of(message_type)}{{{body}}}"


@dataclass
class _Waiter:
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Conn:
    """A client connection; see the module docstring."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str
    ) -> None:
        self.label = label
        self.username: str | None = None
        self.frames: list[Frame] = []
        self.heartbeats: list[float] = []
        self.opened_at = time.monotonic()
        self.closed_at: float | None = None
        self.framing_error: str | None = None
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._consumed: list[bool] = []
        self._first_open = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resume()

    @classmethod
    async def open(cls, endpoint: Endpoint, label: str = "", *, rcvbuf: int | None = None) -> Conn:
        """Connect to ``endpoint``; ``rcvbuf`` shrinks the receive buffer (slow readers)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (endpoint.host, endpoint.port)), 10)
        except Exception as exc:
            sock.close()
            raise AssertionError(f"expected to connect to {endpoint}, received {exc!r}") from exc
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        return cls(reader, writer, label or endpoint.name)

    # ----------------------------------------------------------------- reading

    def pause(self) -> None:
        """Stop reading (the peer's output backs up: a slow reader)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def resume(self) -> None:
        """Start (again) reading in the background."""
        if self._task is None and self.closed_at is None:
            self._task = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(1 << 16)
                if not data:
                    break
                now = time.monotonic()
                try:
                    decoded = self._decoder.feed(data)
                except FramingError as exc:
                    self.framing_error = str(exc)
                    break
                for message_type, payload in decoded:
                    if message_type == HEARTBEAT:
                        self.heartbeats.append(now)
                        self._arrived.set()
                        continue
                    msg = parse(message_type, payload)
                    frame = Frame(len(self.frames), message_type, payload, msg, now)
                    if msg is not None:
                        _note_ids(message_type, msg)
                    self.frames.append(frame)
                    self._consumed.append(False)
                if decoded:
                    self._arrived.set()
        except (ConnectionError, OSError):
            pass
        self.closed_at = time.monotonic()
        self._arrived.set()

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None

    def received(self, message_type: int | None = None) -> list[Any]:
        """Every parsed message received so far (of one type), consumed or not."""
        return [f.msg for f in self.frames if message_type is None or f.type == message_type]

    def unconsumed(self, message_type: int | None = None) -> list[Frame]:
        """Frames no expectation has taken yet (of one type)."""
        return [
            f
            for f in self.frames[self._first_open :]
            if not self._consumed[f.index] and (message_type is None or f.type == message_type)
        ]

    def _take(self, frame: Frame) -> None:
        self._consumed[frame.index] = True
        while self._first_open < len(self._consumed) and self._consumed[self._first_open]:
            self._first_open += 1

    def _tail(self, limit: int = 4) -> str:
        open_frames = self.unconsumed()
        if not open_frames:
            return "nothing else"
        shown = "; ".join(f.describe() for f in open_frames[-limit:])
        more = len(open_frames) - limit
        return (f"{more} more, then " if more > 0 else "") + shown

    async def expect_frame(
        self,
        predicate: Callable[[Frame], bool],
        what: str,
        timeout: float | None = None,
        *,
        consume: bool = True,
    ) -> Frame:
        """The first not-yet-taken frame satisfying ``predicate`` (waits for it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (DEFAULT_TIMEOUT if timeout is None else timeout)
        scanned = self._first_open
        while True:
            self._arrived.clear()
            for frame in self.frames[max(scanned, self._first_open) :]:
                if not self._consumed[frame.index] and predicate(frame):
                    if consume:
                        self._take(frame)
                    return frame
            scanned = len(self.frames)
            if self.closed_at is not None:
                why = f" ({self.framing_error})" if self.framing_error else ""
                raise AssertionError(
                    f"{self.label}: expected {what}, received connection closed by the "
                    f"exchange{why}; unread before it: {self._tail()}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.label}: expected {what} within "
                    f"{DEFAULT_TIMEOUT if timeout is None else timeout:.1f} s, received "
                    f"{self._tail()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def expect(
        self,
        message_type: int,
        where: Callable[[Any], bool] | None = None,
        what: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The next (not yet taken) message of ``message_type`` that ``where`` accepts."""
        label = what or name_of(message_type)
        frame = await self.expect_frame(
            lambda f: (
                f.type == message_type and f.msg is not None and (where is None or where(f.msg))
            ),
            label,
            timeout,
        )
        return frame.msg

    async def expect_next(
        self, message_type: int, what: str | None = None, timeout: float | None = None
    ) -> Any:
        """The very next not-yet-taken frame, which must be of ``message_type``."""
        frame = await self.expect_frame(lambda f: True, what or name_of(message_type), timeout)
        if frame.type != message_type or frame.msg is None:
            raise AssertionError(
                f"{self.label}: expected {what or name_of(message_type)} next, "
                f"received {frame.describe()}"
            )
        return frame.msg

    async def expect_closed(self, timeout: float | None = None, what: str = "") -> None:
        """Wait until the exchange closes this connection."""
        loop = asyncio.get_running_loop()
        limit = DEFAULT_TIMEOUT if timeout is None else timeout
        deadline = loop.time() + limit
        while self.closed_at is None:
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.label}: expected the exchange to close the connection"
                    f"{' ' + what if what else ''} within {limit:.1f} s, received it still open "
                    f"(unread: {self._tail()})"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def expect_heartbeat(self, timeout: float, what: str = "") -> float:
        """Wait for the first HEARTBEAT (returns its arrival time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.heartbeats:
            self._arrived.clear()
            remaining = deadline - loop.time()
            if self.closed_at is not None or remaining <= 0:
                got = "the connection closed" if self.closed_at is not None else "none"
                raise AssertionError(
                    f"{self.label}: expected a HEARTBEAT within {timeout:.1f} s"
                    f"{' ' + what if what else ''}, received {got}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.heartbeats[0]

    # ----------------------------------------------------------------- writing

    def send(self, msg: Message, message_type: int | None = None) -> None:
        """Write one frame carrying ``msg`` (its contract type unless given)."""
        kind = type_of(msg) if message_type is None else message_type
        self.send_frame(kind, msg.SerializeToString())

    def send_frame(self, message_type: int, payload: bytes) -> None:
        if message_type in EXECUTION_REQUESTS and self.username:
            LAST_EXECUTION_REQUEST[self.username] = time.monotonic()
        self.send_raw(encode_frame(message_type, payload))

    def send_raw(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    @staticmethod
    def assign_id(msg: Message) -> int:
        """Give ``msg`` a fresh request_id (unique in this run) unless it has one."""
        if msg.request_id == 0:  # type: ignore[attr-defined]
            msg.request_id = next(_request_ids)  # type: ignore[attr-defined]
        return int(msg.request_id)  # type: ignore[attr-defined]

    def send_request(self, msg: Message) -> int:
        """Send a request without waiting; returns its request_id."""
        request_id = self.assign_id(msg)
        self.send(msg)
        return request_id

    async def response_to(
        self, msg: Message, request_id: int, timeout: float | None = None
    ) -> Frame:
        """The response (or ON_ERROR) to an already sent request."""
        response_type = RESPONSE_OF[type_of(msg)]
        return await self.expect_frame(
            lambda f: (
                f.type in (response_type, ON_ERROR)
                and f.msg is not None
                and f.msg.request_id == request_id
            ),
            f"{name_of(response_type)} with request_id {request_id}",
            timeout,
        )

    async def request_frame(self, msg: Message, timeout: float | None = None) -> Frame:
        """Send ``msg`` and return its response frame, which may be ON_ERROR."""
        request_id = self.send_request(msg)
        return await self.response_to(msg, request_id, timeout)

    async def request(self, msg: Message, timeout: float | None = None) -> Any:
        """Send ``msg`` and return its typed response (an ON_ERROR answer fails)."""
        frame = await self.request_frame(msg, timeout)
        if frame.type == ON_ERROR:
            response_name = name_of(RESPONSE_OF[type_of(msg)])
            raise AssertionError(
                f"{self.label}: expected {response_name} to {describe(type_of(msg), msg)}, "
                f"received {frame.describe()}"
            )
        return frame.msg

    async def login(self, username: str, password: str) -> Any:
        """Send a LoginRequest; returns the LoginResponse (success or not)."""
        response = await self.request(common_pb2.LoginRequest(username=username, password=password))
        if not response.error_message:
            self.username = username
        return response

    async def close(self) -> None:
        self.pause()
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2)
        if self.closed_at is None:
            self.closed_at = time.monotonic()
