"""A logged-in connection to one upstream service that heals itself.

Why one class: the Risk Gateway, Admin, Info and the participant SDK each depend
on a service that may restart and must not give up when it does: reconnect with
backoff, log an outage once (not per attempt) and its end once, ignore what an
old connection still delivers. What an owner does with a connection lives in
its hooks:
``on_connecting()`` before each attempt (pushes may arrive with the login
response, so state is reset first); ``on_push(type, message)`` for pushes of
the current connection only; ``after_read()`` once a read's frames are all
handled; ``await on_up(conn)`` after login, before the link
counts as connected (a barrier, a re-subscription; an exception drops that
connection and counts as a failed attempt); ``on_down()`` when a connected link
loses its connection (not on stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import Any

from services.common.wire.client import PushHandler, UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError


class ReconnectingLink:
    """Keeps one logged-in connection up; see the module docstring."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        log: logging.Logger,
        on_push: PushHandler | None = None,
        on_connecting: Callable[[], None] = lambda: None,
        on_up: Callable[[UpstreamConnection], Awaitable[None]] | None = None,
        on_down: Callable[[], None] = lambda: None,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
        max_frame_bytes: int = 1 << 20,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        healthy_after_s: float = 0.0,
        reconnect: bool = True,
        ssl: SSLContext | None = None,
        after_read: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self._credentials = (username, password)
        self.log = log
        self._on_push, self._on_up = on_push, on_up
        self._on_connecting, self._on_down = on_connecting, on_down
        self._after_read = after_read
        self._open_options: dict[str, Any] = {
            "heartbeat_interval_s": heartbeat_interval_s,
            "idle_timeout_s": idle_timeout_s,
            "max_frame_bytes": max_frame_bytes,
            "timeout_s": connect_timeout_s,
        }
        self._backoff_initial_s, self._backoff_max_s = backoff_initial_s, backoff_max_s
        # A lost connection that lived this long reconnects at once, backoff
        # reset; a shorter one (a peer that keeps dropping us) backs off.
        self._healthy_after_s = healthy_after_s
        self._reconnect = reconnect
        self.ssl = ssl  # for a port that speaks TLS (read at each attempt); None: TCP
        self.conn: UpstreamConnection | None = None  # logged in (also during on_up)
        self.generation = 0  # attempts + drop()s: what was learned before is void
        self.connections = 0  # how many came up (through on_up)
        self.last_error: BaseException | None = None  # why the latest attempt failed
        self.first_attempt = asyncio.Event()  # the first attempt succeeded or failed
        self._up = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Logged in, through ``on_up``, and the connection is still open."""
        return self._up.is_set() and self.conn is not None and self.conn.connected

    def start(self) -> None:
        """Start the loop in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop for good: close the connection, end the loop, fail waiters."""
        self.abort(graceful=True)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def abort(self, *, graceful: bool = False) -> None:
        """Stop at once without awaiting the loop; the connection is aborted unless
        ``graceful`` (Admin's crash simulation uses it; :meth:`stop` still awaits)."""
        self._stopping = True
        self._up.set()  # wake wait_connected(): it fails now
        if self._task is not None:
            self._task.cancel()
        if self.conn is not None and self.conn.transport is not None:
            (self.conn.close if graceful else self.conn.transport.abort)()

    def drop(self) -> None:
        """Abort the connection on purpose (the owner's state went wrong) and
        reconnect; pushes still buffered from it are ignored, it is no outage."""
        self.generation += 1
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.abort()

    async def wait_connected(self, timeout: float | None) -> UpstreamConnection:
        """The live connection, waiting up to ``timeout`` s for one (else
        ``TimeoutError``); :class:`ConnectionLost` once stopped."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._stopping and not self.connected:
            self._up.clear()  # set but dropped: the loop has not noticed yet
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait_for(self._up.wait(), remaining)
        if self._stopping or self.conn is None:
            raise ConnectionLost(f"{self.name}: stopped")
        return self.conn

    def _push(self, generation: int, message_type: int, message: Any) -> None:
        if generation == self.generation and self._on_push is not None:
            self._on_push(message_type, message)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._backoff_initial_s
        down_since: float | None = None  # set during an outage (logged once)
        refusal_logged = False  # a refused login is said once per outage, at ERROR
        while not self._stopping:
            self.generation += 1
            generation = self.generation
            conn: UpstreamConnection | None = None
            logging_in = True
            try:
                self._on_connecting()
                conn = await UpstreamConnection.open(
                    self.host,
                    self.port,
                    *self._credentials,
                    name=self.name,
                    on_push=functools.partial(self._push, generation),
                    ssl=self.ssl,
                    **self._open_options,
                )
                logging_in = False
                conn.after_read = self._after_read
                self.conn = conn
                if self._on_up is not None:
                    await self._on_up(conn)
            except BaseException as exc:
                self.conn = None
                if conn is not None:
                    conn.close()
                if not isinstance(exc, Exception):
                    raise  # cancelled by stop()
                self.last_error = exc
                reason = str(exc) or type(exc).__name__
                level = logging.WARNING if down_since is None else logging.DEBUG
                if logging_in and isinstance(exc, RemoteError) and not refusal_logged:
                    # Reachable but refused (a changed password, a wrong role):
                    # retrying will not help until someone acts, so say it
                    # plainly even in the middle of an outage already logged.
                    refusal_logged = True
                    self.log.error(
                        "%s: %s refused the login (%s); retrying with backoff",
                        self.name,
                        self.address,
                        reason,
                    )
                    level = logging.DEBUG
                down_since = loop.time() if down_since is None else down_since
                message = "%s: cannot reach %s (%s); retrying with backoff"
                self.log.log(level, message, self.name, self.address, reason)
                self.first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            self.connections += 1
            self._up.set()
            if down_since is None:
                self.log.info("%s: connected to %s", self.name, self.address)
            else:
                self.log.info("%s: reconnected after %.1f s", self.name, loop.time() - down_since)
            down_since = None
            refusal_logged = False
            self.first_attempt.set()
            up_at = loop.time()
            await conn.wait_closed()
            self._up.clear()
            self.conn = None
            if self._stopping:
                break
            self._on_down()
            if not self._reconnect:
                self.log.warning("%s: connection lost (reconnect disabled)", self.name)
                break
            if generation == self.generation:  # lost, not dropped on purpose
                self.log.warning("%s: lost connection to %s; reconnecting", self.name, self.address)
                down_since = loop.time()
            if loop.time() - up_at < self._healthy_after_s:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
            else:
                delay = self._backoff_initial_s
