"""The Order Book's event stream as Info sees it: plain values in integer ticks.

Why Info has its own event types instead of reusing ``services.order_book.events``:
Info knows the Order Book only through the wire, so its vocabulary is what the wire
carries (no cancel reason, no username) and nothing couples the two services'
internals. ``translate.py`` is the only place that builds these from protobuf
messages; the mirror consumes nothing else.

Every event carries ``sequence_number`` first. Snapshot messages (what the Order
Book sends on login) carry 0; live events count up from 1, gap-free.

Constants use the numbers of the protobuf enums, defined here so that the pure
modules never import protobuf.
"""

from __future__ import annotations

from typing import Final, NamedTuple, TypeAlias

__all__ = [
    "BUY",
    "FOK",
    "GTC",
    "IOC",
    "PRICE_DEPTH_BOOK",
    "RESTING_ORDER_PRICE",
    "SELL",
    "SPREAD_CAPTURE",
    "TOP_OF_BOOK",
    "BookCreated",
    "BookDeleted",
    "Event",
    "OrderAmended",
    "OrderCancelled",
    "OrderInserted",
    "Trade",
]

BUY: Final = 0
SELL: Final = 1
GTC: Final = 0  # GOOD_TILL_CANCEL: a remainder rests
IOC: Final = 1  # IMMEDIATE_OR_CANCEL: a remainder is cancelled
FOK: Final = 2  # FILL_OR_KILL
RESTING_ORDER_PRICE: Final = 0
SPREAD_CAPTURE: Final = 1
TOP_OF_BOOK: Final = 0
PRICE_DEPTH_BOOK: Final = 1

TradeIds: TypeAlias = tuple[int, ...]


class BookCreated(NamedTuple):
    """``OnOrderBookCreated``. The wire message has no timestamp; translate stamps
    the time Info received it, so every book has a time for its first state."""

    sequence_number: int
    order_book_id: int
    tick_size: float
    price_rule: int
    timestamp: int


class OrderInserted(NamedTuple):
    """``OnOrderInserted``: ``quantity`` as inserted (remaining, in a snapshot)."""

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    side: int
    price_ticks: int
    quantity: int
    trade_ids: TradeIds
    time_in_force: int


class OrderAmended(NamedTuple):
    """``OnOrderAmended``: ``quantity`` is the new remaining quantity before the
    trades the amend caused (``trade_ids``)."""

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    price_ticks: int
    quantity: int
    trade_ids: TradeIds
    kept_priority: bool


class OrderCancelled(NamedTuple):
    """``OnOrderCancelled``: a resting order or an IOC/FOK remainder went away."""

    sequence_number: int
    order_id: int
    order_book_id: int
    timestamp: int
    cancelled_quantity: int


class Trade(NamedTuple):
    """``OnTrade``: ``price_ticks`` is the resting order's price."""

    sequence_number: int
    trade_id: int
    order_book_id: int
    timestamp: int
    buy_order_id: int
    sell_order_id: int
    price_ticks: int
    quantity: int
    aggressor_side: int


class BookDeleted(NamedTuple):
    """``OnOrderBookDeleted`` (after a cancel for each resting order)."""

    sequence_number: int
    order_book_id: int
    timestamp: int


Event: TypeAlias = BookCreated | OrderInserted | OrderAmended | OrderCancelled | Trade | BookDeleted
