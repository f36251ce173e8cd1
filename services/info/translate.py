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
from services.common.prices import from_ticks, tick_memo, to_ticks_remembered
from services.common.wire.pbenc import varint
from services.info.events import (
    BookCreated,
    BookDeleted,
    Event,
    OrderAmended,
    OrderCancelled,
    OrderInserted,
    Trade,
)
from services.info.mirror import (
    MAX_LEVEL_QUANTITY,
    DepthView,
    Levels,
    Mirror,
    MirrorError,
    TopView,
)
from services.info.registry import Instrument

__all__ = [
    "ASKS_TAG",
    "BIDS_TAG",
    "EVENT_TYPES",
    "MAX_LEVEL_QUANTITY",
    "book_head",
    "depth_payload",
    "encode_levels",
    "event_from_pb",
    "level_bytes",
    "on_instrument",
    "quote",
    "top_body",
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


def with_sequence(message_type: int, payload: bytes, sequence_number: int) -> bytes:
    """A complete frame: ``payload`` (serialised without field 15) plus field 15.

    Called once per subscriber and message, so the varints of up to three bytes
    (the first two million messages of a subscription) are written without the
    general loop.
    """
    pack = _HEADER.pack
    if sequence_number < 0x80:
        return pack(6 + len(payload), message_type) + payload + bytes((0x78, sequence_number))
    if sequence_number < 0x4000:
        return (
            pack(7 + len(payload), message_type)
            + payload
            + bytes((0x78, (sequence_number & 0x7F) | 0x80, sequence_number >> 7))
        )
    if sequence_number < 0x200000:
        return (
            pack(8 + len(payload), message_type)
            + payload
            + bytes(
                (
                    0x78,
                    (sequence_number & 0x7F) | 0x80,
                    ((sequence_number >> 7) & 0x7F) | 0x80,
                    sequence_number >> 14,
                )
            )
        )
    tail = _SEQUENCE_TAG + varint(sequence_number)
    return pack(4 + len(payload) + len(tail), message_type) + payload + tail


# ---------------------------------------------------------------------- inbound


# Every event passes through here, so the converters are written for speed:
# events are built with ``tuple.__new__`` (skipping the NamedTuples' Python-level
# ``__new__``), an empty ``trade_ids`` (the common case) is the shared ``()``
# instead of a tuple copied from protobuf's container, and wire prices are
# converted to ticks through a cache.

_new: Any = tuple.__new__
_NO_TRADES: Final[tuple[int, ...]] = ()


def _ticks(mirror: Mirror, order_book_id: int, price: float) -> int:
    """``price`` in ticks of its book; :class:`MirrorError` for an unknown book or a
    price off its grid.

    Conversions come from the process's memo (``prices.tick_memo``): a book
    trades at a few hundred prices.
    """
    book = mirror.books.get(order_book_id)
    if book is None:
        raise MirrorError(f"event for unknown order book {order_book_id}")
    tick_size = book.tick_size
    memo = tick_memo(tick_size)
    ticks = memo.get(price)
    if ticks is None:
        converted = to_ticks_remembered(memo, price, tick_size)
        if not isinstance(converted, int):
            raise MirrorError(
                f"order book {order_book_id} sent an invalid price: {converted.message}"
            )
        ticks = converted
    return ticks


def _created(m: Any, mirror: Mirror, now_ns: int) -> Event:
    return BookCreated(m.sequence_number, m.order_book_id, m.tick_size, m.price_rule, now_ns)


def _inserted(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    trade_ids = m.trade_ids
    event: OrderInserted = _new(
        OrderInserted,
        (
            m.sequence_number,
            m.order_id,
            book_id,
            m.timestamp,
            m.side,
            _ticks(mirror, book_id, m.price),
            m.quantity,
            tuple(trade_ids) if trade_ids else _NO_TRADES,
            m.time_in_force,
        ),
    )
    return event


def _amended(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    trade_ids = m.trade_ids
    event: OrderAmended = _new(
        OrderAmended,
        (
            m.sequence_number,
            m.order_id,
            book_id,
            m.timestamp,
            _ticks(mirror, book_id, m.price),
            m.quantity,
            tuple(trade_ids) if trade_ids else _NO_TRADES,
            m.kept_priority,
        ),
    )
    return event


def _cancelled(m: Any, mirror: Mirror, now_ns: int) -> Event:
    event: OrderCancelled = _new(
        OrderCancelled,
        (
            m.sequence_number,
            m.order_id,
            m.order_book_id,
            m.cancellation_timestamp,
            m.cancelled_quantity,
        ),
    )
    return event


def _trade(m: Any, mirror: Mirror, now_ns: int) -> Event:
    book_id = m.order_book_id
    event: Trade = _new(
        Trade,
        (
            m.sequence_number,
            m.trade_id,
            book_id,
            m.timestamp,
            m.buy_order_id,
            m.sell_order_id,
            _ticks(mirror, book_id, m.price),
            m.quantity,
            m.aggressor_side,
        ),
    )
    return event


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

BOOK_CREATED: Final = int(MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED)
"""The one event type whose conversion needs the time (the others carry theirs)."""


def event_from_pb(message_type: int, message: Any, mirror: Mirror, now_ns: int) -> Event:
    """The domain event for one event-stream message (``mirror`` supplies tick sizes;
    ``now_ns`` stamps book creations, which carry no time on the wire)."""
    return _INBOUND[message_type](message, mirror, now_ns)


# ---------------------------------------------------------------------- outbound
#
# Book messages are assembled by hand from cached parts: encoded price levels, a
# side of a depth view that did not change, and the head (symbol and timestamp)
# that all the groups of a book published together share. The bytes are exactly
# what ``SerializeToString`` writes (fields in number order, proto3 defaults
# omitted); property tests compare the two.

_PRICES: dict[float, dict[int, float]] = {}
_PRICE_CACHE_LIMIT: Final = 1 << 16
_MASK64: Final = 0xFFFFFFFFFFFFFFFF


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


BIDS_TAG: Final = 0x1A
"""Field 3, length-delimited: ``OnPriceDepthBook.bids`` and ``OnTopOfBook.best_bid``."""
ASKS_TAG: Final = 0x22
"""Field 4, length-delimited: ``OnPriceDepthBook.asks`` and ``OnTopOfBook.best_ask``."""

_LEVEL_CACHE_LIMIT: Final = 1 << 16
_DOUBLE = struct.Struct("<d")


def _level(field_tag: int, tick_size: float, ticks: int, quantity: int) -> bytes:
    """One ``PriceLevel`` as an embedded field (bytes identical to protobuf's).

    A book's level always has a price of at least one tick and a quantity above 0;
    zeros are omitted all the same, as protobuf does.
    """
    price = price_of(ticks, tick_size)
    body = b"\x09" + _DOUBLE.pack(price) if price else b""
    quantity = min(quantity, MAX_LEVEL_QUANTITY)
    if quantity:
        body += b"\x10" + varint(quantity & _MASK64)
    return bytes((field_tag, len(body))) + body


class _LevelBytes(dict[tuple[int, int], bytes]):
    """``(ticks, quantity)`` -> the encoded level, for one field tag and tick size.

    A dict whose misses encode (``__missing__``), so a whole side is one
    ``b"".join(map(cache.__getitem__, levels))`` that stays in C while levels hit,
    which they nearly all do: between two messages of a book a level or two change.
    A cache that outgrows its limit is dropped and refilled.
    """

    __slots__ = ("field_tag", "tick_size")

    def __init__(self, field_tag: int, tick_size: float) -> None:
        super().__init__()
        self.field_tag = field_tag
        self.tick_size = tick_size

    def __missing__(self, level: tuple[int, int]) -> bytes:
        if len(self) >= _LEVEL_CACHE_LIMIT:
            self.clear()
        encoded = self[level] = _level(self.field_tag, self.tick_size, level[0], level[1])
        return encoded


_LEVEL_BYTES: dict[tuple[int, float], _LevelBytes] = {}


def level_bytes(field_tag: int, tick_size: float) -> _LevelBytes:
    """The level cache for ``field_tag`` (:data:`BIDS_TAG` / :data:`ASKS_TAG`) and a tick size."""
    cache = _LEVEL_BYTES.get((field_tag, tick_size))
    if cache is None:
        cache = _LEVEL_BYTES[(field_tag, tick_size)] = _LevelBytes(field_tag, tick_size)
    return cache


def encode_levels(field_tag: int, tick_size: float, levels: Levels) -> bytes:
    """A side of a depth view as repeated ``PriceLevel`` fields."""
    return b"".join(map(level_bytes(field_tag, tick_size).__getitem__, levels))


_SYMBOLS: dict[str, bytes] = {}
_SYMBOL_CACHE_LIMIT: Final = 1 << 12


def book_head(symbol: str, timestamp: int) -> bytes:
    """Fields 1 (``instrument_symbol``) and 2 (``timestamp``) of a book message.

    ``OnTopOfBook`` and ``OnPriceDepthBook`` share them, and all the groups of a
    book published together share the same bytes.
    """
    head = _SYMBOLS.get(symbol)
    if head is None:
        if len(_SYMBOLS) >= _SYMBOL_CACHE_LIMIT:
            _SYMBOLS.clear()
        name = symbol.encode("utf-8")
        head = _SYMBOLS[symbol] = b"\x0a" + varint(len(name)) + name if name else b""
    if timestamp:
        return head + b"\x10" + varint(timestamp & _MASK64)
    return head


def top_payload(symbol: str, timestamp: int, view: TopView, tick_size: float) -> bytes:
    """``OnTopOfBook`` without its sequence number, serialised."""
    return top_body(book_head(symbol, timestamp), view, tick_size)


def top_body(head: bytes, view: TopView, tick_size: float) -> bytes:
    """``OnTopOfBook`` after :func:`book_head`: best bid (3) and best ask (4), if any."""
    bid, bid_qty, ask, ask_qty = view
    if bid:
        head += level_bytes(BIDS_TAG, tick_size)[(bid, bid_qty)]
    if ask:
        head += level_bytes(ASKS_TAG, tick_size)[(ask, ask_qty)]
    return head


def depth_payload(symbol: str, timestamp: int, view: DepthView, tick_size: float) -> bytes:
    """``OnPriceDepthBook`` without its sequence number, serialised.

    Encoded from cached per-level bytes (:class:`_LevelBytes`): about ten times
    cheaper for a 100-level book than building ``PriceLevel`` objects.
    """
    bids, asks = view
    return (
        book_head(symbol, timestamp)
        + encode_levels(BIDS_TAG, tick_size, bids)
        + encode_levels(ASKS_TAG, tick_size, asks)
    )


def trade_frame(symbol: str, trade: Trade, tick_size: float, sequence_number: int) -> bytes:
    """The complete ``OnTrade`` frame (the same bytes go to every subscriber).

    Left to protobuf: written by hand it was no faster (about 2 us either way).
    """
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
