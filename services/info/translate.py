"""Where protobuf meets Info's domain: the one place messages become values and back.

Inbound, the Order Book's event messages become :mod:`services.info.events` values
with prices in integer ticks of their book (a price off the book's grid, or an event
for a book the mirror does not know, is a broken stream: :class:`MirrorError`).

Outbound, views and instruments become protobuf payloads and frames. Book messages
are encoded **once per group** without their ``sequence_number`` and completed per
subscription by :func:`with_sequence`, which appends field 15 to the serialised
payload. That is valid protobuf: a parser takes fields in any order, and the
subscription's number is the only occurrence of field 15 in the payload (the shared
payload leaves it at its default, which proto3 does not serialise). Appending costs
a few hundred nanoseconds; re-serialising a depth book per subscriber would cost
microseconds per level.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from services.common.pb import common_pb2, info_pb2
from services.common.prices import from_ticks, to_ticks
from services.info.events import (
    BookCreated,
    BookDeleted,
    Event,
    OrderAmended,
    OrderCancelled,
    OrderInserted,
    Trade,
)
from services.info.mirror import DepthView, Mirror, MirrorError, TopView
from services.info.registry import Instrument

__all__ = [
    "EVENT_TYPES",
    "depth_payload",
    "event_from_pb",
    "on_instrument",
    "quote",
    "top_payload",
    "trade_frame",
    "with_sequence",
]

MT = common_pb2.MessageType
ON_TOP_OF_BOOK: Final = MT.INFO_ON_TOP_OF_BOOK
ON_PRICE_DEPTH_BOOK: Final = MT.INFO_ON_PRICE_DEPTH_BOOK
ON_TRADE: Final = MT.INFO_ON_TRADE

_HEADER = struct.Struct(">II")
_SEQUENCE_TAG: Final = b"\x78"  # field 15, wire type 0 (varint)


def _varint(value: int) -> bytes:
    """Protobuf varint of a non-negative int64."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def with_sequence(message_type: int, payload: bytes, sequence_number: int) -> bytes:
    """A complete frame: ``payload`` (serialised without field 15) plus field 15."""
    tail = _SEQUENCE_TAG + _varint(sequence_number)
    return _HEADER.pack(4 + len(payload) + len(tail), message_type) + payload + tail


# ---------------------------------------------------------------------- inbound


def _ticks(mirror: Mirror, order_book_id: int, price: float) -> int:
    book = mirror.books.get(order_book_id)
    if book is None:
        raise MirrorError(f"event for unknown order book {order_book_id}")
    ticks = to_ticks(price, book.tick_size)
    if not isinstance(ticks, int):
        raise MirrorError(f"order book {order_book_id} sent an invalid price: {ticks.message}")
    return ticks


def _created(m: Any, mirror: Mirror, now_ns: int) -> Event:
    return BookCreated(m.sequence_number, m.order_book_id, m.tick_size, m.price_rule, now_ns)


def _inserted(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    return OrderInserted(
        m.sequence_number,
        m.order_id,
        book_id,
        m.timestamp,
        m.side,
        _ticks(mirror, book_id, m.price),
        m.quantity,
        tuple(m.trade_ids),
        m.time_in_force,
    )


def _amended(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    return OrderAmended(
        m.sequence_number,
        m.order_id,
        book_id,
        m.timestamp,
        _ticks(mirror, book_id, m.price),
        m.quantity,
        tuple(m.trade_ids),
        m.kept_priority,
    )


def _cancelled(m: Any, mirror: Mirror, now_ns: int) -> Event:
    return OrderCancelled(
        m.sequence_number,
        m.order_id,
        m.order_book_id,
        m.cancellation_timestamp,
        m.cancelled_quantity,
    )


def _trade(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    return Trade(
        m.sequence_number,
        m.trade_id,
        book_id,
        m.timestamp,
        m.buy_order_id,
        m.sell_order_id,
        _ticks(mirror, book_id, m.price),
        m.quantity,
        m.aggressor_side,
    )


def _deleted(m: Any, mirror: Mirror, now_ns: int) -> Event:
    return BookDeleted(m.sequence_number, m.order_book_id, m.timestamp)


_INBOUND: Final[dict[int, Callable[[Any, Mirror, int], Event]]] = {
    MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED: _created,
    MT.ORDER_BOOK_ON_ORDER_INSERTED: _inserted,
    MT.ORDER_BOOK_ON_ORDER_AMENDED: _amended,
    MT.ORDER_BOOK_ON_ORDER_CANCELLED: _cancelled,
    MT.ORDER_BOOK_ON_TRADE: _trade,
    MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED: _deleted,
}

EVENT_TYPES: Final = frozenset(_INBOUND)
"""Frame types of the Order Book's event stream."""


def event_from_pb(message_type: int, message: Any, mirror: Mirror, now_ns: int) -> Event:
    """The domain event for one event-stream message (``mirror`` supplies tick sizes;
    ``now_ns`` stamps book creations, which carry no time on the wire)."""
    return _INBOUND[message_type](message, mirror, now_ns)


# ---------------------------------------------------------------------- outbound

_PRICES: dict[float, dict[int, float]] = {}
_PRICE_CACHE_LIMIT: Final = 1 << 16


def price_of(ticks: int, tick_size: float) -> float:
    """``from_ticks`` with a per-tick-size cache (its ``round`` is the costly part).

    Books publish the same few hundred levels over and over; a cache that outgrows
    its limit is simply dropped and refilled.
    """
    cache = _PRICES.get(tick_size)
    if cache is None:
        cache = _PRICES[tick_size] = {}
    price = cache.get(ticks)
    if price is None:
        if len(cache) >= _PRICE_CACHE_LIMIT:
            cache.clear()
        price = cache[ticks] = from_ticks(ticks, tick_size)
    return price


MAX_LEVEL_QUANTITY: Final = 2**31 - 1
"""``PriceLevel.quantity`` is int32; a level's total can exceed it (two maximal
orders at one price). The wire shows such a level as 2**31-1, never a wrapped
negative number; the mirror keeps the exact sum."""


def top_payload(symbol: str, timestamp: int, view: TopView, tick_size: float) -> bytes:
    """``OnTopOfBook`` without its sequence number, serialised."""
    bid, bid_qty, ask, ask_qty = view
    bid_qty = min(bid_qty, MAX_LEVEL_QUANTITY)
    ask_qty = min(ask_qty, MAX_LEVEL_QUANTITY)
    message = info_pb2.OnTopOfBook(instrument_symbol=symbol, timestamp=timestamp)
    if bid:
        message.best_bid.price = price_of(bid, tick_size)
        message.best_bid.quantity = bid_qty
    if ask:
        message.best_ask.price = price_of(ask, tick_size)
        message.best_ask.quantity = ask_qty
    return message.SerializeToString()


_LEVELS: dict[tuple[int, float, int, int], bytes] = {}
_LEVEL_CACHE_LIMIT: Final = 1 << 16
_DOUBLE = struct.Struct("<d")


def _level(field_tag: int, tick_size: float, ticks: int, quantity: int) -> bytes:
    """One ``PriceLevel`` as an embedded field (bytes identical to protobuf's)."""
    body = (
        b"\x09"
        + _DOUBLE.pack(price_of(ticks, tick_size))
        + b"\x10"
        + _varint(min(quantity, MAX_LEVEL_QUANTITY))
    )
    return bytes((field_tag, len(body))) + body


def depth_payload(symbol: str, timestamp: int, view: DepthView, tick_size: float) -> bytes:
    """``OnPriceDepthBook`` without its sequence number, serialised.

    Encoded by hand from cached per-level bytes: between two messages of a book only
    a level or two change, so almost every level is a dictionary hit, which makes a
    100-level book about ten times cheaper than building ``PriceLevel`` objects. The
    bytes are exactly what ``SerializeToString`` writes (fields in number order,
    defaults omitted; prices are never 0 and quantities always > 0 in a book); a
    property test compares the two.
    """
    name = symbol.encode("utf-8")
    parts = [b"\x0a", _varint(len(name)), name]
    if timestamp:
        parts += (b"\x10", _varint(timestamp & 0xFFFFFFFFFFFFFFFF))
    cache = _LEVELS
    if len(cache) >= _LEVEL_CACHE_LIMIT:
        cache.clear()
    bids, asks = view
    for field_tag, levels in ((0x1A, bids), (0x22, asks)):
        for ticks, quantity in levels:
            key = (field_tag, tick_size, ticks, quantity)
            encoded = cache.get(key)
            if encoded is None:
                encoded = cache[key] = _level(field_tag, tick_size, ticks, quantity)
            parts.append(encoded)
    return b"".join(parts)


def trade_frame(symbol: str, trade: Trade, tick_size: float, sequence_number: int) -> bytes:
    """The complete ``OnTrade`` frame (the same bytes go to every subscriber)."""
    message = info_pb2.OnTrade(
        trade_id=trade.trade_id,
        instrument_symbol=symbol,
        timestamp=trade.timestamp,
        price=price_of(trade.price_ticks, tick_size),
        quantity=trade.quantity,
        aggressor_side=trade.aggressor_side,  # type: ignore[arg-type]
        sequence_number=sequence_number,
    )
    payload = message.SerializeToString()
    return _HEADER.pack(4 + len(payload), ON_TRADE) + payload


def on_instrument(instrument: Instrument) -> info_pb2.OnInstrument:
    return info_pb2.OnInstrument(
        instrument=common_pb2.Instrument(
            symbol=instrument.symbol,
            description=instrument.description,
            currency=instrument.currency,
            multiplier=instrument.multiplier,
        ),
        created_timestamp=instrument.created_timestamp,
        tick_size=instrument.tick_size,
        order_book_id=instrument.order_book_id,
        price_rule=instrument.price_rule,  # type: ignore[arg-type]
    )


def quote(instrument: Instrument) -> info_pb2.Quote:
    stats = instrument.stats
    price = from_ticks(stats.last_price_ticks, instrument.tick_size) if stats.trade_count else 0.0
    return info_pb2.Quote(
        instrument_symbol=instrument.symbol,
        last_trade_price=price,
        last_trade_quantity=stats.last_quantity,
        last_trade_timestamp=stats.last_timestamp,
        traded_volume=stats.traded_volume,
    )
