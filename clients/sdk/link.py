"""One service connection that survives restarts of the service.

Why: a participant's program should not die because the Risk Gateway was
restarted for a deploy.  A :class:`Link` builds on the
shared :class:`~services.common.wire.link.ReconnectingLink`, which replaces a
dropped connection: reconnect with exponential backoff, log in again, run the
owner's ``on_up`` hook (re-subscribe, resynchronise), then let waiting
requests through.

Requests made while disconnected wait for the connection, up to their timeout.
A request whose connection drops before its answer is either resent (when the
caller says it is safe: reads, idempotent writes, inserts carrying a
``client_order_id``) or fails with :class:`OutcomeUnknown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import Any

from clients.sdk.errors import Disconnected, ExchangeError, LoginFailed, OutcomeUnknown
from services.common.pb import common_pb2
from services.common.wire.client import PushHandler, UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError
from services.common.wire.link import ReconnectingLink

log = logging.getLogger("optivex.sdk.link")

LOGIN_RESPONSE = common_pb2.MessageType.LOGIN_RESPONSE

OnUp = Callable[[UpstreamConnection], Awaitable[None]]


class Link:
    """A self-healing, logged-in connection to one service."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        on_push: PushHandler,
        on_up: OnUp | None = None,
        on_down: Callable[[], None] | None = None,
        on_connecting: Callable[[], None] | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
        ssl: SSLContext | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.gone = False
        """The connection was lost with reconnecting disabled: it never comes back."""
        owner_down = on_down or (lambda: None)

        def down() -> None:
            # Called before the link decides whether to reconnect; without
            # reconnecting, waiting for the connection would only burn the
            # caller's timeout (and a stream would wait forever).
            if not reconnect:
                self.gone = True
            owner_down()

        self.link = ReconnectingLink(
            name,
            host,
            port,
            username,
            password,
            log=log,
            on_push=on_push,
            on_connecting=on_connecting or (lambda: None),
            on_up=on_up,
            on_down=down,
            heartbeat_interval_s=heartbeat_interval_s,
            idle_timeout_s=idle_timeout_s,
            connect_timeout_s=connect_timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            reconnect=reconnect,
            ssl=ssl,
        )
        self._closing = False

    @property
    def conn(self) -> UpstreamConnection | None:
        return self.link.conn

    @property
    def connections(self) -> int:
        """Successful logins so far (1 after start, +1 per reconnect)."""
        return self.link.connections

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and log in once; raises :class:`LoginFailed` or :class:`Disconnected`."""
        self.link.start()
        await self.link.first_attempt.wait()
        if self.link.connections:
            return
        exc = self.link.last_error
        await self.link.stop()
        if isinstance(exc, RemoteError):
            if exc.message_type != LOGIN_RESPONSE:
                # Logged in, but the port refused what comes next (on_up's
                # request): the wrong service at this port, not a bad login.
                raise ExchangeError(f"{self.name}: {exc}") from None
            raise LoginFailed(f"{self.name}: {exc}") from None
        if isinstance(exc, (OSError, TimeoutError, ConnectionLost)):
            raise Disconnected(
                f"{self.name}: cannot connect to {self.host}:{self.port}: {exc or type(exc).__name__}"
            ) from None
        assert exc is not None
        raise exc  # from the owner's on_up

    async def close(self) -> None:
        """Close for good (pending requests fail with :class:`Disconnected`)."""
        self._closing = True
        conn = self.link.conn
        await self.link.stop()
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2)

    # ------------------------------------------------------------------ requests

    @property
    def connected(self) -> bool:
        return self.link.connected

    def gone_error(self) -> Disconnected:
        """What the link's waiters and streams end with once it is :attr:`gone`."""
        return Disconnected(f"{self.name}: connection lost (reconnect disabled)")

    async def wait_connected(self, timeout: float | None) -> UpstreamConnection:
        """The live connection, waiting up to ``timeout`` s for one."""
        if self._closing:
            raise Disconnected(f"{self.name}: client is closed")
        if self.gone:
            raise self.gone_error()
        try:
            return await self.link.wait_connected(timeout)
        except TimeoutError:
            raise Disconnected(f"{self.name}: not connected to {self.host}:{self.port}") from None
        except ConnectionLost:
            raise Disconnected(f"{self.name}: client is closed") from None

    def send_now(self, message_type: int, message: Any) -> asyncio.Future[Any] | None:
        """Send at once if connected (keeps request order); None when disconnected."""
        conn = self.link.conn
        if not self.link.connected or conn is None:
            return None
        return conn.request_raw(message_type, message)

    async def call(self, message_type: int, message: Any, *, timeout: float, resend: bool) -> Any:
        """Send a request and return its response, error or not.

        ``resend``: whether the request may be sent again after a reconnect
        (the caller knows whether that is safe).  An ``ON_ERROR`` answer raises
        :class:`ExchangeError`; silence past ``timeout`` raises ``TimeoutError``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            conn = await self.wait_connected(max(0.0, deadline - loop.time()))
            future = conn.request_raw(message_type, message)
            try:
                return await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except RemoteError as exc:
                raise ExchangeError(str(exc)) from None
            except ConnectionLost:
                if self._closing:
                    raise Disconnected(f"{self.name}: client is closed") from None
                if not resend:
                    raise OutcomeUnknown(
                        f"{self.name}: connection lost before the answer; "
                        "the request may or may not have taken effect"
                    ) from None
                log.info("%s: connection lost with a request in flight; resending", self.name)
