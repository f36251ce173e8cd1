"""The asyncio TCP server every service runs on.

A service describes *what* it serves (a table of routes: message type, handler,
roles allowed to send it, and the roles allowed to log in); this module does
*how*: accepting connections, login, the per-port type table, heartbeats and
silence/login deadlines, and a graceful stop.  Services never touch sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from services.common.pb import common_pb2
from services.common.wire import errors
from services.common.wire.framing import encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE
from services.common.wire.session import HEARTBEAT, Session

log = logging.getLogger("optivex.wire")

Handler = Callable[[Session, Any], "Message | Awaitable[Message] | None"]
"""A request handler: returns its response, an awaitable of it, or None."""


@dataclass(frozen=True, slots=True)
class Route:
    """How one request type is served on a port."""

    message_type: int
    handler: Handler
    roles: frozenset[int]
    """Roles (protobuf ``Role`` numbers) that may send this type."""

    @property
    def message_class(self) -> type[Message]:
        return MESSAGE_CLASSES[self.message_type]

    @property
    def response_type(self) -> int:
        return RESPONSE_TYPE.get(self.message_type, 0)

    @property
    def response_class(self) -> type[Message] | None:
        response_type = RESPONSE_TYPE.get(self.message_type)
        return None if response_type is None else MESSAGE_CLASSES[response_type]


class _ResolvedRoute:
    """A route with its class lookups done once (the hot path reads these)."""

    __slots__ = ("handler", "message_class", "response_class", "response_type", "roles")

    def __init__(self, route: Route) -> None:
        self.handler = route.handler
        self.roles = route.roles
        self.message_class = route.message_class
        self.response_type = route.response_type
        self.response_class = route.response_class


@dataclass(frozen=True, slots=True)
class WireSettings:
    """Connection limits and timers (from each service's config)."""

    heartbeat_interval_s: float = 1.0
    idle_timeout_s: float = 15.0
    login_timeout_s: float = 10.0
    max_frame_bytes: int = 1 << 20
    max_frame_bytes_before_login: int = 4096
    max_output_buffer_bytes: int = 8 << 20
    tls_cert_file: str = ""
    """PEM certificate chain: when set (with ``tls_key_file``) the port speaks TLS."""
    tls_key_file: str = ""

    @classmethod
    def from_config(cls, config: Any) -> WireSettings:
        """Take the same-named fields from a service config object."""
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(config, name) for name in fields if hasattr(config, name)})


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext | None:
    """The TLS context of a port, or None for plain TCP (both paths empty).

    TLS 1.2 at least, the ``ssl`` module's default ciphers; no client
    certificates (clients prove who they are with the protocol's login).
    Raises ``OSError`` (``ssl.SSLError`` is one) for unreadable or mismatched
    files, which a service reports as "cannot start".
    """
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise OSError("TLS needs both a certificate file and a key file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now_ns(self) -> int: ...


class Authenticator(Protocol):
    async def authenticate(self, username: str, password: str, peer: str) -> Any: ...


class Service(Protocol):
    """What a service gives the server: hooks called on the event loop."""

    def on_login(self, session: Session) -> None: ...

    def on_close(self, session: Session) -> None: ...


class WireServer:
    """Accepts connections for one service on one port."""

    def __init__(
        self,
        name: str,
        service: Service,
        routes: Iterable[Route],
        login_roles: Iterable[int],
        authenticator: Authenticator,
        clock: Clock,
        settings: WireSettings | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self.routes: Mapping[int, Any] = {r.message_type: _ResolvedRoute(r) for r in routes}
        self.login_roles = frozenset(int(r) for r in login_roles)
        self.authenticator = authenticator
        self.clock = clock
        self.settings = settings or WireSettings()
        self.sessions: set[Session] = set()
        self.after_read: Callable[[], None] | None = None
        """Called once a read's requests are all dispatched (on any session):
        a service that batches work per read (the Risk Gateway's outbox) does
        it here rather than on a later loop turn."""
        self.host = ""
        self.port = 0
        self.tls = False
        self._server: asyncio.Server | None = None
        self._housekeeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and start serving; returns the bound address (port 0 picks one)."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        context = server_ssl_context(settings.tls_cert_file, settings.tls_key_file)
        self._server = await loop.create_server(
            lambda: Session(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=context,
            # A peer that never finishes the handshake is dropped like one that
            # never logs in (the session's login deadline starts after it).
            ssl_handshake_timeout=settings.login_timeout_s if context else None,
        )
        sock = self._server.sockets[0]
        bound = sock.getsockname()
        self.host, self.port = str(bound[0]), int(bound[1])
        self.tls = context is not None
        self._housekeeper = loop.create_task(self._housekeeping())
        return self.host, self.port

    def broadcast(self, message_type: int, message: Message) -> None:
        """Push one message to every logged-in session (serialised once).

        Only sessions whose ``on_login`` hook has run (``Session.welcomed``): a
        session is logged in one step before the hook, and a push in between
        would reach it ahead of (or on top of) what the hook sends it.
        """
        frame = encode_frame(message_type, message.SerializeToString())
        for session in list(self.sessions):
            if session.welcomed:
                session.send_frame(frame)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stop accepting, flush what every session is owed, then close them."""
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for session in list(self.sessions):
            session.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=grace_s)
            self._server = None

    async def _housekeeping(self) -> None:
        """Heartbeats after idle output; close silent and never-logged-in peers."""
        settings = self.settings
        tick = max(0.01, min(0.25, settings.heartbeat_interval_s / 4))
        heartbeat = common_pb2.Heartbeat
        while True:
            await asyncio.sleep(tick)
            now = self.clock.monotonic()
            beat: bytes | None = None
            for session in list(self.sessions):
                if session.closed:
                    continue
                if session.user is None and now - session.connected_at > settings.login_timeout_s:
                    session.close_with_error(0, errors.LOGIN_TIMEOUT)
                elif now - session.last_received > settings.idle_timeout_s:
                    session.close_with_error(0, errors.IDLE_TIMEOUT)
                elif now - session.last_sent >= settings.heartbeat_interval_s:
                    if beat is None:
                        beat = encode_frame(
                            HEARTBEAT, heartbeat(timestamp=self.clock.now_ns()).SerializeToString()
                        )
                    session.send_unordered(beat)
                    session.last_sent = now
