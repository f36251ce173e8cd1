"""PROTOCOL.md section 4: ``message_type`` number -> message class, by hand.

The table is typed in from the contract rather than derived from the generated
``MessageType`` enum, so a wrong number in a ``.proto`` file would show up as a
disagreement (the self-tests compare the two) instead of being trusted twice.
"""

from __future__ import annotations

from google.protobuf.message import Message

from system_tests.pb import (
    admin_pb2,
    common_pb2,
    execution_pb2,
    info_pb2,
    order_book_pb2,
    risk_limits_pb2,
)

LOGIN_REQUEST = 0
LOGIN_RESPONSE = 1
ON_ERROR = 2
HEARTBEAT = 3

TYPES: dict[int, tuple[str, type[Message]]] = {
    0: ("LOGIN_REQUEST", common_pb2.LoginRequest),
    1: ("LOGIN_RESPONSE", common_pb2.LoginResponse),
    2: ("ON_ERROR", common_pb2.OnError),
    3: ("HEARTBEAT", common_pb2.Heartbeat),
    10: ("ORDER_BOOK_INSERT_ORDER_REQUEST", order_book_pb2.InsertOrderRequest),
    11: ("ORDER_BOOK_INSERT_ORDER_RESPONSE", order_book_pb2.InsertOrderResponse),
    12: ("ORDER_BOOK_CANCEL_ORDER_REQUEST", order_book_pb2.CancelOrderRequest),
    13: ("ORDER_BOOK_CANCEL_ORDER_RESPONSE", order_book_pb2.CancelOrderResponse),
    14: ("ORDER_BOOK_ON_ORDER_BOOK_CREATED", order_book_pb2.OnOrderBookCreated),
    15: ("ORDER_BOOK_ON_ORDER_INSERTED", order_book_pb2.OnOrderInserted),
    16: ("ORDER_BOOK_ON_ORDER_CANCELLED", order_book_pb2.OnOrderCancelled),
    17: ("ORDER_BOOK_ON_TRADE", order_book_pb2.OnTrade),
    18: ("ORDER_BOOK_ON_ORDER_BOOK_DELETED", order_book_pb2.OnOrderBookDeleted),
    19: ("ORDER_BOOK_ON_ORDER_AMENDED", order_book_pb2.OnOrderAmended),
    20: ("INFO_ON_INSTRUMENT", info_pb2.OnInstrument),
    21: ("INFO_ORDER_BOOK_SUBSCRIBE_REQUEST", info_pb2.OrderBookSubscribeRequest),
    22: ("INFO_ORDER_BOOK_SUBSCRIBE_RESPONSE", info_pb2.OrderBookSubscribeResponse),
    23: ("INFO_ON_TOP_OF_BOOK", info_pb2.OnTopOfBook),
    24: ("INFO_ON_PRICE_DEPTH_BOOK", info_pb2.OnPriceDepthBook),
    25: ("INFO_ON_TRADE", info_pb2.OnTrade),
    26: ("INFO_ORDER_BOOK_UNSUBSCRIBE_REQUEST", info_pb2.OrderBookUnsubscribeRequest),
    27: ("INFO_ORDER_BOOK_UNSUBSCRIBE_RESPONSE", info_pb2.OrderBookUnsubscribeResponse),
    28: ("INFO_ON_INSTRUMENT_DELETED", info_pb2.OnInstrumentDeleted),
    30: ("ADMIN_CREATE_INSTRUMENT_REQUEST", admin_pb2.CreateInstrumentRequest),
    31: ("ADMIN_CREATE_INSTRUMENT_RESPONSE", admin_pb2.CreateInstrumentResponse),
    32: ("ADMIN_DELETE_INSTRUMENT_REQUEST", admin_pb2.DeleteInstrumentRequest),
    33: ("ADMIN_DELETE_INSTRUMENT_RESPONSE", admin_pb2.DeleteInstrumentResponse),
    34: ("ADMIN_LIST_INSTRUMENTS_REQUEST", admin_pb2.ListInstrumentsRequest),
    35: ("ADMIN_LIST_INSTRUMENTS_RESPONSE", admin_pb2.ListInstrumentsResponse),
    36: ("ADMIN_CLEAR_ORDER_BOOK_REQUEST", admin_pb2.ClearOrderBookRequest),
    37: ("ADMIN_CLEAR_ORDER_BOOK_RESPONSE", admin_pb2.ClearOrderBookResponse),
    38: ("ADMIN_GET_EXCHANGE_STATS_REQUEST", admin_pb2.GetExchangeStatsRequest),
    39: ("ADMIN_GET_EXCHANGE_STATS_RESPONSE", admin_pb2.GetExchangeStatsResponse),
    40: ("EXECUTION_INSERT_ORDER_REQUEST", execution_pb2.InsertOrderRequest),
    41: ("EXECUTION_INSERT_ORDER_RESPONSE", execution_pb2.InsertOrderResponse),
    42: ("EXECUTION_CANCEL_ORDER_REQUEST", execution_pb2.CancelOrderRequest),
    43: ("EXECUTION_CANCEL_ORDER_RESPONSE", execution_pb2.CancelOrderResponse),
    44: ("EXECUTION_ON_FILL", execution_pb2.OnFill),
    45: ("EXECUTION_ON_ORDER_CANCELLED", execution_pb2.OnOrderCancelled),
    46: ("EXECUTION_AMEND_ORDER_REQUEST", execution_pb2.AmendOrderRequest),
    47: ("EXECUTION_AMEND_ORDER_RESPONSE", execution_pb2.AmendOrderResponse),
    50: ("RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST", risk_limits_pb2.GetUserRiskLimitsRequest),
    51: ("RISK_LIMITS_GET_USER_RISK_LIMITS_RESPONSE", risk_limits_pb2.GetUserRiskLimitsResponse),
    52: ("RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST", risk_limits_pb2.SetUserRiskLimitsRequest),
    53: ("RISK_LIMITS_SET_USER_RISK_LIMITS_RESPONSE", risk_limits_pb2.SetUserRiskLimitsResponse),
    54: (
        "RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST",
        risk_limits_pb2.GetInstrumentRiskLimitsRequest,
    ),
    55: (
        "RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_RESPONSE",
        risk_limits_pb2.GetInstrumentRiskLimitsResponse,
    ),
    56: (
        "RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST",
        risk_limits_pb2.SetInstrumentRiskLimitsRequest,
    ),
    57: (
        "RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_RESPONSE",
        risk_limits_pb2.SetInstrumentRiskLimitsResponse,
    ),
    60: ("INFO_QUOTES_REQUEST", info_pb2.QuotesRequest),
    61: ("INFO_QUOTES_RESPONSE", info_pb2.QuotesResponse),
    62: ("ORDER_BOOK_AMEND_ORDER_REQUEST", order_book_pb2.AmendOrderRequest),
    63: ("ORDER_BOOK_AMEND_ORDER_RESPONSE", order_book_pb2.AmendOrderResponse),
    130: ("INFO_CREATE_INSTRUMENT_REQUEST", info_pb2.CreateInstrumentRequest),
    131: ("INFO_CREATE_INSTRUMENT_RESPONSE", info_pb2.CreateInstrumentResponse),
    132: ("INFO_DELETE_INSTRUMENT_REQUEST", info_pb2.DeleteInstrumentRequest),
    133: ("INFO_DELETE_INSTRUMENT_RESPONSE", info_pb2.DeleteInstrumentResponse),
    140: ("ORDER_BOOK_CREATE_REQUEST", order_book_pb2.CreateOrderBookRequest),
    141: ("ORDER_BOOK_CREATE_RESPONSE", order_book_pb2.CreateOrderBookResponse),
    142: ("ORDER_BOOK_DELETE_REQUEST", order_book_pb2.DeleteOrderBookRequest),
    143: ("ORDER_BOOK_DELETE_RESPONSE", order_book_pb2.DeleteOrderBookResponse),
    144: ("ORDER_BOOK_CLEAR_REQUEST", order_book_pb2.ClearOrderBookRequest),
    145: ("ORDER_BOOK_CLEAR_RESPONSE", order_book_pb2.ClearOrderBookResponse),
}

# Every request above is answered by the next number (PROTOCOL.md section 4 pairs them).
RESPONSE_OF: dict[int, int] = {
    request: request + 1
    for request, (name, _) in TYPES.items()
    if name.endswith("_REQUEST") and request + 1 in TYPES
}

_TYPE_OF_CLASS: dict[type[Message], int] = {cls: number for number, (_, cls) in TYPES.items()}


def type_of(message: Message) -> int:
    """The ``message_type`` that carries ``message`` (classes are unique per type)."""
    try:
        return _TYPE_OF_CLASS[type(message)]
    except KeyError:
        raise KeyError(f"{type(message).__name__} has no message type in the contract") from None


def name_of(message_type: int) -> str:
    """Contract name of a type number, or ``type <n>`` for numbers outside it."""
    entry = TYPES.get(message_type)
    return entry[0] if entry else f"type {message_type}"


def parse(message_type: int, payload: bytes) -> Message | None:
    """The payload as its contract message, or None (unknown type, does not parse)."""
    entry = TYPES.get(message_type)
    if entry is None:
        return None
    try:
        return entry[1].FromString(payload)
    except Exception:  # protobuf's DecodeError and friends: report, do not crash
        return None
