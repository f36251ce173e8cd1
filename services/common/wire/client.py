"""Client side of the wire: a logged-in connection to another service.

Services use it to reach upstream services (Info, Risk Gateway and Admin to the
Order Book; Admin to Info) and the participant SDK builds on it.  Requests get
their ``request_id`` here and resolve to their response (matched by id, so many
may be in flight); every other frame is a push handed to ``on_push`` in arrival
order, synchronously, which keeps event streams strictly ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, Self, TypeVar, cast

from google.protobuf.message import DecodeError, Message

from services.common.pb import common_pb2
from services.common.wire.errors import ConnectionLost, RemoteError
from services.common.wire.framing import FrameDecoder, FrameError, encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPES, type_name

log = logging.getLogger("optivex.wire.client")

PushHandler = Callable[[int, Any], None]
ResponseCallback = Callable[[Any], None]
"""Gets a response message (also one carrying an error) or the exception that ended the wait."""
M = TypeVar("M", bound=Message)

ON_ERROR = common_pb2.MessageType.ON_ERROR
HEARTBEAT = common_pb2.MessageType.HEARTBEAT
LOGIN_REQUEST = common_pb2.MessageType.LOGIN_REQUEST


def client_ssl_context(ca_file: str = "") -> ssl_module.SSLContext:
    """A TLS context for connecting to a port that speaks TLS.

    ``ca_file`` (PEM) is the certificate, or the authority that signed it, to
    trust; empty means the system's trust store.  The server's name (or IP
    address) is checked against its certificate.  Pass the context as ``ssl=``
    to :meth:`UpstreamConnection.open` (or the SDK's ``Client.connect``).
    """
    context = ssl_module.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl_module.TLSVersion.TLSv1_2
    return context


class UpstreamConnection(asyncio.Protocol):
    """One client connection; create with :meth:`open`."""

    def __init__(
        self,
        name: str,
        on_push: PushHandler | None,
        heartbeat_interval_s: float,
        idle_timeout_s: float,
        max_frame_bytes: int,
    ) -> None:
        self.name = name
        self.on_push = on_push
        self.heartbeat_interval_s = heartbeat_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.decoder = FrameDecoder(max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.role = 0
        self._loop = asyncio.get_running_loop()
        # request_id -> (future, raw) for request()/request_raw(), or
        # (callback, None) for request_callback().
        self._pending: dict[int, tuple[Any, bool | None]] = {}
        self._next_id = 1
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._last_received = self._loop.time()
        self._last_sent = self._loop.time()
        self._keeper: asyncio.Task[None] | None = None
        self.after_read: Callable[[], None] | None = None
        """Called once every frame of a read has been handled (responses and
        pushes): a caller that collects answers per read settles them here,
        after the pushes that came with them, instead of on a later turn."""
        self._made: asyncio.Future[None] = self._loop.create_future()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        name: str = "upstream",
        on_push: PushHandler | None = None,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
        max_frame_bytes: int = 1 << 20,
        timeout_s: float = 10.0,
        ssl: Any = None,
    ) -> Self:
        """Connect and log in; raises ``OSError``, ``RemoteError`` or ``TimeoutError``.

        ``ssl``: an :class:`ssl.SSLContext` for a port that speaks TLS (see
        :func:`client_ssl_context`), None for plain TCP.
        """
        loop = asyncio.get_running_loop()

        factory = functools.partial(
            cls, name, on_push, heartbeat_interval_s, idle_timeout_s, max_frame_bytes
        )
        _, conn = await asyncio.wait_for(
            loop.create_connection(factory, host, port, ssl=ssl), timeout_s
        )
        try:
            if conn.transport is None:
                # uvloop calls connection_made on a later turn than the one
                # that completes create_connection; wait for it.
                await asyncio.wait_for(asyncio.shield(conn._made), timeout_s)
            response = await asyncio.wait_for(
                conn.request(
                    LOGIN_REQUEST, common_pb2.LoginRequest(username=username, password=password)
                ),
                timeout_s,
            )
        except BaseException:
            conn.close()
            raise
        conn.role = response.role
        conn._keeper = loop.create_task(conn._keepalive())
        return conn

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from
        # asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)
        if not self._made.done():
            self._made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._made.done():
            self._made.set_result(None)
        if self._keeper is not None:
            self._keeper.cancel()
        pending, self._pending = self._pending, {}
        for target, raw in pending.values():
            if raw is None:
                self._call(target, ConnectionLost(f"{self.name}: connection lost"))
            elif not target.done():
                target.set_exception(ConnectionLost(f"{self.name}: connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        frames = self.read_frames(data)
        if frames is None:
            return
        pending = self._pending
        for message_type, payload in frames:
            cls = MESSAGE_CLASSES.get(message_type)
            if cls is None or message_type == HEARTBEAT:
                continue
            try:
                message: Any = cls.FromString(payload)
            except DecodeError:
                log.error("%s: unparsable %s from peer", self.name, type_name(message_type))
                continue
            if message_type in RESPONSE_TYPES:
                entry = pending.pop(message.request_id, None)
                if entry is None:
                    continue
                target, raw = entry
                if raw is None:
                    self._call(target, message)
                elif not target.done():
                    if message.error_message and not raw:
                        target.set_exception(RemoteError(message.error_message, message_type))
                    else:
                        target.set_result(message)
                continue
            if message_type == ON_ERROR:
                entry = pending.pop(message.request_id, None) if message.request_id else None
                if entry is None:
                    log.warning("%s: peer reported: %s", self.name, message.error_message)
                elif entry[1] is None:
                    self._call(entry[0], RemoteError(message.error_message, message.message_type))
                elif not entry[0].done():
                    entry[0].set_exception(RemoteError(message.error_message, message.message_type))
                continue
            if self.on_push is not None:
                self.on_push(message_type, message)
        after_read = self.after_read
        if after_read is not None and frames:
            after_read()

    def read_frames(self, data: bytes) -> list[tuple[int, bytes]] | None:
        """The frames ``data`` completes; None (and the connection closed) if it
        broke the framing. For subclasses that read some frames their own way."""
        self._last_received = self._loop.time()
        try:
            return self.decoder.feed(data)
        except FrameError as exc:
            log.error("%s: bad frame from peer: %s", self.name, exc.reason)
            self.close()
            return None

    # ------------------------------------------------------------------ requests

    def next_request_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def request(self, message_type: int, message: Any) -> asyncio.Future[Any]:
        """Send a request (its ``request_id`` is assigned here); resolves to the response.

        A response with a non-empty ``error_message`` or an ``ON_ERROR`` naming
        the request fails the future with :class:`RemoteError`.
        """
        return self._request(message_type, message, raw=False)

    def request_raw(self, message_type: int, message: Any) -> asyncio.Future[Any]:
        """Like :meth:`request`, but a response carrying an error is a result, not a failure."""
        return self._request(message_type, message, raw=True)

    def _request(self, message_type: int, message: Any, raw: bool) -> asyncio.Future[Any]:
        request_id = self.next_request_id()
        message.request_id = request_id
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.transport is None:
            future.set_exception(ConnectionLost(f"{self.name}: not connected"))
            return future
        self._pending[request_id] = (future, raw)
        # A caller that stops waiting (``wait_for`` timed out, task cancelled)
        # cancels the future: its entry goes with it, or a long-lived connection
        # would keep one per abandoned request until it closes.
        future.add_done_callback(functools.partial(self._forget_cancelled, request_id))
        self.send(message_type, message)
        return future

    def _forget_cancelled(self, request_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            entry = self._pending.get(request_id)
            if entry is not None and entry[0] is future:
                del self._pending[request_id]

    def request_callback(self, message_type: int, message: Any, callback: ResponseCallback) -> int:
        """Send a request; ``callback`` gets its response, without a future.

        For hot paths (the null relay, the load generator): no future, no extra
        loop turn.  ``callback`` runs synchronously while the response is read,
        in arrival order like pushes, with the response message (also when it
        carries an ``error_message``), or with a :class:`RemoteError` (an
        ``ON_ERROR`` naming the request) or :class:`ConnectionLost`.  Returns
        the ``request_id`` assigned.
        """
        request_id = self.next_request_id()
        message.request_id = request_id
        if self.transport is None:
            self._loop.call_soon(callback, ConnectionLost(f"{self.name}: not connected"))
            return request_id
        self._pending[request_id] = (callback, None)
        self.send(message_type, message)
        return request_id

    def _call(self, callback: ResponseCallback, outcome: Any) -> None:
        try:
            callback(outcome)
        except Exception:
            log.exception("%s: response callback failed", self.name)

    def send(self, message_type: int, message: Message) -> None:
        """Send a message without waiting for anything (batched per loop turn)."""
        if self.transport is None:
            return
        self._out.append(encode_frame(message_type, message.SerializeToString()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def flush(self) -> None:
        """Write what is queued now rather than at the end of the loop turn
        (a caller that has just queued a whole batch saves a loop iteration)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out or self.transport is None:
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        self._last_sent = self._loop.time()
        self.transport.write(data)

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Close now; pending requests fail with :class:`ConnectionLost`."""
        if self.transport is not None:
            self._flush()
            self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    async def _keepalive(self) -> None:
        """Send heartbeats when idle; drop the connection when the peer falls silent."""
        heartbeat = common_pb2.Heartbeat
        tick = max(0.01, min(0.25, self.heartbeat_interval_s / 4))
        with contextlib.suppress(asyncio.CancelledError):
            while self.transport is not None:
                await asyncio.sleep(tick)
                now = self._loop.time()
                if now - self._last_received > self.idle_timeout_s:
                    log.warning(
                        "%s: peer silent for %.1f s, closing", self.name, self.idle_timeout_s
                    )
                    if self.transport is not None:
                        self.transport.abort()
                    return
                if now - self._last_sent >= self.heartbeat_interval_s:
                    self.send(HEARTBEAT, heartbeat(timestamp=0))
                    self._last_sent = now
