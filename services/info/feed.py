"""The Order Book event stream, kept up forever: connect, snapshot, follow, resync.

A :class:`~services.common.wire.link.ReconnectingLink` owns the upstream
connection (Info logs in as the ``service`` user). Each connection starts a **fresh** :class:`~services.info.mirror.Mirror`
that takes the login snapshot (sequence number 0). The snapshot is complete at the
first live event or when the *barrier* returns: right after login Info sends a
``GetStatsRequest``, and since the Order Book writes the snapshot on login, before
answering anything, its response cannot overtake the snapshot. Only then does the
new mirror **replace** the published one (never merged into it), so subscribers
see the corrected book in one step.

Everything that makes the mirror untrustworthy ends the connection and starts
over: a lost connection, a silent peer (the wire client's idle timeout), a gap or
jump in ``sequence_number``, an event that contradicts the mirror. Reconnects back
off exponentially (0.05 s doubling to 2 s); a resync of a connection that was
healthy for a while starts at once. An outage is logged once at WARNING, not per
attempt. While disconnected, the last published state stays published.

Reads are batched: events are applied as they arrive (synchronously, in order)
and one ``call_soon`` after the read hands the mirror to the sink, which
publishes every changed book once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Protocol

from services.common.clock import Clock
from services.common.config import InfoConfig
from services.common.pb import common_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.link import ReconnectingLink
from services.info.mirror import Mirror, MirrorError, SequenceGap
from services.info.translate import BOOK_CREATED, EVENT_TYPES, event_from_pb

log = logging.getLogger("optivex.info.feed")

MT = common_pb2.MessageType
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0
SNAPSHOT_FALLBACK_S = 5.0
"""Without a barrier answer or a live event, the snapshot counts as complete after this."""
HEALTHY_AFTER_S = 5.0
"""A connection that lived this long resets the backoff (a later resync is immediate)."""


class FeedSink(Protocol):
    """What the feed tells the service."""

    def on_snapshot(self, mirror: Mirror) -> None:
        """A fresh, complete mirror has replaced the published one."""

    def on_batch(self, mirror: Mirror) -> None:
        """Events were applied (``mirror.drain()`` has what changed); publish."""


class OrderBookFeed:
    """Maintains :attr:`mirror` from the Order Book (see the module docstring)."""

    def __init__(self, config: InfoConfig, clock: Clock, sink: FeedSink) -> None:
        self.config = config
        self.clock = clock
        self.sink = sink
        self.mirror = Mirror()
        """The published mirror (empty until the first snapshot completes)."""
        self.synced = asyncio.Event()
        """Set once the first snapshot has completed."""
        self.resyncs = 0
        """Snapshots taken after the first one (for tests and stats)."""
        self._building: Mirror | None = None
        self._barrier: asyncio.Future[Any] | None = None
        self._fallback: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.link = ReconnectingLink(
            "info->order_book",
            config.order_book_host,
            config.order_book_port,
            config.service_username,
            config.service_password,
            log=log,
            on_push=self._on_push,
            on_connecting=self._on_connecting,
            on_up=self._on_up,
            on_down=self._on_down,
            heartbeat_interval_s=config.heartbeat_interval_s,
            idle_timeout_s=config.idle_timeout_s,
            max_frame_bytes=config.max_frame_bytes,
            connect_timeout_s=max(1.0, config.login_timeout_s),
            backoff_initial_s=BACKOFF_START_S,
            backoff_max_s=BACKOFF_MAX_S,
            healthy_after_s=HEALTHY_AFTER_S,
        )

    @property
    def connected(self) -> bool:
        return self.link.connected

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_s: float) -> None:
        """Start following; wait up to ``wait_s`` for the first snapshot (not an error)."""
        self._loop = asyncio.get_running_loop()
        self.link.start()
        try:
            await asyncio.wait_for(self.synced.wait(), wait_s)
        except TimeoutError:
            log.warning(
                "no snapshot from the Order Book at %s:%d within %.1f s; serving the saved "
                "registry and retrying in the background",
                self.config.order_book_host,
                self.config.order_book_port,
                wait_s,
            )

    async def stop(self) -> None:
        await self.link.stop()
        self._on_down()

    def resync(self, reason: str) -> None:
        """Drop the connection; the link reconnects and a fresh snapshot is taken."""
        log.warning("resynchronising with the Order Book: %s", reason)
        self.link.drop()  # late frames of the old connection are ignored

    # ------------------------------------------------------------------ the link's hooks

    def _on_connecting(self) -> None:
        self._building = Mirror()

    async def _on_up(self, conn: UpstreamConnection) -> None:
        generation = self.link.generation
        self._barrier = conn.request_raw(
            MT.ORDER_BOOK_GET_STATS_REQUEST, order_book_pb2.GetStatsRequest()
        )
        self._barrier.add_done_callback(functools.partial(self._barrier_done, generation))
        # An Order Book that never answers the barrier (and is idle) must not
        # leave Info without a mirror forever.
        self._fallback = asyncio.get_running_loop().call_later(
            SNAPSHOT_FALLBACK_S,
            functools.partial(self._end_snapshot, generation, "no answer to the snapshot barrier"),
        )

    def _on_down(self) -> None:
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if self._barrier is not None and not self._barrier.done():
            self._barrier.cancel()
        self._barrier = None
        self._building = None

    def _barrier_done(self, generation: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the connection is gone: its partial snapshot must not be used
        self._end_snapshot(generation)

    def _end_snapshot(self, generation: int, why: str = "") -> None:
        if generation == self.link.generation and self._building is not None:
            if why:
                log.warning("taking the snapshot as complete: %s", why)
            self._building.end_snapshot()
            self._complete_snapshot()

    def _complete_snapshot(self) -> None:
        building = self._building
        assert building is not None
        self._building = None
        if self.synced.is_set():
            self.resyncs += 1
        self.mirror = building
        log.info(
            "order book snapshot complete: %d books, %d resting orders",
            len(building.books),
            sum(len(book.orders) for book in building.books.values()),
        )
        self.sink.on_snapshot(building)
        self.synced.set()
        self._schedule_flush()

    # ------------------------------------------------------------------ events

    def _on_push(self, message_type: int, message: Any) -> None:
        """One event of the stream: translate, apply, and publish after the read.

        Runs for every event, so the clock is read only for a book creation (the
        only event without a time of its own) and the flush is scheduled through
        its flag here rather than a call per event.
        """
        if message_type not in EVENT_TYPES:
            return
        building = self._building
        mirror = building if building is not None else self.mirror
        try:
            event = event_from_pb(
                message_type,
                message,
                mirror,
                self.clock.now_ns() if message_type == BOOK_CREATED else 0,
            )
            mirror.apply(event)
        except MirrorError as exc:
            if building is None and not isinstance(exc, SequenceGap):
                # The read in progress may have left a book half-updated: publish
                # nothing more from this mirror; the next snapshot replaces it.
                mirror.drain()
            self.resync(str(exc))
            return
        if building is None:
            if not self._flush_scheduled:
                self._schedule_flush()
        elif building.live:
            self._complete_snapshot()  # the first live event ends the snapshot

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.sink.on_batch(self.mirror)
