"""One service connection that survives restarts of the service.

Why: a participant's program should not die because the Risk Gateway was
restarted for a deploy.  A :class:`Link` owns an
:class:`~services.common.wire.client.UpstreamConnection` (framing, login,
heartbeats and idle detection all live there) and replaces it when it drops:
reconnect with exponential backoff, log in again, run the owner's ``on_up``
hook (re-subscribe, resynchronise), then let waiting requests through.

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
from services.common.wire.client import PushHandler, UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError

log = logging.getLogger("optivex.sdk.link")

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
        self._username = username
        self._password = password
        self._on_push = on_push
        self._on_up = on_up
        self._on_down = on_down
        self._on_connecting = on_connecting
        self.reconnect = reconnect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.ssl = ssl
        """TLS context for a port that speaks TLS; None: plain TCP."""
        self.conn: UpstreamConnection | None = None
        self.connections = 0
        """Successful logins so far (1 after start, +1 per reconnect)."""
        self._up = asyncio.Event()
        self._closing = False
        self._gone = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and log in once; raises :class:`LoginFailed` or :class:`Disconnected`."""
        try:
            await self._connect()
        except RemoteError as exc:
            raise LoginFailed(f"{self.name}: {exc}") from None
        except (OSError, TimeoutError, ConnectionLost) as exc:
            raise Disconnected(
                f"{self.name}: cannot connect to {self.host}:{self.port}: {exc or type(exc).__name__}"
            ) from None
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _connect(self) -> None:
        if self._on_connecting is not None:
            self._on_connecting()  # pushes may arrive with the login response
        conn = await UpstreamConnection.open(
            self.host,
            self.port,
            self._username,
            self._password,
            name=self.name,
            on_push=self._on_push,
            heartbeat_interval_s=self.heartbeat_interval_s,
            idle_timeout_s=self.idle_timeout_s,
            timeout_s=self.connect_timeout_s,
            ssl=self.ssl,
        )
        self.conn = conn
        try:
            if self._on_up is not None:
                await self._on_up(conn)
        except BaseException:
            conn.close()
            raise
        self.connections += 1
        self._up.set()

    async def _supervise(self) -> None:
        while not self._closing:
            conn = self.conn
            assert conn is not None
            await conn.wait_closed()
            self._up.clear()
            if self._closing:
                break
            if self._on_down is not None:
                self._on_down()
            if not self.reconnect:
                log.warning("%s: connection lost (reconnect disabled)", self.name)
                break
            log.warning("%s: connection lost; reconnecting", self.name)
            await self._reconnect()
        self._gone.set()

    async def _reconnect(self) -> None:
        delay = self.backoff_initial_s
        started = asyncio.get_running_loop().time()
        login_error_logged = False
        while not self._closing:
            try:
                await self._connect()
            except RemoteError as exc:
                if not login_error_logged:
                    log.error("%s: login refused while reconnecting: %s", self.name, exc)
                    login_error_logged = True
            except (OSError, TimeoutError, ConnectionLost, ExchangeError):
                pass
            else:
                elapsed = asyncio.get_running_loop().time() - started
                log.warning("%s: reconnected after %.1f s", self.name, elapsed)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def close(self) -> None:
        """Close for good (pending requests fail with :class:`Disconnected`)."""
        self._closing = True
        self._up.set()  # wake requests waiting for a connection: they fail now
        if self.conn is not None:
            self.conn.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 2)

    # ------------------------------------------------------------------ requests

    @property
    def connected(self) -> bool:
        return self._up.is_set() and self.conn is not None and self.conn.connected

    async def wait_connected(self, timeout: float | None) -> UpstreamConnection:
        """The live connection, waiting up to ``timeout`` s for one."""
        if self._closing:
            raise Disconnected(f"{self.name}: client is closed")
        if self._up.is_set() and not self.connected:
            self._up.clear()  # dropped; the supervisor has not noticed yet
        if not self._up.is_set():
            try:
                await asyncio.wait_for(self._up.wait(), timeout)
            except TimeoutError:
                raise Disconnected(
                    f"{self.name}: not connected to {self.host}:{self.port}"
                ) from None
            if self._closing:
                raise Disconnected(f"{self.name}: client is closed")
        assert self.conn is not None
        return self.conn

    def send_now(self, message_type: int, message: Any) -> asyncio.Future[Any] | None:
        """Send at once if connected (keeps request order); None when disconnected."""
        if not self.connected or self.conn is None:
            return None
        return self.conn.request_raw(message_type, message)

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
