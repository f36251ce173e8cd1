"""The one table from ``MessageType`` numbers to protobuf message classes.

PROTOCOL.md section 4 in code: which class each frame type carries, which
response answers which request, and the names used in error messages.  A test
checks this table against the protocol document, so services and clients can
trust it blindly.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from services.common.pb import (
    admin_pb2,
    common_pb2,
    execution_pb2,
    info_pb2,
    order_book_pb2,
    risk_limits_pb2,
)

MT = common_pb2.MessageType

MESSAGE_CLASSES: Final[dict[int, type[Message]]] = {
    MT.LOGIN_REQUEST: common_pb2.LoginRequest,
    MT.LOGIN_RESPONSE: common_pb2.LoginResponse,
    MT.ON_ERROR: common_pb2.OnError,
    MT.HEARTBEAT: common_pb2.Heartbeat,
    MT.ORDER_BOOK_INSERT_ORDER_REQUEST: order_book_pb2.InsertOrderRequest,
    MT.ORDER_BOOK_INSERT_ORDER_RESPONSE: order_book_pb2.InsertOrderResponse,
    MT.ORDER_BOOK_CANCEL_ORDER_REQUEST: order_book_pb2.CancelOrderRequest,
    MT.ORDER_BOOK_CANCEL_ORDER_RESPONSE: order_book_pb2.CancelOrderResponse,
    MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED: order_book_pb2.OnOrderBookCreated,
    MT.ORDER_BOOK_ON_ORDER_INSERTED: order_book_pb2.OnOrderInserted,
    MT.ORDER_BOOK_ON_ORDER_CANCELLED: order_book_pb2.OnOrderCancelled,
    MT.ORDER_BOOK_ON_TRADE: order_book_pb2.OnTrade,
    MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED: order_book_pb2.OnOrderBookDeleted,
    MT.ORDER_BOOK_ON_ORDER_AMENDED: order_book_pb2.OnOrderAmended,
    MT.INFO_ON_INSTRUMENT: info_pb2.OnInstrument,
    MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST: info_pb2.OrderBookSubscribeRequest,
    MT.INFO_ORDER_BOOK_SUBSCRIBE_RESPONSE: info_pb2.OrderBookSubscribeResponse,
    MT.INFO_ON_TOP_OF_BOOK: info_pb2.OnTopOfBook,
    MT.INFO_ON_PRICE_DEPTH_BOOK: info_pb2.OnPriceDepthBook,
    MT.INFO_ON_TRADE: info_pb2.OnTrade,
    MT.INFO_ORDER_BOOK_UNSUBSCRIBE_REQUEST: info_pb2.OrderBookUnsubscribeRequest,
    MT.INFO_ORDER_BOOK_UNSUBSCRIBE_RESPONSE: info_pb2.OrderBookUnsubscribeResponse,
    MT.INFO_ON_INSTRUMENT_DELETED: info_pb2.OnInstrumentDeleted,
    MT.ADMIN_CREATE_INSTRUMENT_REQUEST: admin_pb2.CreateInstrumentRequest,
    MT.ADMIN_CREATE_INSTRUMENT_RESPONSE: admin_pb2.CreateInstrumentResponse,
    MT.ADMIN_DELETE_INSTRUMENT_REQUEST: admin_pb2.DeleteInstrumentRequest,
    MT.ADMIN_DELETE_INSTRUMENT_RESPONSE: admin_pb2.DeleteInstrumentResponse,
    MT.ADMIN_LIST_INSTRUMENTS_REQUEST: admin_pb2.ListInstrumentsRequest,
    MT.ADMIN_LIST_INSTRUMENTS_RESPONSE: admin_pb2.ListInstrumentsResponse,
    MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST: admin_pb2.ClearOrderBookRequest,
    MT.ADMIN_CLEAR_ORDER_BOOK_RESPONSE: admin_pb2.ClearOrderBookResponse,
    MT.ADMIN_GET_EXCHANGE_STATS_REQUEST: admin_pb2.GetExchangeStatsRequest,
    MT.ADMIN_GET_EXCHANGE_STATS_RESPONSE: admin_pb2.GetExchangeStatsResponse,
    MT.EXECUTION_INSERT_ORDER_REQUEST: execution_pb2.InsertOrderRequest,
    MT.EXECUTION_INSERT_ORDER_RESPONSE: execution_pb2.InsertOrderResponse,
    MT.EXECUTION_CANCEL_ORDER_REQUEST: execution_pb2.CancelOrderRequest,
    MT.EXECUTION_CANCEL_ORDER_RESPONSE: execution_pb2.CancelOrderResponse,
    MT.EXECUTION_ON_FILL: execution_pb2.OnFill,
    MT.EXECUTION_ON_ORDER_CANCELLED: execution_pb2.OnOrderCancelled,
    MT.EXECUTION_AMEND_ORDER_REQUEST: execution_pb2.AmendOrderRequest,
    MT.EXECUTION_AMEND_ORDER_RESPONSE: execution_pb2.AmendOrderResponse,
    MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST: risk_limits_pb2.GetUserRiskLimitsRequest,
    MT.RISK_LIMITS_GET_USER_RISK_LIMITS_RESPONSE: risk_limits_pb2.GetUserRiskLimitsResponse,
    MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST: risk_limits_pb2.SetUserRiskLimitsRequest,
    MT.RISK_LIMITS_SET_USER_RISK_LIMITS_RESPONSE: risk_limits_pb2.SetUserRiskLimitsResponse,
    MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST: risk_limits_pb2.GetInstrumentRiskLimitsRequest,
    MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_RESPONSE: risk_limits_pb2.GetInstrumentRiskLimitsResponse,
    MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST: risk_limits_pb2.SetInstrumentRiskLimitsRequest,
    MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_RESPONSE: risk_limits_pb2.SetInstrumentRiskLimitsResponse,
    MT.INFO_QUOTES_REQUEST: info_pb2.QuotesRequest,
    MT.INFO_QUOTES_RESPONSE: info_pb2.QuotesResponse,
    MT.ORDER_BOOK_AMEND_ORDER_REQUEST: order_book_pb2.AmendOrderRequest,
    MT.ORDER_BOOK_AMEND_ORDER_RESPONSE: order_book_pb2.AmendOrderResponse,
    MT.INFO_CREATE_INSTRUMENT_REQUEST: info_pb2.CreateInstrumentRequest,
    MT.INFO_CREATE_INSTRUMENT_RESPONSE: info_pb2.CreateInstrumentResponse,
    MT.INFO_DELETE_INSTRUMENT_REQUEST: info_pb2.DeleteInstrumentRequest,
    MT.INFO_DELETE_INSTRUMENT_RESPONSE: info_pb2.DeleteInstrumentResponse,
    MT.ORDER_BOOK_CREATE_REQUEST: order_book_pb2.CreateOrderBookRequest,
    MT.ORDER_BOOK_CREATE_RESPONSE: order_book_pb2.CreateOrderBookResponse,
    MT.ORDER_BOOK_DELETE_REQUEST: order_book_pb2.DeleteOrderBookRequest,
    MT.ORDER_BOOK_DELETE_RESPONSE: order_book_pb2.DeleteOrderBookResponse,
    MT.ORDER_BOOK_CLEAR_REQUEST: order_book_pb2.ClearOrderBookRequest,
    MT.ORDER_BOOK_CLEAR_RESPONSE: order_book_pb2.ClearOrderBookResponse,
    # Optivex extension, internal range (docs/protocol-notes.md).
    MT.ORDER_BOOK_GET_STATS_REQUEST: order_book_pb2.GetStatsRequest,
    MT.ORDER_BOOK_GET_STATS_RESPONSE: order_book_pb2.GetStatsResponse,
}

MESSAGE_TYPES: Final[dict[type[Message], int]] = {cls: t for t, cls in MESSAGE_CLASSES.items()}
"""Reverse table: the frame type that carries a message class."""

TYPE_NAMES: Final[dict[int, str]] = {int(number): name for name, number in MT.items()}
"""``MessageType`` number to its protocol name."""

RESPONSE_TYPE: Final[dict[int, int]] = {
    t: t + 1
    for t in MESSAGE_CLASSES
    if TYPE_NAMES[t].endswith("_REQUEST") and TYPE_NAMES.get(t + 1, "").endswith("_RESPONSE")
}
"""Every request type and the type of its response (always the next number)."""

RESPONSE_TYPES: Final[frozenset[int]] = frozenset(RESPONSE_TYPE.values())


def type_name(message_type: int) -> str:
    """Protocol name of ``message_type``, or ``UNKNOWN(n)`` for unlisted numbers."""
    return TYPE_NAMES.get(message_type) or f"UNKNOWN({message_type})"


def message_type_of(message: Message) -> int:
    """The frame type of ``message`` (raises ``KeyError`` for a foreign class)."""
    return MESSAGE_TYPES[type(message)]
