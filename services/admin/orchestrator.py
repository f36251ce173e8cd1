"""Admin's asyncio shell: runs the lifecycle machines against the two upstream links.

Everything decided here is *when* and *with whom*; *what* is decided by the pure
modules (``lifecycle.py`` for the two-phase flows, ``reconcile.py`` for
repairs). The orchestrator

* follows the Order Book's event stream and Info's instrument pushes into the
  :class:`Registry`;
* serialises operations per symbol and keeps reconciliation passes apart from
  operations (``gate.py``);
* records in-flight operations in the intent log before their first step;
* turns every ambiguous outcome (timeout, lost connection, failed rollback) into
  a reconciliation pass, run as soon as both peers are synced; a request that
  was answered *late* is applied when its answer arrives and triggers another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from services.admin import translate
from services.admin.gate import KeyedLocks, OperationGate
from services.admin.intents import IntentLog
from services.admin.lifecycle import (
    Action,
    CreateBook,
    CreateFlow,
    CreateInstrument,
    DeleteBook,
    DeleteFlow,
    Finished,
    Outcome,
    RemoveInstrument,
    Reply,
)
from services.admin.model import (
    BookId,
    BookInfo,
    InstrumentSpec,
    Listing,
    Symbol,
    describe_symbol,
)
from services.admin.reconcile import plan_repairs
from services.admin.registry import Registry
from services.admin.upstream import CallResult, UpstreamLink
from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.wire.errors import SHUTTING_DOWN

__all__ = ["Orchestrator", "Stats"]

MT = common_pb2.MessageType


class Stats:
    """The Order Book's exchange-wide figures (extension message 147)."""

    __slots__ = ("exchange_profit", "resting_orders", "trade_count", "traded_volume")

    def __init__(self, response: Any) -> None:
        self.exchange_profit = float(response.exchange_profit)
        self.trade_count = int(response.trade_count)
        self.traded_volume = int(response.traded_volume)
        self.resting_orders = int(response.resting_orders)


def unknown_instrument(symbol: str) -> str:
    return f"unknown instrument {describe_symbol(symbol)}"


class Orchestrator:
    """Runs admin operations; owns the views, the locks and the reconciler."""

    def __init__(self, intents: IntentLog, log: logging.Logger) -> None:
        self.registry = Registry()
        self.intents = intents
        self.log = log
        self.gate = OperationGate()
        self.locks = KeyedLocks()
        self.stopping = False
        self.order_book: UpstreamLink | None = None
        self.info: UpstreamLink | None = None
        self._wake = asyncio.Event()
        self._reconciler: asyncio.Task[None] | None = None
        self.passes = 0
        """Completed reconciliation passes (tests wait on it)."""
        self.pass_done = asyncio.Event()

    def attach(self, order_book: UpstreamLink, info: UpstreamLink) -> None:
        self.order_book = order_book
        self.info = info

    # ------------------------------------------------------------------ following the peers

    def on_order_book_push(self, message_type: int, message: Any) -> None:
        """Order Book events: only book creation and deletion matter to Admin."""
        if message_type == MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED:
            self.registry.put_book(translate.book_from_created(message))
        elif message_type == MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED:
            self.registry.drop_book(message.order_book_id)

    def on_info_push(self, message_type: int, message: Any) -> None:
        if message_type == MT.INFO_ON_INSTRUMENT:
            self.registry.put_instrument(translate.listing_from_on_instrument(message))
        elif message_type == MT.INFO_ON_INSTRUMENT_DELETED:
            self.registry.drop_instrument(Symbol(message.instrument_symbol))

    @staticmethod
    def order_book_barrier() -> tuple[int, Any]:
        return MT.ORDER_BOOK_GET_STATS_REQUEST, order_book_pb2.GetStatsRequest()

    @staticmethod
    def info_barrier() -> tuple[int, Any]:
        return MT.INFO_QUOTES_REQUEST, info_pb2.QuotesRequest()

    @property
    def both_synced(self) -> bool:
        return bool(self.order_book and self.order_book.synced and self.info and self.info.synced)

    def _links(self) -> tuple[UpstreamLink, UpstreamLink]:
        assert self.order_book is not None and self.info is not None
        return self.order_book, self.info

    def _unavailable(self, *, need_book: bool = True, need_info: bool = True) -> str | None:
        order_book, info = self._links()
        if need_book and not order_book.synced:
            return f"{order_book.label} unavailable"
        if need_info and not info.synced:
            return f"{info.label} unavailable"
        return None

    # ------------------------------------------------------------------ operations

    async def create(self, spec: InstrumentSpec) -> Finished:
        if self.stopping:
            return Finished(error=SHUTTING_DOWN)
        async with self.gate.operation(), self.locks.hold(spec.symbol):
            if self.stopping:
                return Finished(error=SHUTTING_DOWN)
            problem = self._unavailable()
            if problem:
                return Finished(error=problem)
            if spec.symbol in self.registry.instruments:
                return Finished(error=f"instrument {spec.symbol!r} already exists")
            try:
                key = self.intents.begin("create", spec.symbol)
            except OSError as exc:
                self.log.error("cannot write the intent log: %s", exc)
                return Finished(error="cannot record the operation (intent log not writable)")
            flow = CreateFlow(spec)
            finished = await self._run(flow, flow.start(), key)
            self._finish(key, finished)
            return finished

    async def delete(self, symbol: str) -> Finished:
        if self.stopping:
            return Finished(error=SHUTTING_DOWN)
        async with self.gate.operation(), self.locks.hold(symbol):
            if self.stopping:
                return Finished(error=SHUTTING_DOWN)
            problem = self._unavailable()
            if problem:
                return Finished(error=problem)
            listing = self.registry.instrument(symbol)
            if listing is None:
                return Finished(error=unknown_instrument(symbol))
            try:
                key = self.intents.begin("delete", listing.symbol, listing.order_book_id)
            except OSError as exc:
                self.log.error("cannot write the intent log: %s", exc)
                return Finished(error="cannot record the operation (intent log not writable)")
            flow = DeleteFlow(listing)
            finished = await self._run(flow, flow.start(), key)
            self._finish(key, finished)
            return finished

    async def clear(self, symbol: str) -> tuple[str, int]:
        """Cancel every resting order of one instrument; returns (error, cancelled)."""
        if self.stopping:
            return SHUTTING_DOWN, 0
        async with self.gate.operation(), self.locks.hold(symbol):
            problem = self._unavailable()
            if problem:
                return problem, 0
            listing = self.registry.instrument(symbol)
            if listing is None:
                return unknown_instrument(symbol), 0
            order_book, _ = self._links()
            result = await order_book.call(
                MT.ORDER_BOOK_CLEAR_REQUEST,
                order_book_pb2.ClearOrderBookRequest(order_book_id=listing.order_book_id),
            )
            if result.outcome is Outcome.OK:
                return "", int(result.response.cancelled_orders)
            return self._error_text(order_book, result), 0

    async def stats(self) -> tuple[str, Stats | None]:
        if self.stopping:
            return SHUTTING_DOWN, None
        order_book, _ = self._links()
        result = await order_book.call(
            MT.ORDER_BOOK_GET_STATS_REQUEST, order_book_pb2.GetStatsRequest()
        )
        if result.outcome is Outcome.OK:
            return "", Stats(result.response)
        return self._error_text(order_book, result), None

    def listings(self) -> tuple[str, list[Listing]]:
        problem = self._unavailable(need_book=False)
        if problem:
            return problem, []
        return "", list(self.registry.listings())

    @staticmethod
    def _error_text(link: UpstreamLink, result: CallResult) -> str:
        if result.outcome is Outcome.REFUSED:
            return f"{link.label} refused: {result.error}"
        return result.error

    # ------------------------------------------------------------------ running a flow

    async def _run(self, flow: CreateFlow | DeleteFlow, action: Action, key: int) -> Finished:
        while True:
            link = self._link_for(action)
            message_type, message = translate.action_request(action)
            result = await link.call(message_type, message)
            reply = self._reply(action, result)
            self._apply(action, reply)
            if result.late is not None:
                self._watch_late(action, result.late)
            if isinstance(action, CreateBook) and reply.outcome is Outcome.OK:
                try:
                    self.intents.set_book(key, BookId(reply.book_id))
                except OSError as exc:  # only the log's explanation is lost
                    self.log.error("cannot write the intent log: %s", exc)
            step = flow.step(reply)
            if isinstance(step, Finished):
                return step
            action = step

    def _link_for(self, action: Action) -> UpstreamLink:
        order_book, info = self._links()
        return order_book if isinstance(action, CreateBook | DeleteBook) else info

    @staticmethod
    def _reply(action: Action, result: CallResult) -> Reply:
        if result.outcome is Outcome.OK:
            return translate.reply_from_response(action, result.response)
        return Reply(result.outcome, result.error)

    def _apply(self, action: Action, reply: Reply) -> None:
        """Make the view reflect a confirmed step at once (pushes may come later)."""
        if reply.outcome is not Outcome.OK:
            return
        registry = self.registry
        if isinstance(action, CreateBook):
            book_id = BookId(reply.book_id)
            registry.put_book(BookInfo(book_id, action.tick_size, action.price_rule))
        elif isinstance(action, DeleteBook):
            registry.drop_book(action.book_id)
        elif isinstance(action, CreateInstrument):
            registry.put_instrument(Listing(action.spec, action.book_id, reply.timestamp))
        elif isinstance(action, RemoveInstrument):
            registry.drop_instrument(action.symbol)

    def _watch_late(self, action: Action, future: asyncio.Future[Any]) -> None:
        """A request that timed out may still be answered: apply it, then reconcile."""

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                return  # the connection dropped: the resync reconciles anyway
            reply = translate.reply_from_response(action, f.result())
            self.log.warning(
                "late answer to %s: %s",
                type(action).__name__,
                reply.error or "done",
            )
            self._apply(action, reply)
            self.request_reconcile()

        future.add_done_callback(done)

    def _finish(self, key: int, finished: Finished) -> None:
        if finished.repair_needed:
            self.log.warning("operation left work for reconciliation: %s", finished.error or "ok")
            self.request_reconcile()
            return
        try:
            self.intents.end(key)
        except OSError as exc:
            self.log.error("cannot write the intent log: %s", exc)

    # ------------------------------------------------------------------ reconciliation

    def request_reconcile(self) -> None:
        """Ask for a pass; it runs once both peers are synced and no operation runs."""
        self._wake.set()

    def clear_reconcile_request(self) -> None:
        """Forget pending requests for a pass (one just completed at start-up)."""
        self._wake.clear()

    def start_reconciler(self) -> None:
        if self._reconciler is None:
            self._reconciler = asyncio.get_running_loop().create_task(self._reconcile_loop())

    async def stop_reconciler(self) -> None:
        task, self._reconciler = self._reconciler, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.both_synced or self.stopping:
                continue  # the next (re)connection wakes us again
            try:
                await self.reconcile_once()
            except Exception:
                self.log.exception("reconciliation pass failed")

    async def reconcile_once(self) -> bool:
        """One pass (see ``reconcile.py``); True when both sides now agree."""
        async with self.gate.exclusive():
            if not self.both_synced:
                return False
            order_book, info = self._links()
            intents = self.intents.open_intents()
            repairs = plan_repairs(self.registry.instruments, self.registry.books, intents)
            complete = True
            for repair in repairs:
                if repair.kind == "hold_book":
                    self.log.error("reconcile: %s", repair.describe())
                    continue
                if repair.kind == "withdraw_instrument":
                    assert repair.symbol is not None
                    link = info
                    result = await info.call(
                        MT.INFO_DELETE_INSTRUMENT_REQUEST,
                        info_pb2.DeleteInstrumentRequest(instrument_symbol=repair.symbol),
                    )
                else:
                    link = order_book
                    result = await order_book.call(
                        MT.ORDER_BOOK_DELETE_REQUEST,
                        order_book_pb2.DeleteOrderBookRequest(order_book_id=repair.book_id),
                    )
                if result.late is not None:
                    result.late.add_done_callback(lambda _: self.request_reconcile())
                if result.outcome is Outcome.OK:
                    self.log.warning("reconcile: %s: done", repair.describe())
                elif result.outcome is Outcome.REFUSED:
                    # The peer will not act on it, most likely because it no longer
                    # has it; its own list is the truth, so drop it from ours.
                    self.log.warning(
                        "reconcile: %s: %s refused (%s)",
                        repair.describe(),
                        link.label,
                        result.error,
                    )
                else:
                    self.log.warning(
                        "reconcile: %s: not done (%s); retrying when possible",
                        repair.describe(),
                        result.error,
                    )
                    complete = False
                    continue
                if repair.kind == "withdraw_instrument":
                    assert repair.symbol is not None
                    self.registry.drop_instrument(repair.symbol)
                else:
                    self.registry.drop_book(repair.book_id)
            if complete:
                if intents and not repairs:
                    self.log.info(
                        "reconcile: interrupted operations left nothing to repair: %s",
                        ", ".join(i.render() for i in intents),
                    )
                try:
                    self.intents.clear()
                except OSError as exc:
                    self.log.error("cannot write the intent log: %s", exc)
            if repairs:
                self.log.warning(
                    "reconcile: %d repair(s) %s",
                    len(repairs),
                    "done" if complete else "attempted, some pending",
                )
            self.passes += 1
            self.pass_done.set()
            return complete

    async def wait_for_pass(self, after: int, timeout: float) -> None:
        """Wait until more than ``after`` passes completed (tests)."""
        async with asyncio.timeout(timeout):
            while self.passes <= after:
                self.pass_done.clear()
                await self.pass_done.wait()
