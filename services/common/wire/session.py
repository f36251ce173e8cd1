"""One accepted connection: framing, login gate, routing, ordered responses.

A :class:`Session` is an ``asyncio.Protocol`` (not streams: one callback per
read, no per-frame task or coroutine) that turns bytes into requests and
requests into responses.  Three properties matter to every service:

* **Order.**  Responses leave in the order their requests arrived, even when a
  handler answers later (an awaitable).  A slot queue holds finished answers
  until every earlier one is out; server pushes queue behind pending answers so
  a fill never overtakes the response of the order that caused it.
* **Batching.**  Everything written during one event-loop turn goes to the
  socket in one ``transport.write``.
* **Bounded memory.**  Output waiting for a slow peer is capped; past the cap
  the connection is dropped, so a peer that stops reading cannot grow us.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

from google.protobuf.message import DecodeError, Message

from services.common.pb import common_pb2
from services.common.wire import errors
from services.common.wire.framing import HEADER, FrameDecoder, FrameError, encode_frame
from services.common.wire.pbenc import leading_int64_field1
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE, type_name

if TYPE_CHECKING:
    from services.common.wire.server import WireServer

LOGIN_REQUEST: Final = common_pb2.MessageType.LOGIN_REQUEST
LOGIN_RESPONSE: Final = common_pb2.MessageType.LOGIN_RESPONSE
ON_ERROR: Final = common_pb2.MessageType.ON_ERROR
HEARTBEAT: Final = common_pb2.MessageType.HEARTBEAT

MAX_BACKLOG_FRAMES: Final = 1024
"""Frames held while an asynchronous login is being verified."""
PAUSE_READING_AT: Final = 4096
"""Pending (unanswered) requests at which reading pauses: back-pressure."""

log = logging.getLogger("optivex.wire")
_pack_header = HEADER.pack


class Slot:
    """A place in the response order; ``data`` is set when the answer is ready."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data


class Session(asyncio.Protocol):
    """Server side of one TCP connection (see the module docstring)."""

    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.settings = server.settings
        self.user: Any = None
        self.username = ""
        self.welcomed = False
        """The service's ``on_login`` hook has run (it follows the login answer by
        one step): only from then on does :meth:`WireServer.broadcast` include the
        session, so a push cannot overtake or duplicate what the hook sends."""
        self.role = 0
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(self.settings.max_frame_bytes_before_login)
        now = server.clock.monotonic()
        self.connected_at = now
        self.last_received = now
        self.last_sent = now
        self.closed = False
        self.congested = False
        """True while the transport's buffer is above its high-water mark."""
        self.on_writable: Callable[[Session], None] | None = None
        """Called when a congested transport drains (Info uses it to flush conflated books)."""
        self.state: dict[str, Any] = {}
        """Per-connection data of the service that owns the session."""
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._unchecked_bytes = 0
        """Bytes we may queue without asking the transport for its buffer size."""
        self._flush_scheduled = False
        self._pending: deque[Slot] = deque()
        self._blocked = False
        self._backlog: deque[tuple[int, bytes]] = deque()
        self._reading_paused = False
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from
        # asyncio.Transport, though they implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        limit = self.settings.max_output_buffer_bytes
        # Congestion is signalled well before the hard cap so conflating
        # services (Info) can stop queueing book states in time.
        high = max(limit // 4, 1)
        self._unchecked_bytes = limit - high
        transport.set_write_buffer_limits(high=high, low=max(limit // 16, 0))
        self.server.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        self.transport = None
        self._out.clear()
        self._pending.clear()
        self._backlog.clear()
        self.server.sessions.discard(self)
        try:
            self.server.service.on_close(self)
        except Exception:  # pragma: no cover - a service bug must not kill the loop
            log.exception("%s: on_close failed", self.server.name)

    def pause_writing(self) -> None:
        self.congested = True

    def resume_writing(self) -> None:
        self.congested = False
        callback = self.on_writable
        if callback is not None:
            callback(self)

    def data_received(self, data: bytes) -> None:
        self.last_received = self.server.clock.monotonic()
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            # The whole frames before the bad length are handled as if they had
            # come in a read of their own (answers included), then the error.
            self._handle(exc.frames)
            if not self.closed:
                self.close_with_error(exc.message_type, exc.reason)
            return
        self._handle(frames)

    def _handle(self, frames: list[tuple[int, bytes]]) -> None:
        """Dispatch one read's frames, then the server's ``after_read`` hook."""
        if self._blocked:
            self._backlog.extend(frames)
            if len(self._backlog) > MAX_BACKLOG_FRAMES:
                self.close_with_error(0, errors.TOO_MANY_PENDING)
            return
        dispatch = self._dispatch
        for index, (message_type, payload) in enumerate(frames):
            if self.closed:
                break
            dispatch(message_type, payload)
            if self._blocked:
                self._backlog.extend(frames[index + 1 :])
                break
        after_read = self.server.after_read
        if after_read is not None and frames:
            after_read()

    def eof_received(self) -> bool | None:
        # Half-closed by the peer: finish writing what we owe, then close.
        return False

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message_type: int, payload: bytes) -> None:
        route = self.server.routes.get(message_type)
        if route is None:
            if message_type == HEARTBEAT:
                return
            if message_type == LOGIN_REQUEST:
                self._login_frame(payload)
                return
            if message_type in MESSAGE_CLASSES:
                reason = errors.not_served(message_type, type_name(message_type))
                request_id = _request_id_of(message_type, payload)
            else:
                reason = errors.unknown_type(message_type)
                request_id = leading_int64_field1(payload)
            self.send_error(message_type, reason, request_id)
            return
        try:
            message = route.message_class.FromString(payload)
        except DecodeError:
            self.send_error(
                message_type,
                errors.unparsable(message_type, type_name(message_type)),
                leading_int64_field1(payload),
            )
            return
        if self.user is None:
            self._refuse(message_type, message, errors.NOT_LOGGED_IN, route.response_class)
            return
        if self.role not in route.roles:
            self._refuse(message_type, message, errors.NOT_PERMITTED, None)
            return
        try:
            result = route.handler(self, message)
        except Exception:
            log.exception("%s: handler for %s failed", self.server.name, type_name(message_type))
            self._refuse(message_type, message, "internal error", route.response_class)
            return
        if result is None:
            return
        if isinstance(result, Message):
            self.respond(route.response_type, result)
        else:
            self._respond_later(route.response_type, result)

    def _refuse(
        self,
        message_type: int,
        message: Message,
        reason: str,
        response_class: type[Message] | None,
    ) -> None:
        """Answer with the request's own response type when it has one, else ``ON_ERROR``."""
        request_id = getattr(message, "request_id", 0)
        if response_class is not None:
            response = response_class(request_id=request_id, error_message=reason)
            self.respond(RESPONSE_TYPE[message_type], response)
        else:
            self.send_error(message_type, reason, request_id)

    # ------------------------------------------------------------------ login

    def _login_frame(self, payload: bytes) -> None:
        try:
            request = common_pb2.LoginRequest.FromString(payload)
        except DecodeError:
            self.send_error(LOGIN_REQUEST, errors.unparsable(LOGIN_REQUEST, "LOGIN_REQUEST"))
            return
        if self.user is not None:
            self.respond(
                LOGIN_RESPONSE,
                common_pb2.LoginResponse(
                    request_id=request.request_id, error_message=errors.ALREADY_LOGGED_IN
                ),
            )
            return
        # Verification runs off the loop; later frames wait so a pipelined
        # request right behind the login sees the logged-in state.
        self._blocked = True
        slot = Slot()
        self._pending.append(slot)
        task = self._loop.create_task(self._login(request))
        task.add_done_callback(lambda t: self._login_done(t, slot))

    async def _login(self, request: common_pb2.LoginRequest) -> common_pb2.LoginResponse:
        server = self.server
        user = await server.authenticator.authenticate(
            request.username, request.password, self.peer.rsplit(":", 1)[0]
        )
        if user is None:
            log.info("%s: failed login from %s", server.name, self.peer)
            return common_pb2.LoginResponse(
                request_id=request.request_id, error_message=errors.INVALID_CREDENTIALS
            )
        role = int(user.role)
        if role not in server.login_roles:
            role_text = common_pb2.Role.Name(role).lower()  # type: ignore[arg-type]
            return common_pb2.LoginResponse(
                request_id=request.request_id, error_message=errors.role_refused(role_text)
            )
        self.user = user
        self.username = user.name
        self.role = role
        self.decoder.max_length = self.settings.max_frame_bytes
        log.info("%s: %s logged in from %s", server.name, user.name, self.peer)
        return common_pb2.LoginResponse(request_id=request.request_id, role=role)  # type: ignore[arg-type]

    def _login_done(self, task: asyncio.Task[common_pb2.LoginResponse], slot: Slot) -> None:
        if self.closed:
            return
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("%s: login failed: %r", self.server.name, task.exception())
            response = common_pb2.LoginResponse(error_message="internal error during login")
        else:
            response = task.result()
        slot.data = encode_frame(LOGIN_RESPONSE, response.SerializeToString())
        self._release_slots()
        if self.user is not None and not response.error_message:
            try:
                self.server.service.on_login(self)
            except Exception:
                log.exception("%s: on_login failed", self.server.name)
            self.welcomed = True
        self._blocked = False
        backlog = self._backlog
        dispatched = bool(backlog)
        while backlog and not self._blocked and not self.closed:
            message_type, payload = backlog.popleft()
            self._dispatch(message_type, payload)
        after_read = self.server.after_read
        if after_read is not None and dispatched:
            after_read()

    # ------------------------------------------------------------------ output

    def respond(self, response_type: int, response: Message) -> None:
        """Send a response now, or queue it behind earlier unanswered requests."""
        payload = response.SerializeToString()
        frame = _pack_header(len(payload) + 4, response_type) + payload
        if self._pending:
            self._pending.append(Slot(frame))
            self._release_slots()
        else:
            self._write(frame)

    def reserve(self) -> Slot:
        """Hold this request's place in the response order; answer with :meth:`fulfil`.

        For services that answer in batches (the Order Book releases responses
        only after its journal commit) without a future per request.
        """
        slot = Slot()
        self._pending.append(slot)
        if len(self._pending) >= PAUSE_READING_AT and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        return slot

    def fulfil(self, slot: Slot, frame: bytes) -> None:
        """Give a reserved slot its encoded answer; releases every answer now in order."""
        if self.closed:
            return
        slot.data = frame
        self._release_slots()

    def _respond_later(self, response_type: int, awaitable: Awaitable[Message]) -> None:
        slot = self.reserve()
        future = asyncio.ensure_future(awaitable)
        future.add_done_callback(lambda f: self._fill(slot, response_type, f))

    def _fill(self, slot: Slot, response_type: int, future: asyncio.Future[Message]) -> None:
        if self.closed:
            return
        if future.cancelled() or future.exception() is not None:
            if not future.cancelled():
                log.error(
                    "%s: %s handler failed: %r",
                    self.server.name,
                    type_name(response_type),
                    future.exception(),
                )
            error = common_pb2.OnError(
                message_type=response_type - 1, error_message="internal error"
            )
            slot.data = encode_frame(ON_ERROR, error.SerializeToString())
        else:
            slot.data = encode_frame(response_type, future.result().SerializeToString())
        self._release_slots()

    def _release_slots(self) -> None:
        pending = self._pending
        while pending and pending[0].data is not None:
            data = pending.popleft().data
            assert data is not None
            self._write(data)
        if self._reading_paused and len(pending) < PAUSE_READING_AT // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()

    def send(self, message_type: int, message: Message) -> None:
        """Push ``message`` (serialised here) in order with this session's responses."""
        self.send_frame(encode_frame(message_type, message.SerializeToString()))

    def send_frame(self, frame: bytes) -> None:
        """Push an already encoded frame (fan-out serialises once for many sessions)."""
        if self._pending:
            self._pending.append(Slot(frame))
            self._release_slots()
        else:
            self._write(frame)

    def send_unordered(self, frame: bytes) -> None:
        """Write a frame now, ahead of answers still waiting for earlier requests.

        Only for frames that carry no order (heartbeats): a peer whose request
        waits on a slow upstream must still hear from us, or it would drop the
        connection at its idle timeout.
        """
        self._write(frame)

    def send_error(self, message_type: int, reason: str, request_id: int = 0) -> None:
        """Send ``ON_ERROR`` naming the offending type; the connection stays open."""
        error = common_pb2.OnError(
            message_type=message_type, error_message=reason, request_id=request_id
        )
        self.send(ON_ERROR, error)

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self._out.append(data)
        out_bytes = self._out_bytes + len(data)
        self._out_bytes = out_bytes
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        # While the transport is not congested its buffer is at most the
        # high-water mark (a quarter of the cap), so the exact check is only
        # needed past the rest of the cap or when congested: this skips a
        # method call per message on the common path, same outcome.
        if out_bytes > self._unchecked_bytes or self.congested:
            transport = self.transport
            if (
                transport is not None
                and out_bytes + transport.get_write_buffer_size()
                > self.settings.max_output_buffer_bytes
            ):
                log.warning(
                    "%s: dropping %s (%s)", self.server.name, self.peer, errors.OUTPUT_OVERFLOW
                )
                self.abort()

    def flush(self) -> None:
        """Write what is queued now rather than at the end of the loop turn
        (for a service that has just finished a batch of answers)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        if not self._out or transport is None or self.closed:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        self.last_sent = self.server.clock.monotonic()
        transport.write(data)

    @property
    def output_bytes(self) -> int:
        """Bytes queued for this peer (ours plus the transport's)."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._out_bytes + buffered

    # ------------------------------------------------------------------ closing

    def close_with_error(self, message_type: int, reason: str) -> None:
        """Send ``ON_ERROR`` then close once it is written (bad length, timeouts)."""
        if self.closed:
            return
        self._pending.clear()
        self.send_error(message_type, reason)
        self.close()

    def close(self) -> None:
        """Flush what is queued and close the connection."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent output."""
        self._out.clear()
        self._out_bytes = 0
        transport = self.transport
        self.closed = True
        if transport is not None:
            transport.abort()


def _request_id_of(message_type: int, payload: bytes) -> int:
    """The ``request_id`` of a known type's payload for its ``ON_ERROR`` (0 if none).

    Only types whose field 1 *is* ``request_id`` have one: an event sent to a
    port (``OnTrade``, say) keeps another id in field 1.
    """
    fields = MESSAGE_CLASSES[message_type].DESCRIPTOR.fields_by_number
    field = fields.get(1)
    if field is None or field.name != "request_id":
        return 0
    return leading_int64_field1(payload)
