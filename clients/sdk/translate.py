"""The one place where protobuf messages become SDK values and back.

Everything else in the SDK speaks :mod:`clients.sdk.types`; keeping the
conversion here means a protocol change touches one file.
"""

from __future__ import annotations

from typing import Any

from clients.sdk.types import (
    AmendResult,
    Cancel,
    Depth,
    Fill,
    Instrument,
    InstrumentLimits,
    Level,
    OrderResult,
    PriceRule,
    Quote,
    RollingWindow,
    Side,
    TimeInForce,
    TopOfBook,
    Trade,
    UserLimits,
)
from services.common.pb import common_pb2, execution_pb2, info_pb2, risk_limits_pb2

_SIDE_TO_PB = {Side.BUY: common_pb2.BUY, Side.SELL: common_pb2.SELL}
_SIDE_FROM_PB: dict[int, Side] = {common_pb2.BUY: Side.BUY, common_pb2.SELL: Side.SELL}
_TIF_TO_PB = {
    TimeInForce.GTC: common_pb2.GOOD_TILL_CANCEL,
    TimeInForce.IOC: common_pb2.IMMEDIATE_OR_CANCEL,
    TimeInForce.FOK: common_pb2.FILL_OR_KILL,
}
_RULE_FROM_PB: dict[int, PriceRule] = {
    common_pb2.RESTING_ORDER_PRICE: PriceRule.RESTING_ORDER_PRICE,
    common_pb2.SPREAD_CAPTURE: PriceRule.SPREAD_CAPTURE,
}


def side_to_pb(side: Side) -> Any:
    return _SIDE_TO_PB[side]


def side_from_pb(value: int) -> Side:
    return _SIDE_FROM_PB.get(int(value), Side.BUY)


# ------------------------------------------------------------------ execution


def insert_request(
    symbol: str,
    side: Side,
    price: float,
    quantity: int,
    tif: TimeInForce,
    client_order_id: str,
) -> execution_pb2.InsertOrderRequest:
    return execution_pb2.InsertOrderRequest(
        instrument_symbol=symbol,
        side=_SIDE_TO_PB[side],
        price=price,
        quantity=quantity,
        time_in_force=_TIF_TO_PB[tif],
        client_order_id=client_order_id,
    )


def order_result(
    request: execution_pb2.InsertOrderRequest, response: execution_pb2.InsertOrderResponse
) -> OrderResult:
    return OrderResult(
        order_id=response.order_id,
        symbol=request.instrument_symbol,
        side=side_from_pb(request.side),
        price=request.price,
        quantity=request.quantity,
        traded_quantity=response.traded_quantity,
        resting_quantity=response.resting_quantity,
        trade_ids=tuple(response.trade_ids),
        timestamp=response.timestamp,
        client_order_id=request.client_order_id,
    )


def amend_result(
    request: execution_pb2.AmendOrderRequest, response: execution_pb2.AmendOrderResponse
) -> AmendResult:
    return AmendResult(
        order_id=request.order_id,
        symbol=request.instrument_symbol,
        price=request.price,
        quantity=request.quantity,
        traded_quantity=response.traded_quantity,
        resting_quantity=response.resting_quantity,
        trade_ids=tuple(response.trade_ids),
        timestamp=response.timestamp,
    )


def fill(message: execution_pb2.OnFill) -> Fill:
    return Fill(
        order_id=message.order_id,
        symbol=message.instrument_symbol,
        trade_id=message.trade_id,
        side=side_from_pb(message.side),
        price=message.price,
        quantity=message.quantity,
        remaining_quantity=message.remaining_quantity,
        timestamp=message.timestamp,
    )


def cancel(message: execution_pb2.OnOrderCancelled) -> Cancel:
    return Cancel(
        order_id=message.order_id,
        symbol=message.instrument_symbol,
        cancelled_quantity=message.cancelled_quantity,
        reason=message.reason,
        timestamp=message.timestamp,
    )


# ------------------------------------------------------------------ market data


def instrument(message: info_pb2.OnInstrument) -> Instrument:
    inner = message.instrument
    return Instrument(
        symbol=inner.symbol,
        tick_size=message.tick_size,
        order_book_id=message.order_book_id,
        description=inner.description,
        currency=inner.currency,
        multiplier=inner.multiplier,
        price_rule=_RULE_FROM_PB.get(int(message.price_rule), PriceRule.RESTING_ORDER_PRICE),
        created_timestamp=message.created_timestamp,
    )


def _level(message: info_pb2.PriceLevel) -> Level:
    return Level(message.price, message.quantity)


def top_of_book(message: info_pb2.OnTopOfBook) -> TopOfBook:
    return TopOfBook(
        symbol=message.instrument_symbol,
        bid=_level(message.best_bid) if message.HasField("best_bid") else None,
        ask=_level(message.best_ask) if message.HasField("best_ask") else None,
        timestamp=message.timestamp,
        sequence_number=message.sequence_number,
    )


def depth(message: info_pb2.OnPriceDepthBook) -> Depth:
    return Depth(
        symbol=message.instrument_symbol,
        bids=tuple(_level(level) for level in message.bids),
        asks=tuple(_level(level) for level in message.asks),
        timestamp=message.timestamp,
        sequence_number=message.sequence_number,
    )


def trade(message: info_pb2.OnTrade) -> Trade:
    return Trade(
        trade_id=message.trade_id,
        symbol=message.instrument_symbol,
        price=message.price,
        quantity=message.quantity,
        aggressor_side=side_from_pb(message.aggressor_side),
        timestamp=message.timestamp,
        sequence_number=message.sequence_number,
    )


def quote(message: info_pb2.Quote) -> Quote:
    return Quote(
        symbol=message.instrument_symbol,
        last_price=message.last_trade_price,
        last_quantity=message.last_trade_quantity,
        last_timestamp=message.last_trade_timestamp,
        volume=message.traded_volume,
    )


# ------------------------------------------------------------------ risk limits


def _window_to_pb(window: RollingWindow) -> risk_limits_pb2.RollingWindowLimit:
    return risk_limits_pb2.RollingWindowLimit(limit=window.limit, window_in_seconds=window.window_s)


def _window(message: risk_limits_pb2.RollingWindowLimit) -> RollingWindow:
    return RollingWindow(message.limit, message.window_in_seconds)


def user_limits_to_pb(limits: UserLimits) -> risk_limits_pb2.UserRiskLimits:
    return risk_limits_pb2.UserRiskLimits(
        max_outstanding_quantity=limits.max_outstanding_quantity,
        message_rate_rolling_limit=_window_to_pb(limits.message_rate),
    )


def user_limits(message: risk_limits_pb2.UserRiskLimits) -> UserLimits:
    return UserLimits(
        max_outstanding_quantity=message.max_outstanding_quantity,
        message_rate=_window(message.message_rate_rolling_limit),
    )


def instrument_limits_to_pb(limits: InstrumentLimits) -> risk_limits_pb2.InstrumentRiskLimits:
    return risk_limits_pb2.InstrumentRiskLimits(
        max_outstanding_quantity=limits.max_outstanding_quantity,
        max_outstanding_amount=limits.max_outstanding_amount,
        order_quantity_rolling_limit=_window_to_pb(limits.order_quantity),
        order_amount_rolling_limit=_window_to_pb(limits.order_amount),
    )


def instrument_limits(message: risk_limits_pb2.InstrumentRiskLimits) -> InstrumentLimits:
    return InstrumentLimits(
        max_outstanding_quantity=message.max_outstanding_quantity,
        max_outstanding_amount=message.max_outstanding_amount,
        order_quantity=_window(message.order_quantity_rolling_limit),
        order_amount=_window(message.order_amount_rolling_limit),
    )
