"""Reconnecting links to the Order Book and to Info, with coalesced barriers.

A :class:`Link` keeps one logged-in :class:`UpstreamConnection` alive: on loss
it reconnects in the background with exponential backoff (0.05 s doubling to
``max_backoff_s``), logging one WARNING per outage rather than per attempt. It
is *ready* once connected **and** synchronised: after login the peer first
sends its current state (the Order Book's snapshot, Info's instrument list),
and a :meth:`barrier` round trip proves all of it has been processed.

Barriers: a service writes the pushes caused by a request before the answer to
any *later* request on the same connection, and :class:`UpstreamConnection`
hands pushes to ``on_push`` synchronously as they are read. So once the answer
to a cheap request sent *after* some moment has arrived, every push written
before that moment has been processed. The Gateway uses that (a) to answer a
participant only after the Order Book's events for its request are in the
order table, and (b) to re-check an unknown symbol after everything Info wrote
before has been seen. Concurrent barriers are coalesced: callers in the same
event-loop turn share one request, sent at the end of the turn, which is after
each of them started waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError

__all__ = ["Link"]

INITIAL_BACKOFF_S = 0.05


class Link:
    """One upstream service (see the module docstring).

    ``on_connecting`` runs before each connection attempt (pushes of the new
    connection may arrive before the login call even returns, so state is
    reset first); ``on_ready`` once synchronised; ``on_lost`` when a ready
    connection drops.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        barrier_type: int,
        barrier_message: Callable[[], Message],
        on_push: Callable[[int, Any], None],
        on_connecting: Callable[[], None] = lambda: None,
        on_ready: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
        max_frame_bytes: int = 1 << 20,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 2.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._barrier_type = barrier_type
        self._barrier_message = barrier_message
        self._on_push = on_push
        self._on_connecting = on_connecting
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._heartbeat_interval_s = heartbeat_interval_s
        self._idle_timeout_s = idle_timeout_s
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout_s = connect_timeout_s
        self._max_backoff_s = max_backoff_s
        self.log = logger or logging.getLogger(f"optivex.risk_gateway.{name}")
        self.conn: UpstreamConnection | None = None
        self.ssl: ssl.SSLContext | None = None
        """TLS context when the peer's port speaks TLS (Info may); None: plain TCP."""
        self.ready = False
        self.generation = 0
        """Counts connections: state learned on one is void on the next."""
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._first_attempt: asyncio.Event | None = None
        self._open_barrier: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_s: float) -> None:
        """Start connecting; wait up to ``wait_s`` for the first attempt to finish."""
        self._first_attempt = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_s)

    async def stop(self) -> None:
        self._stopping = True
        if self.conn is not None:
            self.conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.ready = False

    def resync(self, reason: str) -> None:
        """Drop the connection so a fresh one resynchronises (e.g. a sequence gap)."""
        self.log.error("%s: %s; reconnecting to resynchronise", self.name, reason)
        if self.conn is not None:
            self.conn.close()

    async def _run(self) -> None:
        delay = INITIAL_BACKOFF_S
        outage_logged = False
        while not self._stopping:
            conn: UpstreamConnection | None = None
            try:
                self.generation += 1
                self._on_connecting()
                conn = await UpstreamConnection.open(
                    self.host,
                    self.port,
                    self._username,
                    self._password,
                    name=self.name,
                    on_push=self._on_push,
                    heartbeat_interval_s=self._heartbeat_interval_s,
                    idle_timeout_s=self._idle_timeout_s,
                    max_frame_bytes=self._max_frame_bytes,
                    timeout_s=self._connect_timeout_s,
                    ssl=self.ssl,
                )
                self.conn = conn
                await asyncio.wait_for(
                    conn.request(self._barrier_type, self._barrier_message()),
                    self._connect_timeout_s,
                )
            except (OSError, RemoteError, ConnectionLost, TimeoutError) as exc:
                self.conn = None
                if conn is not None:
                    conn.close()
                if not outage_logged:
                    self.log.warning(
                        "%s at %s:%d unavailable (%s); retrying with backoff",
                        self.name,
                        self.host,
                        self.port,
                        exc or type(exc).__name__,
                    )
                    outage_logged = True
                self._attempted()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
                continue
            self.ready = True
            self._on_ready()
            self.log.info("%s at %s:%d connected", self.name, self.host, self.port)
            delay = INITIAL_BACKOFF_S
            outage_logged = False
            self._attempted()
            await conn.wait_closed()
            self.ready = False
            self.conn = None
            self._on_lost()
            if not self._stopping:
                self.log.warning("%s: connection lost; reconnecting", self.name)
                outage_logged = True

    def _attempted(self) -> None:
        if self._first_attempt is not None:
            self._first_attempt.set()

    # ------------------------------------------------------------------ requests

    def request_raw(self, message_type: int, message: Message) -> asyncio.Future[Any]:
        """Send a request; the future resolves to the response (errors included) or
        fails with ConnectionLost / RemoteError (``ON_ERROR``)."""
        conn = self.conn
        if conn is None or not self.ready:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionLost(f"{self.name}: not connected"))
            return future
        return conn.request_raw(message_type, message)

    def barrier(self) -> asyncio.Future[None]:
        """Resolves once every push the peer wrote before now has been processed."""
        pending = self._open_barrier
        if pending is not None:
            return pending
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_consume)
        self._open_barrier = future
        loop.call_soon(self._send_barrier, future)
        return future

    def _send_barrier(self, future: asyncio.Future[None]) -> None:
        self._open_barrier = None
        conn = self.conn
        if conn is None or not conn.connected:
            if not future.done():
                future.set_exception(ConnectionLost(f"{self.name}: not connected"))
            return
        answer = conn.request_raw(self._barrier_type, self._barrier_message())

        def settle(done: asyncio.Future[Any]) -> None:
            if future.done():
                return
            if done.cancelled() or done.exception() is not None:
                future.set_exception(ConnectionLost(f"{self.name}: barrier failed"))
            else:
                future.set_result(None)

        answer.add_done_callback(settle)

    async def settle(self, generation: int) -> bool:
        """Await a barrier; False if it failed or ran on a later connection than
        ``generation`` (the events of the earlier one were never all seen)."""
        try:
            await self.barrier()
        except ConnectionLost:
            return False
        return self.generation == generation


def _consume(future: asyncio.Future[Any]) -> None:
    # Mark the exception retrieved: a barrier nobody awaits any more must not
    # log "exception was never retrieved".
    if not future.cancelled():
        future.exception()
