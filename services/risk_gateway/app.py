"""The Risk Gateway process: the participants' door to the exchange.

Wiring (the logic lives in the pure modules and the handlers):

* a :class:`WireServer` on the Gateway port, admitting ``participant`` and
  ``admin`` logins and serving every type of the port (40/42/46 and 50-57) to
  both: PROTOCOL.md section 3 restricts none of them to one role, and section 5
  lets an admin set "the admin layer of the user it names (itself when empty)",
  which only binds a user who trades. An admin trades as itself, like a
  participant (its own orders only, its fills pushed to it);
* a :class:`~services.risk_gateway.upstream.Link` to the Order Book whose event
  stream (login snapshot, then live events) feeds the
  :class:`~services.risk_gateway.orders.OrderTable`, which keeps exposures and
  produces fills and unsolicited cancels for the owners' connections;
* a link to Info whose ``OnInstrument`` / ``OnInstrumentDeleted`` pushes keep
  the :class:`~services.risk_gateway.instruments.InstrumentDirectory`;
* the :class:`~services.risk_gateway.limits.RiskEngine` and the
  :class:`~services.risk_gateway.store.RiskStore` that journals it.

Every logged-in connection is tracked by username, so a fill reaches every
connection of its owner and nobody else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.config import RiskGatewayConfig
from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.users import Role
from services.common.wire.client import client_ssl_context
from services.common.wire.server import Route, WireServer, WireSettings
from services.common.wire.session import Session
from services.risk_gateway import translate
from services.risk_gateway.coids import ClientOrderIds
from services.risk_gateway.execution import ExecutionHandlers, Forward
from services.risk_gateway.instruments import InstrumentDirectory
from services.risk_gateway.limits import RiskEngine
from services.risk_gateway.limits_api import LimitHandlers
from services.risk_gateway.orders import Cancelled, Fill, OrderTable
from services.risk_gateway.store import COMPACT_BYTES, RiskStore
from services.risk_gateway.upstream import Link

log = logging.getLogger("optivex.risk_gateway")

MT = common_pb2.MessageType
PARTICIPANT_OR_ADMIN: Final = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN)})
HOUSEKEEPING_S: Final = 0.5
"""How often expired window history moves to the coarse tier. Often, so each
pass is short: at 10,000 orders/s a pass every 5 s took ~10 ms of the loop
(5 s of 1 ms entries per series), every 0.5 s it takes ~1 ms; the total is
the same."""
COMPACT_CHECK_EVERY: Final = 10
"""Housekeeping passes between two looks at the journal's size (every 5 s)."""
FIRST_CONNECT_WAIT_S: Final = 3.0
STOP_GRACE_S: Final = 2.0
"""How long stop() waits for forwarded requests to be answered."""
STOP_POLL_S: Final = 0.005

REASON_CLEARED: Final = "order book cleared"
REASON_DELETED: Final = "instrument deleted"

_NOTHING: Final = translate.NOTHING


class RiskGatewayApp:
    """The Risk Gateway (see the module docstring)."""

    def __init__(
        self, config: RiskGatewayConfig, authenticator: Authenticator, clock: Clock
    ) -> None:
        self.config = config
        self.clock = clock
        self.authenticator = authenticator
        self.store = RiskStore(config.data_dir, clock, config.fsync)
        self.engine = RiskEngine(
            clock.monotonic,
            keep_s=config.limit_history_s,
            max_window_s=config.max_limit_window_s,
        )
        self.directory = InstrumentDirectory()
        self.table = OrderTable(self.engine.exposure)
        self.coids = ClientOrderIds()
        self.sessions: dict[str, set[Session]] = {}
        self.stopping = False
        """Set by stop(): execution requests are refused, nothing more is forwarded."""
        self._unsolicited: list[Cancelled] = []
        self._unsolicited_scheduled = False
        self._housekeeper: asyncio.Task[None] | None = None
        self._compaction: asyncio.Task[None] | None = None
        """A compaction started by the housekeeping, while it runs."""
        self._snapshot_writer: asyncio.Future[None] | None = None
        """The worker thread writing a background compaction's snapshot, if any."""
        common = {
            "heartbeat_interval_s": config.heartbeat_interval_s,
            "idle_timeout_s": config.idle_timeout_s,
            "max_backoff_s": config.reconnect_max_backoff_s,
        }
        self.order_book = Link(
            "order book",
            config.order_book_host,
            config.order_book_port,
            config.service_username,
            config.service_password,
            barrier_type=translate.STATS,
            barrier_message=order_book_pb2.GetStatsRequest,
            on_push=self._order_book_push,
            on_connecting=self._order_book_connecting,
            after_read=self._order_book_read,
            max_frame_bytes=config.max_frame_bytes,
            logger=log.getChild("order_book"),
            **common,  # type: ignore[arg-type]
        )
        self.info = Link(
            "info",
            config.info_host,
            config.info_port,
            config.service_username,
            config.service_password,
            barrier_type=translate.QUOTES,
            barrier_message=info_pb2.QuotesRequest,
            on_push=self._info_push,
            on_connecting=self.directory.begin_resync,
            on_ready=self._info_ready,
            max_frame_bytes=config.max_frame_bytes,
            logger=log.getChild("info"),
            **common,  # type: ignore[arg-type]
        )
        self.execution = ExecutionHandlers(self)
        self.limits = LimitHandlers(self)
        routes = [
            Route(MT.EXECUTION_INSERT_ORDER_REQUEST, self.execution.insert, PARTICIPANT_OR_ADMIN),
            Route(MT.EXECUTION_CANCEL_ORDER_REQUEST, self.execution.cancel, PARTICIPANT_OR_ADMIN),
            Route(MT.EXECUTION_AMEND_ORDER_REQUEST, self.execution.amend, PARTICIPANT_OR_ADMIN),
            Route(
                MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST,
                self.limits.get_user,
                PARTICIPANT_OR_ADMIN,
            ),
            Route(
                MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST,
                self.limits.set_user,
                PARTICIPANT_OR_ADMIN,
            ),
            Route(
                MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
                self.limits.get_instrument,
                PARTICIPANT_OR_ADMIN,
            ),
            Route(
                MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST,
                self.limits.set_instrument,
                PARTICIPANT_OR_ADMIN,
            ),
        ]
        self.server = WireServer(
            "risk_gateway",
            self,
            routes,
            login_roles=PARTICIPANT_OR_ADMIN,
            authenticator=authenticator,
            clock=clock,
            settings=WireSettings.from_config(config),
        )
        self.server.after_read = self.execution.send_outbox

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        try:
            restored = self.store.load()
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # Starting without the saved limits would silently lift them: refuse.
            # (OSError is what the lifecycle runner reports as "cannot start".)
            raise OSError(
                f"risk state in {self.config.data_dir} is unreadable ({exc}); "
                "fix or move it away to start afresh"
            ) from exc
        restored.apply(self.engine, self.clock.monotonic())
        self.coids = restored.coids
        self.execution.coids = restored.coids
        self.store.open(self.engine, self.coids)
        self.engine.journal = self.store.window
        if self.config.info_tls_ca_file:
            # Here rather than in __init__: an unreadable file is a clean "cannot start".
            self.info.link.ssl = client_ssl_context(self.config.info_tls_ca_file)
        log.info(
            "risk state loaded: %d users with limits, %d client_order_ids",
            len({u for layer in self.engine.user_limits.values() for u in layer}),
            len(self.coids),
        )
        await asyncio.gather(
            self.order_book.start(FIRST_CONNECT_WAIT_S), self.info.start(FIRST_CONNECT_WAIT_S)
        )
        address = await self.server.start(self.config.host, self.config.port)
        self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())
        return address

    async def stop(self) -> None:
        """Finish in-flight work, then close: refuse new execution requests
        first (``service is shutting down``), so that every request that was
        forwarded is answered before the connections close (an answer arriving
        after its session closed would leave an order its owner never heard of)."""
        self.stopping = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        if self._compaction is not None:
            # Half-copied, it is abandoned: the final snapshot below is complete.
            self._compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction
            self._compaction = None
        if self._snapshot_writer is not None:
            # The final snapshot below must not be overwritten by an older one.
            with contextlib.suppress(Exception):
                await self._snapshot_writer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_S
        while self.execution.in_flight and loop.time() < deadline:
            # Let forwarded requests get their answers before closing connections.
            await asyncio.sleep(STOP_POLL_S)
        await self.server.stop()
        await asyncio.gather(self.order_book.stop(), self.info.stop())
        try:
            with _writing_a_snapshot():
                self.store.close(self.engine, self.coids)
        except OSError:
            log.exception("cannot write the final risk state snapshot")

    async def _housekeeping(self) -> None:
        """Drop expired window history; compact the journal when it grows.

        The compaction runs as a task of its own, so trimming goes on while
        its snapshot is written (a second or more at 10,000 orders/s): a trim
        pass after a 2 s pause took ~4 ms instead of ~2.
        """
        passes = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.engine.trim()
            passes += 1
            if (
                passes % COMPACT_CHECK_EVERY == 0
                and self.store.journal_bytes > COMPACT_BYTES
                and self._compaction is None
            ):
                self._compaction = asyncio.get_running_loop().create_task(self.compact())
                self._compaction.add_done_callback(self._compacted)

    def _compacted(self, task: asyncio.Task[None]) -> None:
        if self._compaction is task:
            self._compaction = None
        if not task.cancelled() and task.exception() is not None:
            log.error("risk journal compaction failed", exc_info=task.exception())

    async def compact(self) -> None:
        """Snapshot the risk state and start the journal afresh, while serving.

        The window history is copied a bounded step per loop turn
        (``Compaction.copy``: copied at once it took 10-30 ms of the loop at
        10,000 orders/s), and the snapshot is built and written from the copies
        on a worker thread (done on the loop it stopped the Gateway for over a
        second), which then also drops the old journal and renames the next one
        (unlinking 64 MiB took ~7-8 ms). After a failed attempt the next one runs
        the plain, blocking compaction, which also tidies the second journal
        away.
        """
        store = self.store
        started = time.perf_counter()
        journal_bytes = store.journal_bytes
        try:
            if store.rotated:
                store.compact(self.engine, self.coids)
                return
            compaction = store.begin_compaction(self.engine, self.coids)
        except OSError:
            log.exception("cannot compact the risk journal")
            return
        turns = 0
        try:
            for _ in compaction.copy():
                turns += 1
                await asyncio.sleep(0)  # one step per loop turn
        except OSError:
            log.exception("cannot compact the risk journal")
            return
        writer = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(_write_beside_the_loop, compaction.write)
        )
        # Left set if this task is cancelled meanwhile: stop() waits for it.
        self._snapshot_writer = writer
        try:
            await asyncio.shield(writer)
        except OSError:
            self._snapshot_writer = None
            log.exception("cannot write the risk snapshot or switch journals")
            return
        self._snapshot_writer = None
        store.finish_compaction()
        # One line per compaction: an operator sees how often it happens and
        # how long it takes (it is also what tells a long benchmark run had one).
        log.info(
            "risk journal compacted in the background: %.1f MiB of journal into a snapshot "
            "in %.2f s, %d loop turns of copying",
            journal_bytes / (1 << 20),
            time.perf_counter() - started,
            turns,
        )

    # ------------------------------------------------------------------ sessions

    def on_login(self, session: Session) -> None:
        """Track the connection under its user: participants and admins both
        trade (see the module docstring), so both get their fills."""
        self.sessions.setdefault(session.username, set()).add(session)

    def on_close(self, session: Session) -> None:
        sessions = self.sessions.get(session.username)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.sessions[session.username]

    # ------------------------------------------------------------------ saving

    def save_batch(self, batch: Sequence[Forward]) -> bool:
        """Flush the journal before forwarding a turn's requests; on failure
        refund every request's ticket (nothing of the batch may leave unsaved)."""
        try:
            self.store.flush()
        except OSError:
            log.exception("cannot write the risk journal")
            self.store.discard_pending()
            self.engine.journal = None  # the refunds must not be journaled either
            try:
                for forward in reversed(batch):
                    self.engine.refund(forward.ticket, message=True)
            finally:
                self.engine.journal = self.store.window
            return False
        return True

    def save_quietly(self) -> None:
        """Flush records that only make the state smaller or add facts (refunds, coids)."""
        try:
            self.store.flush()
        except OSError:
            log.exception("cannot write the risk journal")

    # ------------------------------------------------------------------ the Order Book

    def _order_book_connecting(self) -> None:
        self.table.reset()
        self.engine.reset_exposures()

    def _order_book_push(self, message_type: int, message: Any) -> None:
        effect = translate.apply_event(self.table, message_type, message)
        if effect is _NOTHING:
            return
        if not effect.in_sequence:
            self.order_book.resync(
                f"event sequence gap (expected {self.table.last_sequence + 1}, "
                f"got {message.sequence_number})"
            )
            return
        if effect.fills:
            self._push_fills(effect.fills)
        elif effect.cancelled is not None:
            self._unsolicited.append(effect.cancelled)
            if not self._unsolicited_scheduled:
                self._unsolicited_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_unsolicited)
        elif effect.deleted_book:
            self._flush_unsolicited()

    def _order_book_read(self) -> None:
        """A read from the Order Book is handled: its events are in the order
        table, so the answers that came with them can be settled now."""
        self.execution.settle_answered()

    def _symbol(self, order_book_id: int) -> str:
        instrument = self.directory.by_book(order_book_id)
        return "" if instrument is None else instrument.symbol

    def _push_fills(self, fills: list[Fill]) -> None:
        sessions = self.sessions
        by_book = self.directory.by_book
        for fill in fills:
            targets = sessions.get(fill.owner)
            if targets:
                instrument = by_book(fill.order_book_id)
                symbol = "" if instrument is None else instrument.symbol
                frame = translate.fill_frame(fill, symbol)
                for session in targets:
                    session.send_frame(frame)

    def _flush_unsolicited(self) -> None:
        """Tell owners about cancels they did not ask for.

        Held until the end of the read that brought them, so that a book
        deletion (whose ``OnOrderBookDeleted`` follows the cancels) is told as
        such rather than as a clear.
        """
        self._unsolicited_scheduled = False
        notices, self._unsolicited = self._unsolicited, []
        if notices:
            self.push_cancelled(notices)

    def push_cancelled(self, notices: list[Cancelled]) -> None:
        for notice in notices:
            targets = self.sessions.get(notice.owner)
            if not targets:
                continue
            book = notice.order_book_id
            instrument = self.directory.by_book(book)
            deleted = book in self.table.deleted_books or (
                instrument is not None and not self.directory.is_live_book(book)
            )
            frame = translate.cancelled_frame(
                notice, self._symbol(book), REASON_DELETED if deleted else REASON_CLEARED
            )
            for session in targets:
                session.send_frame(frame)

    # ------------------------------------------------------------------ Info

    def _info_push(self, message_type: int, message: Any) -> None:
        if message_type == translate.ON_INSTRUMENT:
            self.directory.added(
                message.instrument.symbol,
                message.order_book_id,
                message.tick_size,
                message.price_rule,
            )
        elif message_type == translate.ON_INSTRUMENT_DELETED:
            self.directory.deleted(message.instrument_symbol)

    def _info_ready(self) -> None:
        gone = self.directory.end_resync()
        if gone:
            log.info("instruments deleted while Info was unreachable: %s", ", ".join(gone))


def build(config: RiskGatewayConfig, authenticator: Authenticator, clock: Clock) -> RiskGatewayApp:
    """Factory used by the launcher and in-process tests."""
    return RiskGatewayApp(config, authenticator, clock)


SNAPSHOT_SWITCH_INTERVAL_S: Final = 0.0005
"""The interpreter's thread switch interval while a snapshot is written."""


@contextlib.contextmanager
def _writing_a_snapshot() -> Iterator[None]:
    """While a snapshot is written, so that the event loop keeps its pace.

    Two process-wide settings change for the write's duration only:

    * the thread switch interval, 5 ms -> 0.5 ms: the loop needs the GIL for
      every callback, and a busy writer thread kept it up to 5 ms each time
      (measured at 4,000 orders/s with 450,000 client_order_ids: loop lags of
      25-130 ms throughout a 2.2 s snapshot; one of 26 ms with this);
    * the cyclic garbage collector is paused: the writer's many short-lived
      objects triggered full collections of ~40 ms each (they walk the window
      history), three during that one snapshot and fourteen during the final
      one at stop. What the write leaves is collected afterwards, at the usual
      thresholds.
    """
    interval = sys.getswitchinterval()
    collecting = gc.isenabled()
    sys.setswitchinterval(SNAPSHOT_SWITCH_INTERVAL_S)
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()


def _write_beside_the_loop(write: Callable[[], None]) -> None:
    """``write`` on a worker thread, under :func:`_writing_a_snapshot`."""
    with _writing_a_snapshot():
        write()
