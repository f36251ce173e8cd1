"""Insert, amend and cancel: validate, check limits, forward, answer.

Every execution request walks the same path, synchronously up to the forward
(so pipelined requests are checked and recorded in arrival order):

1. **Validate at the edge** (symbol, enums, quantity, price on the tick grid,
   client_order_id length, ownership). Errors are answered at once and change
   nothing, not even the message count.
2. **Check, then record** every limit of both layers (:mod:`.limits`). The
   request then takes its place in its connection's response order and waits
   in the turn's *outbox*.
3. **Save, then forward**: once every request of the read that brought them
   is dispatched, the window records of the requests in the outbox go to the
   journal in one write, and only then does each request leave for the Order
   Book, with the Gateway's own request id and the authenticated user stamped
   as ``on_behalf_of_username`` (a client cannot choose it). If the journal
   cannot be written, nothing of the batch is forwarded and every ticket is
   refunded.
4. **Settle**: answers are collected as they are read and settled once the
   whole read is handled, i.e. after the events the Order Book writes right
   behind its answers have been applied to the order table (so the owner's
   fills are already queued behind this very response). Only an answer whose
   events are not in yet waits for a barrier, in a task. Then the in-flight
   reservations are released, refused inserts are taken out of the windows
   again, and the batch's answers are written at once.

Why not a task per request: a task, its coroutine and a future cost about a
fifth of the Gateway's CPU per order, and one journal write per request
another tenth (``docs/performance.md``). Requests on the fast path now cost
neither: their answers go straight into the slot reserved in the connection's
response order (``Session.reserve``/``fulfil``).

A handler returns a response message (answered at once), None (the answer will
fill the slot reserved for it), or, on the rare paths that must wait before
checking (a symbol Info may not have told us about yet, a client_order_id
already in flight), an awaitable of the response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from google.protobuf.message import Message

from services.common.pb import common_pb2
from services.common.prices import PriceError, tick_memo, to_ticks_remembered
from services.common.wire.errors import SHUTTING_DOWN, ConnectionLost
from services.common.wire.framing import HEADER, encode_frame
from services.common.wire.session import Session, Slot
from services.risk_gateway import translate
from services.risk_gateway.coids import Outcome, client_order_id_too_long
from services.risk_gateway.instruments import Instrument, valid_symbol
from services.risk_gateway.limits import Ticket
from services.risk_gateway.orders import OrderEntry

if TYPE_CHECKING:
    from services.risk_gateway.app import RiskGatewayApp

log = logging.getLogger("optivex.risk_gateway.execution")

MAX_QUANTITY: Final = 2**31 - 1

# Error texts (clients and tests rely on them; docs/risk_gateway.md lists them).
INVALID_SYMBOL: Final = "invalid instrument_symbol: 1-16 characters from A-Z, 0-9, '.' and '-'"
UNKNOWN_INSTRUMENT: Final = "unknown instrument"
UNKNOWN_ORDER: Final = "unknown order"
QUANTITY: Final = f"quantity must be between 1 and {MAX_QUANTITY}"
SIDE: Final = "side must be BUY (0) or SELL (1)"
TIME_IN_FORCE: Final = (
    "time_in_force must be GOOD_TILL_CANCEL (0), IMMEDIATE_OR_CANCEL (1) or FILL_OR_KILL (2)"
)
CLIENT_ORDER_ID: Final = "client_order_id is longer than 64 bytes of UTF-8"
UNAVAILABLE: Final = "order book unavailable"
NOT_SAVED: Final = "internal error: risk state could not be saved; nothing was forwarded"
INTERNAL: Final = "internal error"
LOST_INSERT: Final = (
    "order book unavailable: connection lost before its answer; the order may or may not "
    "have been inserted (resend with the same client_order_id to learn its outcome)"
)
LOST_CANCEL: Final = (
    "order book unavailable: connection lost before its answer; the order may or may not "
    "have been cancelled"
)
LOST_AMEND: Final = (
    "order book unavailable: connection lost before its answer; the order may or may not "
    "have been amended"
)

MT = common_pb2.MessageType
_INSERT: Final = int(MT.EXECUTION_INSERT_ORDER_REQUEST)
_CANCEL: Final = int(MT.EXECUTION_CANCEL_ORDER_REQUEST)
_AMEND: Final = int(MT.EXECUTION_AMEND_ORDER_REQUEST)
_RESPONSE: Final = {
    _INSERT: int(MT.EXECUTION_INSERT_ORDER_RESPONSE),
    _CANCEL: int(MT.EXECUTION_CANCEL_ORDER_RESPONSE),
    _AMEND: int(MT.EXECUTION_AMEND_ORDER_RESPONSE),
}
_UPSTREAM: Final = {
    _INSERT: int(translate.INSERT),
    _CANCEL: int(translate.CANCEL),
    _AMEND: int(translate.AMEND),
}
_ON_ERROR: Final = int(MT.ON_ERROR)
_pack_header: Final = HEADER.pack


def _ticks(price: float, tick_size: float) -> int | PriceError:
    """``to_ticks`` through the process's memo (participants quote the same few
    levels over and over); a refused price is checked afresh every time."""
    memo = tick_memo(tick_size)
    ticks = memo.get(price)
    if ticks is None:
        return to_ticks_remembered(memo, price, tick_size)
    return ticks


Reply = Message | Awaitable[Message] | None
Waiter = asyncio.Future[Message]
ErrorBuilder = Callable[[int, str], Message]


class Forward:
    """One checked execution request, from its outbox entry to its answer.

    The answer goes to ``slot`` (its place in the connection's response order)
    or, on the paths that awaited something first, to ``waiter``.
    """

    __slots__ = (
        "coid",
        "done",
        "generation",
        "handlers",
        "kind",
        "max_order_id",
        "message",
        "outcome",
        "price_ticks",
        "request",
        "session",
        "slot",
        "ticket",
        "user",
        "waiter",
    )

    def __init__(
        self,
        handlers: ExecutionHandlers,
        kind: int,
        session: Session,
        request: Any,
        ticket: Ticket,
        message: Message | None,
        waiter: Waiter | None,
    ) -> None:
        self.handlers = handlers
        self.kind = kind
        self.session = session
        self.request = request
        self.user = session.username
        self.ticket = ticket
        self.message = message
        """What goes to the Order Book; None for a client_order_id resend."""
        self.waiter = waiter
        self.slot: Slot | None = None
        self.coid = ""
        self.done: asyncio.Future[None] | None = None
        """Resolved when an insert with a client_order_id is answered."""
        self.outcome: Outcome | None = None
        """A resend's known outcome."""
        self.price_ticks = 0
        self.generation = 0
        self.max_order_id = 0
        """The order table's highest id when the request left: higher ids are new."""

    def answered(self, outcome: Any) -> None:
        """The Order Book's answer, called while it is read (``request_callback``):
        settled after the rest of that read.

        The Order Book link calls :meth:`ExecutionHandlers.settle_answered` once
        the read is handled; a lost connection is not a read, so it is settled on
        the next loop turn. (A bound method of the request rather than a partial
        of the handlers': one object less per request.)
        """
        handlers = self.handlers
        handlers._answered.append((self, outcome))
        if isinstance(outcome, ConnectionLost) and not handlers._settle_scheduled:
            handlers._settle_scheduled = True
            asyncio.get_running_loop().call_soon(handlers.settle_answered)


class ExecutionHandlers:
    """Handlers for types 40 (insert), 42 (cancel) and 46 (amend)."""

    def __init__(self, app: RiskGatewayApp) -> None:
        self.app = app
        self.engine = app.engine
        self.table = app.table
        self.directory = app.directory
        self.coids = app.coids
        self.ob = app.order_book
        self._link = app.order_book.link
        """The Order Book link's connection state, read on every request without
        the :class:`~.upstream.Link` properties in between."""
        self.in_flight: set[Forward] = set()
        """Checked requests not answered yet (stop() waits for them)."""
        self._coid_in_flight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._outbox: list[Forward] = []
        self._answered: list[tuple[Forward, Any]] = []
        self._outbox_scheduled = False
        self._settle_scheduled = False
        self._late: set[asyncio.Task[None]] = set()
        self._touched: set[Session] = set()
        """Sessions given answers in the current batch (written at its end)."""
        self._settlers: dict[int, Callable[[Forward, Any], None]] = {
            _INSERT: self._insert_answered,
            _CANCEL: self._cancel_answered,
            _AMEND: self._amend_answered,
        }

    # ------------------------------------------------------------------ insert

    def insert(self, session: Session, request: Any, waiter: Waiter | None = None) -> Reply:
        user = session.username
        request_id = request.request_id
        if self.app.stopping:
            return translate.insert_error(request_id, SHUTTING_DOWN)
        coid = request.client_order_id
        if coid:
            if client_order_id_too_long(coid):
                return translate.insert_error(request_id, CLIENT_ORDER_ID)
            pending = self._coid_in_flight.get((user, coid))
            if pending is not None:
                # Same id in flight: wait for its outcome, then decide afresh.
                return self._again(pending, self.insert, session, request)
            outcome = self.coids.get(user, coid)
            if outcome is not None:
                return self._resend(session, request, outcome, waiter)
        symbol = request.instrument_symbol
        if not valid_symbol(symbol):
            return translate.insert_error(request_id, INVALID_SYMBOL)
        if not 0 < request.quantity <= MAX_QUANTITY:
            return translate.insert_error(request_id, QUANTITY)
        if request.side not in (0, 1):
            return translate.insert_error(request_id, SIDE)
        if request.time_in_force not in (0, 1, 2):
            return translate.insert_error(request_id, TIME_IN_FORCE)
        instrument = self.directory.get(symbol)
        if instrument is None:
            return self._after_info(session, request, self._insert_known, translate.insert_error)
        return self._insert_known(session, request, instrument, waiter)

    def _resend(
        self, session: Session, request: Any, outcome: Outcome, waiter: Waiter | None
    ) -> Reply:
        """A known client_order_id: the original outcome, counted only as a message
        (and answered once that count is saved, like any other)."""
        ticket = self.engine.check_message(session.username)
        if isinstance(ticket, str):
            return translate.insert_error(request.request_id, ticket)
        forward = Forward(self, _INSERT, session, request, ticket, None, waiter)
        forward.outcome = outcome
        self._queue(forward)
        return None

    def _insert_known(
        self, session: Session, request: Any, instrument: Instrument, waiter: Waiter | None
    ) -> Reply:
        request_id = request.request_id
        ticks = _ticks(request.price, instrument.tick_size)
        if isinstance(ticks, PriceError):
            return translate.insert_error(request_id, ticks.message)
        if not self._link.connected:
            return translate.insert_error(request_id, UNAVAILABLE)
        user = session.username
        ticket = self.engine.check_insert(
            user,
            instrument.symbol,
            instrument.order_book_id,
            request.quantity,
            ticks * instrument.unit,
        )
        if isinstance(ticket, str):
            return translate.insert_error(request_id, ticket)
        forward = Forward(
            self,
            _INSERT,
            session,
            request,
            ticket,
            translate.order_book_insert(request, instrument.order_book_id, user),
            waiter,
        )
        coid = request.client_order_id
        if coid:
            forward.coid = coid
            forward.done = done = asyncio.get_running_loop().create_future()
            self._coid_in_flight[(user, coid)] = done
        self._queue(forward)
        return None

    def _insert_answered(self, forward: Forward, response: Any) -> None:
        if isinstance(response, Exception) or response.error_message:
            self._failed(forward, response, translate.insert_error, LOST_INSERT)
            return
        request = forward.request
        if self._link.generation == forward.generation and self.table.insert_settled(
            response.order_id,
            response.trade_ids,
            request.time_in_force,
            response.traded_quantity,
            request.quantity,
        ):
            self._insert_done(forward, response, True)
        else:
            self._late_settle(forward, self._insert_late(forward, response))

    async def _insert_late(self, forward: Forward, response: Any) -> None:
        settled = await self.ob.settle(forward.generation)
        self._insert_done(forward, response, settled)
        self.app.save_quietly()

    def _insert_done(self, forward: Forward, response: Any, settled: bool) -> None:
        """``settled``: the order table has seen the events of the answer."""
        engine = self.engine
        ticket = forward.ticket
        engine.release(ticket)
        coid = forward.coid
        if coid:
            user = forward.user
            outcome = translate.outcome_of(response)
            known = self.coids.get(user, coid)
            new = self.table.is_new_order(outcome.order_id, forward.max_order_id)
            if known is not None or (settled and not new):
                # The Order Book answered an earlier outcome (a resend the Gateway
                # did not know about): it counts only as a message.
                engine.refund(ticket, message=False)
            if known is None:
                self.coids.add(user, coid, outcome)
                self.app.store.coid(user, coid, outcome)
            else:
                outcome = known
            response = translate.insert_response(forward.request.request_id, outcome)
        else:
            # The Order Book's answer has the participant's answer's very fields
            # (same numbers and types): only the request id differs.
            response.request_id = forward.request.request_id
        self._complete(forward, response)

    # ------------------------------------------------------------------ cancel

    def cancel(self, session: Session, request: Any) -> Reply:
        request_id = request.request_id
        if self.app.stopping:
            return translate.cancel_error(request_id, SHUTTING_DOWN)
        symbol = request.instrument_symbol
        if not valid_symbol(symbol):
            return translate.cancel_error(request_id, INVALID_SYMBOL)
        if request.order_id <= 0:
            return translate.cancel_error(request_id, UNKNOWN_ORDER)
        instrument = self.directory.get(symbol)
        if instrument is None:
            return self._after_info(session, request, self._cancel_known, translate.cancel_error)
        return self._cancel_known(session, request, instrument, None)

    def _own_order(self, user: str, order_id: int, instrument: Instrument) -> OrderEntry | None:
        entry = self.table.get(order_id)
        if (
            entry is None
            or entry.owner != user
            or entry.order_book_id != instrument.order_book_id
            or entry.exposure is None
        ):
            return None
        return entry

    def _cancel_known(
        self, session: Session, request: Any, instrument: Instrument, waiter: Waiter | None
    ) -> Reply:
        request_id = request.request_id
        if not self._link.connected:
            return translate.cancel_error(request_id, UNAVAILABLE)
        user = session.username
        order_id = request.order_id
        if self._own_order(user, order_id, instrument) is None:
            return translate.cancel_error(request_id, UNKNOWN_ORDER)
        ticket = self.engine.check_message(user)
        if isinstance(ticket, str):
            return translate.cancel_error(request_id, ticket)
        message = translate.order_book_cancel(instrument.order_book_id, order_id, user)
        self._queue(Forward(self, _CANCEL, session, request, ticket, message, waiter))
        return None

    def _cancel_answered(self, forward: Forward, outcome: Any) -> None:
        order_id = forward.request.order_id
        if isinstance(outcome, Exception):
            self.table.cancel_done(order_id, None)
            text = LOST_CANCEL if isinstance(outcome, ConnectionLost) else str(outcome)
            self._complete(forward, translate.cancel_error(forward.request.request_id, text))
            return
        # A refusal causes no events; a success's event removes the order.
        if self._link.generation == forward.generation and (
            bool(outcome.error_message) or self.table.cancel_settled(order_id)
        ):
            self._cancel_done(forward, outcome, True)
        else:
            self._late_settle(forward, self._cancel_late(forward, outcome))

    async def _cancel_late(self, forward: Forward, response: Any) -> None:
        self._cancel_done(forward, response, await self.ob.settle(forward.generation))

    def _cancel_done(self, forward: Forward, response: Any, settled: bool) -> None:
        request_id = forward.request.request_id
        error = response.error_message
        notice = self.table.cancel_done(forward.request.order_id, (not error) if settled else None)
        if error:
            self._complete(forward, translate.cancel_error(request_id, _order_book_error(error)))
        else:
            # Same fields, numbers and types as the participant's answer (see _insert_done).
            response.request_id = request_id
            self._complete(forward, response)
        if notice is not None:
            # Someone else (a clear) cancelled it first: the owner hears of it,
            # right after this answer on this connection.
            self.app.push_cancelled([notice])

    # ------------------------------------------------------------------ amend

    def amend(self, session: Session, request: Any) -> Reply:
        request_id = request.request_id
        if self.app.stopping:
            return translate.amend_error(request_id, SHUTTING_DOWN)
        symbol = request.instrument_symbol
        if not valid_symbol(symbol):
            return translate.amend_error(request_id, INVALID_SYMBOL)
        if request.order_id <= 0:
            return translate.amend_error(request_id, UNKNOWN_ORDER)
        if not 0 < request.quantity <= MAX_QUANTITY:
            return translate.amend_error(request_id, QUANTITY)
        instrument = self.directory.get(symbol)
        if instrument is None:
            return self._after_info(session, request, self._amend_known, translate.amend_error)
        return self._amend_known(session, request, instrument, None)

    def _amend_known(
        self, session: Session, request: Any, instrument: Instrument, waiter: Waiter | None
    ) -> Reply:
        request_id = request.request_id
        ticks = _ticks(request.price, instrument.tick_size)
        if isinstance(ticks, PriceError):
            return translate.amend_error(request_id, ticks.message)
        if not self._link.connected:
            return translate.amend_error(request_id, UNAVAILABLE)
        user = session.username
        entry = self._own_order(user, request.order_id, instrument)
        if entry is None or entry.exposure is None:
            return translate.amend_error(request_id, UNKNOWN_ORDER)
        ticket = self.engine.check_amend(
            user,
            instrument.symbol,
            entry.exposure,
            entry.remaining,
            entry.unit_price,
            request.quantity,
            ticks * instrument.unit,
        )
        if isinstance(ticket, str):
            return translate.amend_error(request_id, ticket)
        message = translate.order_book_amend(request, instrument.order_book_id, user)
        forward = Forward(self, _AMEND, session, request, ticket, message, waiter)
        forward.price_ticks = ticks
        self._queue(forward)
        return None

    def _amend_answered(self, forward: Forward, response: Any) -> None:
        if isinstance(response, Exception) or response.error_message:
            self._failed(forward, response, translate.amend_error, LOST_AMEND)
            return
        if self._link.generation == forward.generation and self.table.amend_settled(
            forward.request.order_id,
            forward.price_ticks,
            response.resting_quantity,
            response.trade_ids,
        ):
            self._amend_done(forward, response)
        else:
            self._late_settle(forward, self._amend_late(forward, response))

    async def _amend_late(self, forward: Forward, response: Any) -> None:
        await self.ob.settle(forward.generation)
        self._amend_done(forward, response)

    def _amend_done(self, forward: Forward, response: Any) -> None:
        self.engine.release(forward.ticket)
        # Same fields, numbers and types as the participant's answer (see _insert_done).
        response.request_id = forward.request.request_id
        self._complete(forward, response)

    # ------------------------------------------------------------------ the outbox

    def _queue(self, forward: Forward) -> None:
        """Hold the request's answer place; it leaves with the rest of its read's.

        A request dispatched from a read (no ``waiter``) is sent by
        :meth:`send_outbox`, which the wire server calls once the read's
        requests are all dispatched; one that awaited something first (it has
        a ``waiter``) is sent on the next loop turn.
        """
        if forward.waiter is None:
            forward.slot = forward.session.reserve()
        else:
            self._schedule_outbox()
        self.in_flight.add(forward)
        self._outbox.append(forward)

    def _schedule_outbox(self) -> None:
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            asyncio.get_running_loop().call_soon(self.send_outbox)

    def send_outbox(self) -> None:
        """Save the outbox's window records in one write, then forward its requests."""
        self._outbox_scheduled = False
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        if not self.app.save_batch(batch):
            for forward in batch:
                self._complete(forward, self._error(forward, NOT_SAVED))
            return
        link = self._link
        # ``connected`` includes the connection being open.
        conn = link.conn if link.connected and not self.app.stopping else None
        generation = link.generation
        max_order_id = self.table.max_order_id
        refunded = False
        for forward in batch:
            message = forward.message
            if conn is not None and message is not None:
                forward.generation = generation
                forward.max_order_id = max_order_id
                kind = forward.kind
                if kind == _CANCEL:
                    self.table.expect_cancel(forward.request.order_id)
                conn.request_callback(_UPSTREAM[kind], message, forward.answered)
            elif message is None:
                assert forward.outcome is not None
                response = translate.insert_response(forward.request.request_id, forward.outcome)
                self._complete(forward, response)
            else:
                # Nothing leaves once the Gateway is stopping: the answer could
                # no longer reach the client.
                self.engine.refund(forward.ticket, message=True)
                refunded = True
                self._complete(forward, self._error(forward, UNAVAILABLE))
        if refunded:
            self.app.save_quietly()
        if conn is not None:
            conn.flush()
        if self._touched:
            self._flush_answers()

    def settle_answered(self) -> None:
        """Settle the answers collected so far (their events are in the order table)."""
        self._settle_scheduled = False
        if not self._answered:
            return
        answered, self._answered = self._answered, []
        settlers = self._settlers
        for forward, outcome in answered:
            try:
                settlers[forward.kind](forward, outcome)
            except Exception:
                log.exception("settling an answer of the order book failed")
                self._fail(forward)
        # Refunds and client_order_ids of this batch, in one write before the
        # answers leave.
        if self.app.store.pending:
            self.app.save_quietly()
        if self._touched:
            self._flush_answers()

    def _flush_answers(self) -> None:
        """Write the answers of a batch now rather than on the next loop turn."""
        touched = self._touched
        if touched:
            self._touched = set()
            for session in touched:
                session.flush()

    def _late_settle(self, forward: Forward, work: Coroutine[Any, Any, None]) -> None:
        """The answer's events are not in the order table yet: wait for a barrier."""
        task = asyncio.get_running_loop().create_task(work)
        self._late.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._late.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("settling an answer of the order book failed: %r", task.exception())
                self._fail(forward)

        task.add_done_callback(finished)

    # ------------------------------------------------------------------ answering

    def _retire(self, forward: Forward) -> None:
        """No longer in flight; a resend waiting on its client_order_id may go on."""
        self.in_flight.discard(forward)
        done = forward.done
        if done is not None:
            forward.done = None
            self._coid_in_flight.pop((forward.user, forward.coid), None)
            done.set_result(None)

    def _complete(self, forward: Forward, response: Message) -> None:
        self._retire(forward)
        waiter = forward.waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(response)
        else:
            slot = forward.slot
            if slot is not None:
                payload = response.SerializeToString()
                session = forward.session
                session.fulfil(
                    slot, _pack_header(len(payload) + 4, _RESPONSE[forward.kind]) + payload
                )
                self._touched.add(session)

    def _fail(self, forward: Forward) -> None:
        """A bug settled nothing: answer ``ON_ERROR`` "internal error", never silence."""
        if forward not in self.in_flight:
            return
        self.engine.release(forward.ticket)
        self._retire(forward)
        if forward.waiter is not None:
            if not forward.waiter.done():
                forward.waiter.set_exception(RuntimeError(INTERNAL))
        elif forward.slot is not None:
            error = common_pb2.OnError(
                message_type=forward.kind,
                error_message=INTERNAL,
                request_id=forward.request.request_id,
            )
            forward.session.fulfil(forward.slot, encode_frame(_ON_ERROR, error.SerializeToString()))

    def _error(self, forward: Forward, text: str) -> Message:
        request_id = forward.request.request_id
        if forward.kind == _INSERT:
            return translate.insert_error(request_id, text)
        if forward.kind == _CANCEL:
            return translate.cancel_error(request_id, text)
        return translate.amend_error(request_id, text)

    def _failed(self, forward: Forward, outcome: Any, error: ErrorBuilder, lost: str) -> None:
        """A forwarded insert or amend failed (an exception, or an answer with an
        error): answer the error and settle the ticket. One place for what every
        forwarded order request does when it fails."""
        request_id = forward.request.request_id
        if isinstance(outcome, ConnectionLost):
            # Forwarded, fate unknown: keep it in the windows (it may exist).
            self.engine.release(forward.ticket)
            self._complete(forward, error(request_id, lost))
            return
        if isinstance(outcome, Exception):
            text = str(outcome)
        else:
            # A refusal causes no events: nothing to wait for.
            text = _order_book_error(outcome.error_message)
        self.engine.refund(forward.ticket, message=False)
        self._complete(forward, error(request_id, text))

    # ------------------------------------------------------------------ waiting first

    def _after_info(
        self,
        session: Session,
        request: Any,
        then: Callable[[Session, Any, Instrument, Waiter | None], Reply],
        error: ErrorBuilder,
    ) -> Awaitable[Message]:
        """The symbol is not known (yet): make sure Info has nothing in flight for it.

        Info writes a new instrument's ``OnInstrument`` before it answers Admin,
        so after a round trip to Info every instrument Admin has confirmed is
        known here. Concurrent checks share one round trip.
        """

        async def recheck() -> Message:
            await self.app.info.settle(self.app.info.generation)
            instrument = self.directory.get(request.instrument_symbol)
            if instrument is None:
                return error(request.request_id, UNKNOWN_INSTRUMENT)
            waiter: Waiter = asyncio.get_running_loop().create_future()
            return await _resolved(then(session, request, instrument, waiter), waiter)

        return recheck()

    def _again(
        self,
        pending: asyncio.Future[None],
        handler: Callable[[Session, Any, Waiter | None], Reply],
        session: Session,
        request: Any,
    ) -> Awaitable[Message]:
        async def wait_then_handle() -> Message:
            await asyncio.shield(pending)
            waiter: Waiter = asyncio.get_running_loop().create_future()
            return await _resolved(handler(session, request, waiter), waiter)

        return wait_then_handle()


async def _resolved(reply: Reply, waiter: Waiter) -> Message:
    """The answer of a handler called with ``waiter``, however it came."""
    if reply is None:
        return await waiter
    if isinstance(reply, Message):
        return reply
    return await reply


def _order_book_error(error: str) -> str:
    """Order Book error texts in the Gateway's terms (symbols, not book ids)."""
    if error.startswith("unknown order book"):
        return UNKNOWN_INSTRUMENT
    if error.startswith("unknown order"):
        return UNKNOWN_ORDER
    return error
