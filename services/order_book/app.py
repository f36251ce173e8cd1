"""The Order Book service: the engine behind the wire, with its journal.

Every request is applied to the engine at once, but nothing it caused leaves
the process until its journal record is on disk: responses wait in reserved
slots of their sessions, events in a batch.  One commit per read (once every
request a peer sent in it is applied) writes (and, with the ``batch`` policy,
fsyncs) every record of the batch, then releases the responses in request
order, then the events to every connection following the stream, and writes
them at once.  So a client never sees an outcome a crash could undo.

A connection that logs in receives the snapshot of the state as of the last
released event, then every later event: when a batch is in flight at login
time, the snapshot waits for the batch's events to go out first, so nothing is
lost or seen twice between snapshot and stream.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.config import OrderBookConfig
from services.common.users import Role
from services.common.wire.registry import MESSAGE_CLASSES
from services.common.wire.server import Route, WireServer, WireSettings
from services.common.wire.session import Session, Slot
from services.order_book.engine import Engine
from services.order_book.events import OnOrderBookCreated
from services.order_book.journal import Journal
from services.order_book.translate import (
    AMEND,
    CANCEL,
    CLEAR,
    CREATE,
    DELETE,
    INSERT,
    STATS,
    CommandProcessor,
    EventEncoder,
)

log = logging.getLogger("optivex.order_book")

LIVE = "ob.live"
"""Session state key: the session follows the event stream."""

MIN_OUTPUT_BUFFER = 64 << 20
"""Peers here are our own services; a login snapshot of a big book must fit."""


class OrderBookApp:
    """The Order Book process: engine + journal + wire server."""

    def __init__(self, config: OrderBookConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.engine = Engine()
        self.processor = CommandProcessor(self.engine)
        self.encoder = EventEncoder()
        self.journal = Journal(config.data_dir, config.fsync)
        settings = WireSettings.from_config(config)
        if settings.max_output_buffer_bytes < MIN_OUTPUT_BUFFER:
            settings = WireSettings(
                **{
                    **{f: getattr(settings, f) for f in settings.__dataclass_fields__},
                    "max_output_buffer_bytes": MIN_OUTPUT_BUFFER,
                }
            )
        service = frozenset({int(Role.SERVICE)})
        routes = [
            Route(kind, self._handler(kind), service)
            for kind in (INSERT, CANCEL, AMEND, CREATE, DELETE, CLEAR, STATS)
        ]
        self.server = WireServer(
            "order_book",
            self,
            routes,
            login_roles={Role.SERVICE},
            authenticator=authenticator,
            clock=clock,
            settings=settings,
        )
        # The batch of the current read: reserved answers and events. It is
        # committed once every request of the read is applied (after_read).
        self._answers: list[tuple[Session, Slot, bytes]] = []
        self._events: list[bytes] = []
        self._awaiting_snapshot: list[Session] = []
        self._commit_scheduled = False
        self.server.after_read = self._commit_read

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        self._replay()
        return await self.server.start(self.config.host, self.config.port)

    def _replay(self) -> None:
        started = time.perf_counter()
        records = self.journal.open()
        process = self.processor.process
        encoder = self.encoder
        for record in records:
            request = MESSAGE_CLASSES[record.kind].FromString(record.payload)
            process(record.kind, request, record.timestamp)
            # Keep the tick-size table in step (events are otherwise discarded).
            for event in self.engine.drain_events():
                if isinstance(event, OnOrderBookCreated):
                    encoder.tick_sizes[event.order_book_id] = event.tick_size
        # The engine makes no reference cycles: move the recovered state out of
        # the cyclic collector's reach so a full collection never walks a
        # million resting orders (a pause of ~0.5 s otherwise).
        gc.collect()
        gc.freeze()
        if records:
            log.info(
                "replayed %d journal records in %.2f s: sequence %d, %d resting orders",
                len(records),
                time.perf_counter() - started,
                self.engine.last_sequence_number,
                self.engine.stats().resting_orders,
            )

    async def stop(self) -> None:
        self._commit()
        await self.server.stop()
        self.journal.close()

    # ------------------------------------------------------------------ sessions

    def on_login(self, session: Session) -> None:
        if self._commit_scheduled:
            self._awaiting_snapshot.append(session)
        else:
            self._send_snapshot(session)

    def on_close(self, session: Session) -> None:
        session.state.pop(LIVE, None)

    def _send_snapshot(self, session: Session) -> None:
        for frame in self.encoder.snapshot(self.engine):
            session.send_frame(frame)
        session.state[LIVE] = True

    # ------------------------------------------------------------------ commands

    def _handler(self, kind: int) -> Any:
        process = self.processor.process
        encode_all = self.encoder.encode_all
        drain_events = self.engine.drain_events
        journal = self.journal
        now_ns = self.clock.now_ns

        def handle(session: Session, request: Any) -> None:
            timestamp = now_ns()
            frame, accepted = process(kind, request, timestamp)
            if accepted:
                journal.append(kind, timestamp, request.SerializeToString())
                self._events.extend(encode_all(drain_events()))
            self._answers.append((session, session.reserve(), frame))
            self._commit_scheduled = True

        return handle

    def _commit_read(self) -> None:
        """The wire server has dispatched a whole read: commit what it did.

        Here rather than on a later loop turn: the commit, the answers and the
        events leave in the same callback as the read that caused them, which
        spares every request a pass through the selector. A read is still a
        batch (everything a peer sent since the last one), and the fsync is
        shared by all of it.
        """
        if self._commit_scheduled:
            self._commit()

    def _commit(self) -> None:
        """Make the batch's records durable, then release answers and events."""
        self._commit_scheduled = False
        try:
            self.journal.commit()
        except OSError:
            # The engine holds state that is not on disk: the only safe way on
            # is a restart from the journal.  Nothing of the batch was released.
            log.critical(
                "journal write failed; exiting so a restart replays the journal", exc_info=True
            )
            os._exit(70)
        answers, self._answers = self._answers, []
        touched: set[Session] = set()
        for session, slot, frame in answers:
            session.fulfil(slot, frame)
            touched.add(session)
        if self._events:
            events = b"".join(self._events)
            self._events = []
            for session in list(self.server.sessions):
                if LIVE in session.state:
                    session.send_frame(events)
                    touched.add(session)
        if self._awaiting_snapshot:
            waiting, self._awaiting_snapshot = self._awaiting_snapshot, []
            for session in waiting:
                if not session.closed:
                    self._send_snapshot(session)
        # Written now, not at the end of the loop turn: nothing more of this
        # batch is coming.
        for session in touched:
            session.flush()


def build(config: OrderBookConfig, authenticator: Authenticator, clock: Clock) -> OrderBookApp:
    """Factory used by the launcher and in-process tests."""
    return OrderBookApp(config, authenticator, clock)
