"""Insert, amend and cancel: validate, check limits, forward, answer.

Every execution request walks the same path, synchronously up to the forward
(so pipelined requests are checked and recorded in arrival order):

1. **Validate at the edge** (symbol, enums, quantity, price on the tick grid,
   client_order_id length, ownership). Errors are answered at once and change
   nothing, not even the message count.
2. **Check, then record** every limit of both layers (:mod:`.limits`); the
   window records are written to the journal and flushed before anything leaves.
3. **Forward** to the Order Book with the Gateway's own request id and the
   authenticated user stamped as ``on_behalf_of_username`` (a client cannot
   choose it).
4. **Settle**: when the answer arrives, wait for a barrier so the events the
   request caused are in the order table (and the owner's fills are already
   queued behind this very response), then release the in-flight reservations,
   take refused inserts out of the windows again, and answer.

A handler returns either a response message (answered at once) or an awaitable
of one; the wire layer keeps each connection's answers in request order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from google.protobuf.message import Message

from services.common.prices import PriceError, to_ticks
from services.common.wire.errors import SHUTTING_DOWN, ConnectionLost, RemoteError
from services.common.wire.session import Session
from services.risk_gateway import translate
from services.risk_gateway.coids import client_order_id_too_long
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
ORDER_ID: Final = "order_id must be positive"
UNAVAILABLE: Final = "order book unavailable"
NOT_SAVED: Final = "internal error: risk state could not be saved; nothing was forwarded"
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

Reply = Message | Awaitable[Message]


class ExecutionHandlers:
    """Handlers for types 40 (insert), 42 (cancel) and 46 (amend)."""

    def __init__(self, app: RiskGatewayApp) -> None:
        self.app = app
        self.engine = app.engine
        self.table = app.table
        self.directory = app.directory
        self.coids = app.coids
        self.ob = app.order_book
        self._coid_in_flight: dict[tuple[str, str], asyncio.Future[None]] = {}

    # ------------------------------------------------------------------ insert

    def insert(self, session: Session, request: Any) -> Reply:
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
                return self._resend(user, request_id, outcome)
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
        return self._insert_known(session, request, instrument)

    def _resend(self, user: str, request_id: int, outcome: Any) -> Message:
        """A known client_order_id: the original outcome, counted only as a message."""
        ticket = self.engine.check_message(user)
        if isinstance(ticket, str):
            return translate.insert_error(request_id, ticket)
        if not self.app.save(ticket):
            return translate.insert_error(request_id, NOT_SAVED)
        return translate.insert_response(request_id, outcome)

    def _insert_known(self, session: Session, request: Any, instrument: Instrument) -> Reply:
        request_id = request.request_id
        ticks = to_ticks(request.price, instrument.tick_size)
        if isinstance(ticks, PriceError):
            return translate.insert_error(request_id, ticks.message)
        if not self.ob.ready:
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
        if not self.app.save(ticket):
            return translate.insert_error(request_id, NOT_SAVED)
        seen_before = (self.ob.generation, self.table.max_order_id)
        answer = self._forward(
            ticket,
            translate.INSERT,
            translate.order_book_insert(request, instrument.order_book_id, user),
        )
        if answer is None:
            return translate.insert_error(request_id, UNAVAILABLE)
        coid = request.client_order_id
        done: asyncio.Future[None] | None = None
        if coid:
            done = asyncio.get_running_loop().create_future()
            self._coid_in_flight[(user, coid)] = done
        return self.app.track(
            self._insert_settle(answer, ticket, user, request, coid, done, seen_before)
        )

    async def _insert_settle(
        self,
        answer: asyncio.Future[Any],
        ticket: Ticket,
        user: str,
        request: Any,
        coid: str,
        done: asyncio.Future[None] | None,
        seen_before: tuple[int, int],
    ) -> Message:
        try:
            return await self._insert_outcome(answer, ticket, user, request, coid, seen_before)
        finally:
            if done is not None:
                self._coid_in_flight.pop((user, coid), None)
                done.set_result(None)

    async def _insert_outcome(
        self,
        answer: asyncio.Future[Any],
        ticket: Ticket,
        user: str,
        request: Any,
        coid: str,
        seen_before: tuple[int, int],
    ) -> Message:
        """``seen_before``: the link's generation and the table's highest order id
        when the request was forwarded."""
        engine = self.engine
        request_id = request.request_id
        response, failed = await self._accepted(
            answer, ticket, request_id, translate.insert_error, LOST_INSERT
        )
        if failed is not None:
            return failed
        generation, max_order_id = seen_before
        settled = (
            self.ob.generation == generation
            and self.table.insert_settled(
                response.order_id,
                response.trade_ids,
                request.time_in_force,
                response.traded_quantity,
                request.quantity,
            )
        ) or await self.ob.settle(generation)
        engine.release(ticket)
        outcome = translate.outcome_of(response)
        if coid:
            known = self.coids.get(user, coid)
            new = self.table.is_new_order(outcome.order_id, max_order_id)
            if known is not None or (settled and not new):
                # The Order Book answered an earlier outcome (a resend the Gateway
                # did not know about): it counts only as a message.
                engine.refund(ticket, message=False)
            if known is None:
                self.coids.add(user, coid, outcome)
                self.app.store.coid(user, coid, outcome)
            else:
                outcome = known
            self.app.save_quietly()
        return translate.insert_response(request_id, outcome)

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
        return self._cancel_known(session, request, instrument)

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

    def _cancel_known(self, session: Session, request: Any, instrument: Instrument) -> Reply:
        request_id = request.request_id
        if not self.ob.ready:
            return translate.cancel_error(request_id, UNAVAILABLE)
        user = session.username
        order_id = request.order_id
        if self._own_order(user, order_id, instrument) is None:
            return translate.cancel_error(request_id, UNKNOWN_ORDER)
        ticket = self.engine.check_message(user)
        if isinstance(ticket, str):
            return translate.cancel_error(request_id, ticket)
        if not self.app.save(ticket):
            return translate.cancel_error(request_id, NOT_SAVED)
        answer = self._forward(
            ticket,
            translate.CANCEL,
            translate.order_book_cancel(instrument.order_book_id, order_id, user),
        )
        if answer is None:
            return translate.cancel_error(request_id, UNAVAILABLE)
        self.table.expect_cancel(order_id)
        return self.app.track(self._cancel_settle(answer, order_id, request_id, self.ob.generation))

    async def _cancel_settle(
        self, answer: asyncio.Future[Any], order_id: int, request_id: int, generation: int
    ) -> Message:
        try:
            response = await answer
        except ConnectionLost:
            self.table.cancel_done(order_id, None)
            return translate.cancel_error(request_id, LOST_CANCEL)
        except RemoteError as exc:
            self.table.cancel_done(order_id, None)
            return translate.cancel_error(request_id, str(exc))
        error = response.error_message
        # A refusal causes no events; a success's event removes the order.
        settled = (
            self.ob.generation == generation
            and (bool(error) or self.table.cancel_settled(order_id))
        ) or await self.ob.settle(generation)
        notice = self.table.cancel_done(order_id, (not error) if settled else None)
        if notice is not None:
            # Someone else (a clear) cancelled it first: the owner hears of it,
            # right after this answer on this connection.
            self.app.push_cancelled([notice])
        if error:
            return translate.cancel_error(request_id, _order_book_error(error))
        return translate.cancel_response(request_id, response.cancelled_quantity)

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
        return self._amend_known(session, request, instrument)

    def _amend_known(self, session: Session, request: Any, instrument: Instrument) -> Reply:
        request_id = request.request_id
        ticks = to_ticks(request.price, instrument.tick_size)
        if isinstance(ticks, PriceError):
            return translate.amend_error(request_id, ticks.message)
        if not self.ob.ready:
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
        if not self.app.save(ticket):
            return translate.amend_error(request_id, NOT_SAVED)
        answer = self._forward(
            ticket,
            translate.AMEND,
            translate.order_book_amend(request, instrument.order_book_id, user),
        )
        if answer is None:
            return translate.amend_error(request_id, UNAVAILABLE)
        return self.app.track(
            self._amend_settle(answer, ticket, request, ticks, self.ob.generation)
        )

    async def _amend_settle(
        self,
        answer: asyncio.Future[Any],
        ticket: Ticket,
        request: Any,
        price_ticks: int,
        generation: int,
    ) -> Message:
        response, failed = await self._accepted(
            answer, ticket, request.request_id, translate.amend_error, LOST_AMEND
        )
        if failed is not None:
            return failed
        if not (
            self.ob.generation == generation
            and self.table.amend_settled(
                request.order_id, price_ticks, response.resting_quantity, response.trade_ids
            )
        ):
            await self.ob.settle(generation)
        self.engine.release(ticket)
        return translate.amend_response(request.request_id, response)

    # ------------------------------------------------------------------ helpers

    async def _accepted(
        self,
        answer: asyncio.Future[Any],
        ticket: Ticket,
        request_id: int,
        error: Callable[[int, str], Message],
        lost: str,
    ) -> tuple[Any, Message | None]:
        """The Order Book's answer to a forwarded insert or amend, or the error to
        send instead (with the ticket already settled): one place for what every
        forwarded order request does when it fails."""
        engine = self.engine
        try:
            response = await answer
        except ConnectionLost:
            # Forwarded, fate unknown: keep it in the windows (it may exist).
            engine.release(ticket)
            return None, error(request_id, lost)
        except RemoteError as exc:
            text = str(exc)
        else:
            if not response.error_message:
                return response, None
            # A refusal causes no events: nothing to wait for.
            text = _order_book_error(response.error_message)
        engine.refund(ticket, message=False)
        self.app.save_quietly()
        return None, error(request_id, text)

    def _forward(
        self, ticket: Ticket, message_type: int, message: Message
    ) -> asyncio.Future[Any] | None:
        """Send to the Order Book; None (and the ticket refunded) if nothing left.

        Nothing leaves once the Gateway is stopping (a request that was waiting
        for Info gets here late): its answer could no longer reach the client.
        """
        if self.app.stopping:
            self.engine.refund(ticket, message=True)
            self.app.save_quietly()
            return None
        answer = self.ob.request_raw(message_type, message)
        if answer.done() and answer.exception() is not None:
            self.engine.refund(ticket, message=True)
            self.app.save_quietly()
            return None
        return answer

    def _after_info(
        self,
        session: Session,
        request: Any,
        then: Callable[[Session, Any, Instrument], Reply],
        error: Callable[[int, str], Message],
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
            reply = then(session, request, instrument)
            return reply if isinstance(reply, Message) else await reply

        return recheck()

    def _again(
        self,
        pending: asyncio.Future[None],
        handler: Callable[[Session, Any], Reply],
        session: Session,
        request: Any,
    ) -> Awaitable[Message]:
        async def wait_then_handle() -> Message:
            await asyncio.shield(pending)
            reply = handler(session, request)
            return reply if isinstance(reply, Message) else await reply

        return wait_then_handle()


def _order_book_error(error: str) -> str:
    """Order Book error texts in the Gateway's terms (symbols, not book ids)."""
    if error.startswith("unknown order book"):
        return UNKNOWN_INSTRUMENT
    if error.startswith("unknown order"):
        return UNKNOWN_ORDER
    return error
