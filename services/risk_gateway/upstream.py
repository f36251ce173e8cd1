"""Reconnecting links to the Order Book and to Info, with coalesced barriers.

A :class:`Link` keeps one logged-in connection alive through a
:class:`~services.common.wire.link.ReconnectingLink` (backoff to
``max_backoff_s``, one WARNING per outage). It is *ready* once connected
**and** synchronised: after login the peer first
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
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost
from services.common.wire.link import ReconnectingLink

__all__ = ["Link"]


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
        after_read: Callable[[], None] | None = None,
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
        self._barrier_type = barrier_type
        self._barrier_message = barrier_message
        self._on_ready = on_ready
        self._connect_timeout_s = connect_timeout_s
        self.log = logger or logging.getLogger(f"optivex.risk_gateway.{name}")
        self.link = ReconnectingLink(
            name,
            host,
            port,
            username,
            password,
            log=self.log,
            on_push=on_push,
            on_connecting=on_connecting,
            on_up=self._sync,
            on_down=on_lost,
            after_read=after_read,
            heartbeat_interval_s=heartbeat_interval_s,
            idle_timeout_s=idle_timeout_s,
            max_frame_bytes=max_frame_bytes,
            connect_timeout_s=connect_timeout_s,
            backoff_max_s=max_backoff_s,
        )
        self._open_barrier: asyncio.Future[None] | None = None

    @property
    def conn(self) -> UpstreamConnection | None:
        return self.link.conn

    @property
    def ready(self) -> bool:
        return self.link.connected

    @property
    def generation(self) -> int:
        """Counts connections: state learned on one is void on the next."""
        return self.link.generation

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_s: float) -> None:
        """Start connecting; wait up to ``wait_s`` for the first attempt to finish."""
        self.link.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.first_attempt.wait(), wait_s)

    async def stop(self) -> None:
        await self.link.stop()

    def resync(self, reason: str) -> None:
        """Drop the connection so a fresh one resynchronises (e.g. a sequence gap)."""
        self.log.error("%s: %s; reconnecting to resynchronise", self.name, reason)
        if self.conn is not None:
            self.conn.close()

    async def _sync(self, conn: UpstreamConnection) -> None:
        """After login: the barrier's answer proves the login snapshot is in."""
        await asyncio.wait_for(
            conn.request(self._barrier_type, self._barrier_message()), self._connect_timeout_s
        )
        self._on_ready()

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
