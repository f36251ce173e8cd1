"""Where protobuf meets the Gateway's domain, in both directions.

The pure modules (limits, windows, orders, instruments, coids) take and return
plain values; the handlers deal in protobuf. This module is the one place the
two meet: limit messages to and from limit values, Order Book events into the
order table, responses and pushes out to participants.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from services.common.pb import common_pb2, execution_pb2, order_book_pb2, risk_limits_pb2
from services.common.wire.framing import encode_frame
from services.risk_gateway.coids import Outcome
from services.risk_gateway.limits import InstrumentLimits, RollingLimit, UserLimits
from services.risk_gateway.orders import Cancelled, Fill, OrderTable

MT = common_pb2.MessageType
INSERT: Final = MT.ORDER_BOOK_INSERT_ORDER_REQUEST
CANCEL: Final = MT.ORDER_BOOK_CANCEL_ORDER_REQUEST
AMEND: Final = MT.ORDER_BOOK_AMEND_ORDER_REQUEST
STATS: Final = MT.ORDER_BOOK_GET_STATS_REQUEST
QUOTES: Final = MT.INFO_QUOTES_REQUEST

ON_BOOK_CREATED: Final = MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED
ON_INSERTED: Final = MT.ORDER_BOOK_ON_ORDER_INSERTED
ON_CANCELLED: Final = MT.ORDER_BOOK_ON_ORDER_CANCELLED
ON_TRADE: Final = MT.ORDER_BOOK_ON_TRADE
ON_BOOK_DELETED: Final = MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED
ON_AMENDED: Final = MT.ORDER_BOOK_ON_ORDER_AMENDED
ON_INSTRUMENT: Final = MT.INFO_ON_INSTRUMENT
ON_INSTRUMENT_DELETED: Final = MT.INFO_ON_INSTRUMENT_DELETED

ON_FILL: Final = MT.EXECUTION_ON_FILL
ON_ORDER_CANCELLED: Final = MT.EXECUTION_ON_ORDER_CANCELLED

ex = execution_pb2
rl = risk_limits_pb2


# ---------------------------------------------------------------------- limits


def _rolling_from_pb(message: Any) -> RollingLimit:
    return RollingLimit(int(message.limit), int(message.window_in_seconds))


def _rolling_to_pb(value: RollingLimit, parent: Any, field: str) -> None:
    """Set ``parent.<field>`` to ``value``, leaving it absent when both are 0.

    Why absent: a Get must read back the layer as it was set. Assigning even a
    zero to a sub-message's field makes the sub-message present (an empty
    ``RollingWindowLimit`` on the wire), so a layer set without a rolling limit
    would come back unequal to the message that set it. An unset window and an
    all-zero one mean the same ("no limit"), and unset is how clients say it.
    """
    if value.limit or value.window_s:
        message = getattr(parent, field)
        message.limit = value.limit
        message.window_in_seconds = value.window_s


def user_limits_from_pb(message: Any) -> UserLimits:
    return UserLimits(
        int(message.max_outstanding_quantity),
        _rolling_from_pb(message.message_rate_rolling_limit),
    )


def user_limits_to_pb(limits: UserLimits, message: Any) -> None:
    message.SetInParent()
    message.max_outstanding_quantity = limits.max_outstanding_quantity
    _rolling_to_pb(limits.message_rate_rolling_limit, message, "message_rate_rolling_limit")


def instrument_limits_from_pb(message: Any) -> InstrumentLimits:
    return InstrumentLimits(
        int(message.max_outstanding_quantity),
        float(message.max_outstanding_amount),
        _rolling_from_pb(message.order_quantity_rolling_limit),
        _rolling_from_pb(message.order_amount_rolling_limit),
    )


def instrument_limits_to_pb(limits: InstrumentLimits, message: Any) -> None:
    message.max_outstanding_quantity = limits.max_outstanding_quantity
    message.max_outstanding_amount = limits.max_outstanding_amount
    _rolling_to_pb(limits.order_quantity_rolling_limit, message, "order_quantity_rolling_limit")
    _rolling_to_pb(limits.order_amount_rolling_limit, message, "order_amount_rolling_limit")


# ---------------------------------------------------------------------- the event stream


class EventEffect(NamedTuple):
    """What one Order Book event means to the Gateway."""

    in_sequence: bool
    fills: list[Fill]
    cancelled: Cancelled | None
    deleted_book: int


NOTHING: Final = EventEffect(True, [], None, 0)
"""The effect of most events (the table changed, nobody is told)."""
_GAP: Final = EventEffect(False, [], None, 0)


def apply_event(table: OrderTable, message_type: int, m: Any) -> EventEffect:
    """Feed one Order Book push into the order table.

    Every event of the Order Book comes through here (1.5-2 per order), so the
    common outcome is the shared :data:`NOTHING` (the caller tests identity),
    the sequence check is inline, and the likeliest types are tested first.
    """
    number = m.sequence_number
    last = table.last_sequence
    if number:
        if last and number != last + 1:
            return _GAP
        table.last_sequence = number
    elif last:
        return _GAP  # snapshot messages come before live ones
    if message_type == ON_INSERTED:
        table.inserted(
            m.order_id,
            m.order_book_id,
            m.side,
            m.price,
            m.quantity,
            m.username,
            m.time_in_force,
            not number,
        )
        return NOTHING
    if message_type == ON_TRADE:
        fills = table.trade(
            m.trade_id,
            m.buy_order_id,
            m.sell_order_id,
            m.price,
            m.aggressor_price,
            m.quantity,
            m.aggressor_side,
            m.timestamp,
        )
        return EventEffect(True, fills, None, 0) if fills else NOTHING
    if message_type == ON_CANCELLED:
        notice = table.cancelled(m.order_id, m.cancelled_quantity, m.cancellation_timestamp)
        if notice is not None:
            return EventEffect(True, [], notice, 0)
    elif message_type == ON_AMENDED:
        table.amended(m.order_id, m.price, m.quantity)
    elif message_type == ON_BOOK_CREATED:
        table.book_created(m.order_book_id, m.tick_size)
    elif message_type == ON_BOOK_DELETED:
        table.book_deleted(m.order_book_id)
        return EventEffect(True, [], None, m.order_book_id)
    return NOTHING


# ---------------------------------------------------------------------- requests upstream


def order_book_insert(
    request: Any, order_book_id: int, username: str
) -> order_book_pb2.InsertOrderRequest:
    return order_book_pb2.InsertOrderRequest(
        order_book_id=order_book_id,
        side=request.side,
        price=request.price,
        quantity=request.quantity,
        time_in_force=request.time_in_force,
        client_order_id=request.client_order_id,
        on_behalf_of_username=username,
    )


def order_book_cancel(
    order_book_id: int, order_id: int, username: str
) -> order_book_pb2.CancelOrderRequest:
    return order_book_pb2.CancelOrderRequest(
        order_book_id=order_book_id, order_id=order_id, on_behalf_of_username=username
    )


def order_book_amend(
    request: Any, order_book_id: int, username: str
) -> order_book_pb2.AmendOrderRequest:
    return order_book_pb2.AmendOrderRequest(
        order_book_id=order_book_id,
        order_id=request.order_id,
        price=request.price,
        quantity=request.quantity,
        on_behalf_of_username=username,
    )


# ---------------------------------------------------------------------- answers


def outcome_of(response: Any) -> Outcome:
    return Outcome(
        response.order_id,
        response.timestamp,
        tuple(response.trade_ids),
        response.traded_quantity,
        response.resting_quantity,
    )


def insert_response(request_id: int, outcome: Outcome) -> execution_pb2.InsertOrderResponse:
    return ex.InsertOrderResponse(
        request_id=request_id,
        order_id=outcome.order_id,
        timestamp=outcome.timestamp,
        trade_ids=outcome.trade_ids,
        traded_quantity=outcome.traded_quantity,
        resting_quantity=outcome.resting_quantity,
    )


def insert_error(request_id: int, error: str) -> execution_pb2.InsertOrderResponse:
    return ex.InsertOrderResponse(request_id=request_id, error_message=error)


def cancel_error(request_id: int, error: str) -> execution_pb2.CancelOrderResponse:
    return ex.CancelOrderResponse(request_id=request_id, error_message=error)


def amend_error(request_id: int, error: str) -> execution_pb2.AmendOrderResponse:
    return ex.AmendOrderResponse(request_id=request_id, error_message=error)


# ---------------------------------------------------------------------- pushes


def fill_frame(fill: Fill, symbol: str) -> bytes:
    message = ex.OnFill(
        order_id=fill.order_id,
        instrument_symbol=symbol,
        trade_id=fill.trade_id,
        side=fill.side,  # type: ignore[arg-type]
        price=fill.price,
        quantity=fill.quantity,
        remaining_quantity=fill.remaining,
        timestamp=fill.timestamp,
    )
    return encode_frame(ON_FILL, message.SerializeToString())


def cancelled_frame(notice: Cancelled, symbol: str, reason: str) -> bytes:
    message = ex.OnOrderCancelled(
        order_id=notice.order_id,
        instrument_symbol=symbol,
        cancelled_quantity=notice.quantity,
        reason=reason,
        timestamp=notice.timestamp,
    )
    return encode_frame(ON_ORDER_CANCELLED, message.SerializeToString())
