"""Domain vocabulary of the matching engine: constants, events and command results.

Why NamedTuples: the engine creates one or more of these per message, millions per
second. A NamedTuple is a plain tuple underneath (compact, immutable, hashable,
comparable), and the engine builds them with ``tuple.__new__(Cls, (...))``, which
skips the Python-level ``__new__`` and costs about as much as a bare tuple.

Field names and meanings mirror PROTOCOL.md section 5 (``order_book``) with two
deliberate differences: prices are integer ticks (``price_ticks``; the service's
translate layer converts with ``services.common.prices.from_ticks``), and every
event carries its ``sequence_number`` first, since that is its identity in the
stream. Events are past tense; commands are the engine's methods.

Constants use the numbers of the protobuf enums, but are defined here so that the
pure engine never imports protobuf.
"""

from __future__ import annotations

from typing import Final, NamedTuple, TypeAlias

__all__ = [
    "BUY",
    "FOK",
    "GTC",
    "IOC",
    "MAX_PRICE_TICKS",
    "MAX_QUANTITY",
    "RESTING_ORDER_PRICE",
    "SELL",
    "SPREAD_CAPTURE",
    "AmendResult",
    "BookInfo",
    "CancelReason",
    "CancelResult",
    "ClearBookResult",
    "CreateBookResult",
    "DeleteBookResult",
    "Event",
    "ExchangeStats",
    "InsertResult",
    "OnOrderAmended",
    "OnOrderBookCreated",
    "OnOrderBookDeleted",
    "OnOrderCancelled",
    "OnOrderInserted",
    "OnTrade",
    "PriceRule",
    "RestingOrder",
    "Side",
    "TimeInForce",
]


class Side:
    """Order side; numbers equal the protobuf ``Side`` enum."""

    BUY: Final = 0
    SELL: Final = 1


class TimeInForce:
    """Time in force; numbers equal the protobuf ``TimeInForce`` enum."""

    GTC: Final = 0  # GOOD_TILL_CANCEL: the remainder rests
    IOC: Final = 1  # IMMEDIATE_OR_CANCEL: the remainder is cancelled
    FOK: Final = 2  # FILL_OR_KILL: fills completely at once, or trades nothing


class PriceRule:
    """Trade-price rule of a book; numbers equal the protobuf ``PriceRule`` enum."""

    RESTING_ORDER_PRICE: Final = 0  # both sides trade at the resting order's limit
    SPREAD_CAPTURE: Final = 1  # each side trades at its own limit; the exchange keeps the gap


class CancelReason:
    """Why an order left the book without trading (an engine-side addition).

    The wire ``OnOrderCancelled`` has no reason, but the service needs one to decide
    who must be told (PROTOCOL.md: only cancels the owner did not ask for are pushed to
    the owner), so the domain event carries it.
    """

    REQUESTED: Final = 0  # a cancel command
    UNFILLED: Final = 1  # the IOC remainder or the whole unfillable FOK
    BOOK_CLEARED: Final = 2
    BOOK_DELETED: Final = 3


# Flat aliases for the hot path and for terse tests.
BUY: Final = 0
SELL: Final = 1
GTC: Final = 0
IOC: Final = 1
FOK: Final = 2
RESTING_ORDER_PRICE: Final = 0
SPREAD_CAPTURE: Final = 1

#: quantity is an int32 on the wire and must be > 0.
MAX_QUANTITY: Final = 2**31 - 1
#: Largest tick count (PROTOCOL.md section 2); see services.common.prices.
MAX_PRICE_TICKS: Final = 2**53

TradeIds: TypeAlias = tuple[int, ...]


# --------------------------------------------------------------------------- events


class OnOrderBookCreated(NamedTuple):
    """A book was created; it trades from the next event on."""

    sequence_number: int
    order_book_id: int
    timestamp: int
    tick_size: float
    price_rule: int


class OnOrderInserted(NamedTuple):
    """An insert was accepted. ``quantity`` is as inserted; ``trade_ids`` in fill order.

    Its ``OnTrade`` events follow it, then an ``OnOrderCancelled`` for an IOC/FOK
    remainder that does not rest.
    """

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    side: int
    price_ticks: int
    quantity: int
    trade_ids: TradeIds
    username: str
    time_in_force: int


class OnOrderCancelled(NamedTuple):
    """An order left the book without trading; ``cancelled_quantity`` was still open."""

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    cancelled_quantity: int
    reason: int


class OnTrade(NamedTuple):
    """One fill. ``price_ticks`` is the resting order's limit; ``aggressor_price_ticks``
    what the aggressor paid or received (equal unless the book is SPREAD_CAPTURE)."""

    sequence_number: int
    trade_id: int
    order_book_id: int
    timestamp: int
    buy_order_id: int
    sell_order_id: int
    price_ticks: int
    quantity: int
    aggressor_side: int
    aggressor_price_ticks: int


class OnOrderBookDeleted(NamedTuple):
    """A book was deleted, after an ``OnOrderCancelled`` for each of its resting orders."""

    sequence_number: int
    order_book_id: int
    timestamp: int


class OnOrderAmended(NamedTuple):
    """A resting order changed. ``quantity`` is the new remaining quantity before the
    trades it caused (``trade_ids``, whose ``OnTrade`` events follow).

    ``kept_priority`` is True only for a pure reduction at the same price; otherwise
    the order went to the back of its (new) level.
    """

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    price_ticks: int
    quantity: int
    trade_ids: TradeIds
    kept_priority: bool


Event: TypeAlias = (
    OnOrderBookCreated
    | OnOrderInserted
    | OnOrderCancelled
    | OnTrade
    | OnOrderBookDeleted
    | OnOrderAmended
)


# -------------------------------------------------------------------------- results


class InsertResult(NamedTuple):
    """Outcome of ``Engine.insert``. ``error`` empty means accepted.

    An IOC/FOK that could not (fully) trade is accepted too: its unfilled part is
    neither traded nor resting.
    """

    error: str
    order_id: int
    timestamp: int
    trade_ids: TradeIds
    traded_quantity: int
    resting_quantity: int


class CancelResult(NamedTuple):
    """Outcome of ``Engine.cancel``, with the side and price of the removed order."""

    error: str
    cancelled_quantity: int
    side: int
    price_ticks: int


class AmendResult(NamedTuple):
    """Outcome of ``Engine.amend``; ``side`` is the amended order's side."""

    error: str
    timestamp: int
    trade_ids: TradeIds
    traded_quantity: int
    resting_quantity: int
    side: int


class CreateBookResult(NamedTuple):
    """Outcome of ``Engine.create_book``."""

    error: str
    order_book_id: int
    timestamp: int


class DeleteBookResult(NamedTuple):
    """Outcome of ``Engine.delete_book``: how many resting orders it cancelled."""

    error: str
    cancelled_orders: int


class ClearBookResult(NamedTuple):
    """Outcome of ``Engine.clear_book``: how many resting orders it cancelled."""

    error: str
    cancelled_orders: int


# ------------------------------------------------------------------------ snapshots


class BookInfo(NamedTuple):
    """A live book, as the snapshot on login announces it."""

    order_book_id: int
    tick_size: float
    price_rule: int


class RestingOrder(NamedTuple):
    """A resting order as a mirror needs it; ``quantity`` is the remaining quantity.

    Resting orders are always good-till-cancel (IOC/FOK never rest, and an amended
    order is a resting order), so ``time_in_force`` is always GTC; ``timestamp`` is
    the time of the event that gave the order its current queue position.
    """

    order_id: int
    order_book_id: int
    side: int
    price_ticks: int
    quantity: int
    username: str
    time_in_force: int
    timestamp: int


class ExchangeStats(NamedTuple):
    """Totals since the engine started (deleted books included).

    ``exchange_profit`` is in price units: the exact sum over books of profit ticks
    times tick size, rounded to a double once.
    """

    exchange_profit: float
    trade_count: int
    traded_volume: int
    resting_orders: int
