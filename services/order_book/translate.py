"""Where protobuf meets the engine: events out as frames, requests in as commands.

The engine speaks integer ticks and NamedTuples; the wire speaks doubles and
protobuf.  This module is the only place the two meet, in both directions:

* :class:`EventEncoder` turns each domain event into one encoded frame (built
  once, then sent to every subscriber of the event stream);
* :class:`CommandProcessor` validates a request at the edge (enums, prices on
  the book's tick grid), applies it to the engine and encodes the response
  frame.  The live service and the journal replay both go through
  :meth:`CommandProcessor.process`, which is what makes a replay reproduce the
  exact same state.

Why hand-written encoders: this translation used to be about two thirds of the
service's CPU, several times the matching, and most of that was building
protobuf message objects only to serialise them at once.  The hot messages (the
insert, cancel and amend responses and the four events an order causes) are
therefore joined from pre-encoded pieces (:mod:`services.common.wire.pbenc`),
byte for byte what ``SerializeToString()`` gives (``tests/order_book_service/
test_encoding.py`` checks it over the full value ranges).  The rare messages
(book creation and deletion, clear, stats) still go through protobuf objects.
Prices are converted from ticks once per book and price, and wire prices to
ticks once per tick size and price: both conversions are pure functions, so
remembering them changes no result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from google.protobuf.message import Message

from services.common.pb import common_pb2, order_book_pb2
from services.common.prices import PriceError, from_ticks, tick_memo, to_ticks_remembered
from services.common.wire.framing import HEADER, encode_frame
from services.common.wire.pbenc import (
    CONTINUED_CHUNK,
    SMALL_VARINT,
    double_bytes,
    string_field,
    varint,
)
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE
from services.order_book.engine import Engine
from services.order_book.events import (
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)

MT = common_pb2.MessageType
INSERT: Final = MT.ORDER_BOOK_INSERT_ORDER_REQUEST
CANCEL: Final = MT.ORDER_BOOK_CANCEL_ORDER_REQUEST
AMEND: Final = MT.ORDER_BOOK_AMEND_ORDER_REQUEST
CREATE: Final = MT.ORDER_BOOK_CREATE_REQUEST
DELETE: Final = MT.ORDER_BOOK_DELETE_REQUEST
CLEAR: Final = MT.ORDER_BOOK_CLEAR_REQUEST
STATS: Final = MT.ORDER_BOOK_GET_STATS_REQUEST

# Frame types as plain ints: attribute access on a protobuf enum wrapper costs a
# Python-level lookup per message on the hot path.
_ON_ORDER_BOOK_CREATED: Final = int(MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED)
_ON_ORDER_INSERTED: Final = int(MT.ORDER_BOOK_ON_ORDER_INSERTED)
_ON_ORDER_CANCELLED: Final = int(MT.ORDER_BOOK_ON_ORDER_CANCELLED)
_ON_TRADE: Final = int(MT.ORDER_BOOK_ON_TRADE)
_ON_ORDER_BOOK_DELETED: Final = int(MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED)
_ON_ORDER_AMENDED: Final = int(MT.ORDER_BOOK_ON_ORDER_AMENDED)
_INSERT_RESPONSE: Final = int(MT.ORDER_BOOK_INSERT_ORDER_RESPONSE)
_CANCEL_RESPONSE: Final = int(MT.ORDER_BOOK_CANCEL_ORDER_RESPONSE)
_AMEND_RESPONSE: Final = int(MT.ORDER_BOOK_AMEND_ORDER_RESPONSE)
_CREATE_RESPONSE: Final = int(MT.ORDER_BOOK_CREATE_RESPONSE)
_DELETE_RESPONSE: Final = int(MT.ORDER_BOOK_DELETE_RESPONSE)
_CLEAR_RESPONSE: Final = int(MT.ORDER_BOOK_CLEAR_RESPONSE)
_STATS_RESPONSE: Final = int(MT.ORDER_BOOK_GET_STATS_RESPONSE)

JOURNALED: Final = frozenset({INSERT, CANCEL, AMEND, CREATE, DELETE, CLEAR})
"""Commands that can change state (and so are journaled when accepted)."""

VALID_SIDES: Final = frozenset(int(v) for v in common_pb2.Side.values())
VALID_TIFS: Final = frozenset(int(v) for v in common_pb2.TimeInForce.values())
VALID_PRICE_RULES: Final = frozenset(int(v) for v in common_pb2.PriceRule.values())

pb = order_book_pb2

_MEMO_LIMIT: Final = 1 << 16
"""Entries a conversion memo holds before it is emptied and refilled.

Prices cluster around a few thousand levels per book, so a memo this size hits
almost always; the bound only keeps a pathological client (a new price per
order) from growing it without end."""


_NO_PRICES: Final[dict[int, bytes]] = {}
"""Stands in for the price memo of a book not seen yet (never written to)."""


def unknown_book(order_book_id: int) -> str:
    return f"unknown order book {order_book_id}"


# ------------------------------------------------------------------ payloads
#
# Each function returns one message's protobuf payload, identical to
# ``SerializeToString()`` of the message with the same field values.  Literal
# bytes are field keys, ``(field_number << 3) | wire_type``: 0 varint, 1 double,
# 2 length-delimited.  Doubles are passed as their ``pbenc.double_bytes`` image
# (empty for +0.0, which upb leaves out), so a caller can remember it per price.
#
# Each has a fast path for the field values the service sends almost always
# (positive ids below 2**28, quantities below 2**14, small enums), where varints
# are read straight from ``pbenc``'s tables without a call, and a general path
# for every other value; the tests drive both.


_pack_header: Final = HEADER.pack
"""Frame header of the hot messages, packed here rather than through
``encode_frame`` (one Python call less per message; same bytes)."""

_S: Final = SMALL_VARINT
_C: Final = CONTINUED_CHUNK
_L14: Final = 1 << 14
_L28: Final = 1 << 28
_M14: Final = _L14 - 1


_last_packed: tuple[object, bytes] = (object(), b"")
"""The last id tuple packed, and its length-prefixed body.

An insert's or amend's response and its event carry the same ``trade_ids``
tuple object; the memo holds a reference, so identity cannot be reused by
another tuple, and tuples cannot change.  (Lists are packed, never kept.)"""


def _packed(key: bytes, values: Sequence[int]) -> bytes:
    """A packed repeated int64 field; the caller checks that ``values`` is not empty."""
    global _last_packed
    last = _last_packed
    if values is last[0]:
        return key + last[1]
    body = varint(values[0]) if len(values) == 1 else b"".join([varint(v) for v in values])
    size = len(body)
    sized = (_S[size] if size < _L14 else varint(size)) + body
    if type(values) is tuple:
        _last_packed = (values, sized)
    return key + sized


_ERROR_FIELDS: dict[str, bytes] = {}


def _error_field(error_message: str) -> bytes:
    """A response's ``error_message`` (field 2 in all three), remembered per text:
    refusals repeat a handful of texts, and encoding one costs more than the rest
    of the response."""
    field = _ERROR_FIELDS.get(error_message)
    if field is None:
        if len(_ERROR_FIELDS) >= _MEMO_LIMIT:
            _ERROR_FIELDS.clear()
        field = _ERROR_FIELDS[error_message] = string_field(2, error_message)
    return field


_USERNAME_FIELDS: dict[str, bytes] = {}


def _username_field(username: str) -> bytes:
    """``OnOrderInserted.username`` (field 8) as encoded bytes, remembered per name."""
    field = _USERNAME_FIELDS.get(username)
    if field is None:
        if len(_USERNAME_FIELDS) >= _MEMO_LIMIT:
            _USERNAME_FIELDS.clear()
        field = _USERNAME_FIELDS[username] = string_field(8, username)
    return field


def insert_order_response(
    request_id: int,
    error_message: str,
    order_id: int,
    timestamp: int,
    trade_ids: Sequence[int],
    traded_quantity: int,
    resting_quantity: int,
) -> bytes:
    """``InsertOrderResponse`` payload."""
    if (
        0 < request_id < _L28
        and 0 < order_id < _L28
        and 0 <= traded_quantity < _L14
        and 0 <= resting_quantity < _L14
        and not error_message
    ):
        # An accepted insert with ids and quantities of common sizes.
        return b"".join(
            (
                b"\x08",
                _S[request_id]
                if request_id < _L14
                else _C[request_id & _M14] + _S[request_id >> 14],
                b"\x18",
                _S[order_id] if order_id < _L14 else _C[order_id & _M14] + _S[order_id >> 14],
                b"\x20" + varint(timestamp) if timestamp else b"",
                _packed(b"\x2a", trade_ids) if trade_ids else b"",
                b"\x30" + _S[traded_quantity] if traded_quantity else b"",
                b"\x38" + _S[resting_quantity] if resting_quantity else b"",
            )
        )
    return b"".join(
        (
            b"\x08" + varint(request_id) if request_id else b"",
            _ERROR_FIELDS.get(error_message) or _error_field(error_message),
            b"\x18" + varint(order_id) if order_id else b"",
            b"\x20" + varint(timestamp) if timestamp else b"",
            _packed(b"\x2a", trade_ids) if trade_ids else b"",
            b"\x30" + varint(traded_quantity) if traded_quantity else b"",
            b"\x38" + varint(resting_quantity) if resting_quantity else b"",
        )
    )


def cancel_order_response(request_id: int, error_message: str, cancelled_quantity: int) -> bytes:
    """``CancelOrderResponse`` payload."""
    if 0 < request_id < _L28 and 0 < cancelled_quantity < _L14 and not error_message:
        return b"".join(
            (
                b"\x08",
                _S[request_id]
                if request_id < _L14
                else _C[request_id & _M14] + _S[request_id >> 14],
                b"\x18",
                _S[cancelled_quantity],
            )
        )
    return b"".join(
        (
            b"\x08" + varint(request_id) if request_id else b"",
            _ERROR_FIELDS.get(error_message) or _error_field(error_message),
            b"\x18" + varint(cancelled_quantity) if cancelled_quantity else b"",
        )
    )


def amend_order_response(
    request_id: int,
    error_message: str,
    timestamp: int,
    trade_ids: Sequence[int],
    traded_quantity: int,
    resting_quantity: int,
) -> bytes:
    """``AmendOrderResponse`` payload."""
    if (
        0 < request_id < _L28
        and 0 <= traded_quantity < _L14
        and 0 <= resting_quantity < _L14
        and not error_message
    ):
        return b"".join(
            (
                b"\x08",
                _S[request_id]
                if request_id < _L14
                else _C[request_id & _M14] + _S[request_id >> 14],
                b"\x18" + varint(timestamp) if timestamp else b"",
                _packed(b"\x22", trade_ids) if trade_ids else b"",
                b"\x28" + _S[traded_quantity] if traded_quantity else b"",
                b"\x30" + _S[resting_quantity] if resting_quantity else b"",
            )
        )
    return b"".join(
        (
            b"\x08" + varint(request_id) if request_id else b"",
            _ERROR_FIELDS.get(error_message) or _error_field(error_message),
            b"\x18" + varint(timestamp) if timestamp else b"",
            _packed(b"\x22", trade_ids) if trade_ids else b"",
            b"\x28" + varint(traded_quantity) if traded_quantity else b"",
            b"\x30" + varint(resting_quantity) if resting_quantity else b"",
        )
    )


def on_order_inserted(
    order_id: int,
    order_book_id: int,
    timestamp: int,
    side: int,
    price: bytes,
    quantity: int,
    trade_ids: Sequence[int],
    username: str,
    time_in_force: int,
    sequence_number: int,
) -> bytes:
    """``OnOrderInserted`` payload; ``price`` as ``pbenc.double_bytes``."""
    if (
        0 < order_id < _L28
        and 0 < order_book_id < _L14
        and 0 < quantity < _L14
        and 0 <= side < 0x80
        and 0 <= time_in_force < 0x80
        and 0 <= sequence_number < _L28
        and price
    ):
        # Live events, and the login snapshot's (sequence 0), of common sizes.
        return b"".join(
            (
                b"\x08",
                _S[order_id] if order_id < _L14 else _C[order_id & _M14] + _S[order_id >> 14],
                b"\x10",
                _S[order_book_id],
                b"\x18" + varint(timestamp) if timestamp else b"",
                b"\x20" + _S[side] if side else b"",
                b"\x29",
                price,
                b"\x30",
                _S[quantity],
                _packed(b"\x3a", trade_ids) if trade_ids else b"",
                _USERNAME_FIELDS.get(username) or _username_field(username),
                b"\x48" + _S[time_in_force] if time_in_force else b"",
                (
                    b"\x78" + _S[sequence_number]
                    if sequence_number < _L14
                    else b"\x78" + _C[sequence_number & _M14] + _S[sequence_number >> 14]
                )
                if sequence_number
                else b"",
            )
        )
    return b"".join(
        (
            b"\x08" + varint(order_id) if order_id else b"",
            b"\x10" + varint(order_book_id) if order_book_id else b"",
            b"\x18" + varint(timestamp) if timestamp else b"",
            b"\x20" + varint(side) if side else b"",
            b"\x29" + price if price else b"",
            b"\x30" + varint(quantity) if quantity else b"",
            _packed(b"\x3a", trade_ids) if trade_ids else b"",
            _username_field(username),
            b"\x48" + varint(time_in_force) if time_in_force else b"",
            b"\x78" + varint(sequence_number) if sequence_number else b"",
        )
    )


def on_order_cancelled(
    order_id: int,
    cancellation_timestamp: int,
    order_book_id: int,
    cancelled_quantity: int,
    sequence_number: int,
) -> bytes:
    """``OnOrderCancelled`` payload."""
    if (
        0 < order_id < _L28
        and 0 < order_book_id < _L14
        and 0 < cancelled_quantity < _L14
        and 0 < sequence_number < _L28
    ):
        return b"".join(
            (
                b"\x08",
                _S[order_id] if order_id < _L14 else _C[order_id & _M14] + _S[order_id >> 14],
                b"\x10" + varint(cancellation_timestamp) if cancellation_timestamp else b"",
                b"\x18",
                _S[order_book_id],
                b"\x20",
                _S[cancelled_quantity],
                b"\x78",
                _S[sequence_number]
                if sequence_number < _L14
                else _C[sequence_number & _M14] + _S[sequence_number >> 14],
            )
        )
    return b"".join(
        (
            b"\x08" + varint(order_id) if order_id else b"",
            b"\x10" + varint(cancellation_timestamp) if cancellation_timestamp else b"",
            b"\x18" + varint(order_book_id) if order_book_id else b"",
            b"\x20" + varint(cancelled_quantity) if cancelled_quantity else b"",
            b"\x78" + varint(sequence_number) if sequence_number else b"",
        )
    )


def on_trade(
    trade_id: int,
    order_book_id: int,
    timestamp: int,
    buy_order_id: int,
    sell_order_id: int,
    price: bytes,
    quantity: int,
    aggressor_side: int,
    aggressor_price: bytes,
    sequence_number: int,
) -> bytes:
    """``OnTrade`` payload; both prices as ``pbenc.double_bytes``."""
    if (
        0 < trade_id < _L28
        and 0 < order_book_id < _L14
        and 0 < buy_order_id < _L28
        and 0 < sell_order_id < _L28
        and 0 < quantity < _L14
        and 0 <= aggressor_side < 0x80
        and 0 < sequence_number < _L28
        and price
        and aggressor_price
    ):
        return b"".join(
            (
                b"\x08",
                _S[trade_id] if trade_id < _L14 else _C[trade_id & _M14] + _S[trade_id >> 14],
                b"\x10",
                _S[order_book_id],
                b"\x18" + varint(timestamp) if timestamp else b"",
                b"\x20",
                _S[buy_order_id]
                if buy_order_id < _L14
                else _C[buy_order_id & _M14] + _S[buy_order_id >> 14],
                b"\x28",
                _S[sell_order_id]
                if sell_order_id < _L14
                else _C[sell_order_id & _M14] + _S[sell_order_id >> 14],
                b"\x31",
                price,
                b"\x38",
                _S[quantity],
                b"\x40" + _S[aggressor_side] if aggressor_side else b"",
                b"\x49",
                aggressor_price,
                b"\x78",
                _S[sequence_number]
                if sequence_number < _L14
                else _C[sequence_number & _M14] + _S[sequence_number >> 14],
            )
        )
    return b"".join(
        (
            b"\x08" + varint(trade_id) if trade_id else b"",
            b"\x10" + varint(order_book_id) if order_book_id else b"",
            b"\x18" + varint(timestamp) if timestamp else b"",
            b"\x20" + varint(buy_order_id) if buy_order_id else b"",
            b"\x28" + varint(sell_order_id) if sell_order_id else b"",
            b"\x31" + price if price else b"",
            b"\x38" + varint(quantity) if quantity else b"",
            b"\x40" + varint(aggressor_side) if aggressor_side else b"",
            b"\x49" + aggressor_price if aggressor_price else b"",
            b"\x78" + varint(sequence_number) if sequence_number else b"",
        )
    )


def on_order_amended(
    order_id: int,
    order_book_id: int,
    timestamp: int,
    price: bytes,
    quantity: int,
    trade_ids: Sequence[int],
    kept_priority: bool,
    sequence_number: int,
) -> bytes:
    """``OnOrderAmended`` payload; ``price`` as ``pbenc.double_bytes``."""
    if (
        0 < order_id < _L28
        and 0 < order_book_id < _L14
        and 0 < quantity < _L14
        and 0 < sequence_number < _L28
        and price
    ):
        return b"".join(
            (
                b"\x08",
                _S[order_id] if order_id < _L14 else _C[order_id & _M14] + _S[order_id >> 14],
                b"\x10",
                _S[order_book_id],
                b"\x18" + varint(timestamp) if timestamp else b"",
                b"\x21",
                price,
                b"\x28",
                _S[quantity],
                _packed(b"\x32", trade_ids) if trade_ids else b"",
                b"\x38\x01" if kept_priority else b"",
                b"\x78",
                _S[sequence_number]
                if sequence_number < _L14
                else _C[sequence_number & _M14] + _S[sequence_number >> 14],
            )
        )
    return b"".join(
        (
            b"\x08" + varint(order_id) if order_id else b"",
            b"\x10" + varint(order_book_id) if order_book_id else b"",
            b"\x18" + varint(timestamp) if timestamp else b"",
            b"\x21" + price if price else b"",
            b"\x28" + varint(quantity) if quantity else b"",
            _packed(b"\x32", trade_ids) if trade_ids else b"",
            b"\x38\x01" if kept_priority else b"",
            b"\x78" + varint(sequence_number) if sequence_number else b"",
        )
    )


# ------------------------------------------------------------------ events


class EventEncoder:
    """Encodes engine events as wire frames; remembers every book's tick size.

    Tick sizes are kept after a book is deleted (ids are never reused), so late
    events of a deleted book still convert.  So are the encoded prices of each
    book (``from_ticks`` and the double's bytes, per tick count).
    """

    def __init__(self) -> None:
        self.tick_sizes: dict[int, float] = {}
        self._prices: dict[int, dict[int, bytes]] = {}
        self._encoders: dict[type, Callable[[Any], bytes]] = {
            OnOrderBookCreated: self._created,
            OnOrderInserted: self._inserted,
            OnOrderCancelled: self._cancelled,
            OnTrade: self._trade,
            OnOrderBookDeleted: self._deleted,
            OnOrderAmended: self._amended,
        }

    def encode(self, event: Any) -> bytes:
        return self._encoders[type(event)](event)

    def encode_all(self, events: Iterable[Any]) -> list[bytes]:
        """The frames of ``events``, in order (one call per command's events)."""
        encoders = self._encoders
        return [encoders[type(event)](event) for event in events]

    def _price(self, order_book_id: int, ticks: int) -> bytes:
        """The price's ``double_bytes`` for ``ticks`` of a book, remembered per book.

        The hot paths look the memo up themselves and call this on a miss.  A book
        never announced raises ``KeyError`` (no tick size), as it always did.
        """
        tick_size = self.tick_sizes[order_book_id]
        prices = self._prices.get(order_book_id)
        if prices is None:
            prices = self._prices[order_book_id] = {}
        encoded = prices.get(ticks)
        if encoded is None:
            if len(prices) >= _MEMO_LIMIT:
                prices.clear()
            encoded = prices[ticks] = double_bytes(from_ticks(ticks, tick_size))
        return encoded

    def _created(self, e: OnOrderBookCreated) -> bytes:
        self.tick_sizes[e.order_book_id] = e.tick_size
        message = pb.OnOrderBookCreated(
            order_book_id=e.order_book_id,
            tick_size=e.tick_size,
            price_rule=e.price_rule,  # type: ignore[arg-type]
            sequence_number=e.sequence_number,
        )
        return encode_frame(_ON_ORDER_BOOK_CREATED, message.SerializeToString())

    def _inserted(self, e: OnOrderInserted) -> bytes:
        (seq, order_id, book, timestamp, side, ticks, quantity, trade_ids, username, tif) = e
        price = self._prices.get(book, _NO_PRICES).get(ticks) or self._price(book, ticks)
        payload = on_order_inserted(
            order_id, book, timestamp, side, price, quantity, trade_ids, username, tif, seq
        )
        return _pack_header(len(payload) + 4, _ON_ORDER_INSERTED) + payload

    def _cancelled(self, e: OnOrderCancelled) -> bytes:
        (seq, order_id, book, timestamp, cancelled_quantity, _reason) = e
        payload = on_order_cancelled(order_id, timestamp, book, cancelled_quantity, seq)
        return _pack_header(len(payload) + 4, _ON_ORDER_CANCELLED) + payload

    def _trade(self, e: OnTrade) -> bytes:
        (seq, trade_id, book, timestamp, buy, sell, ticks, quantity, side, aggressor_ticks) = e
        prices = self._prices.get(book, _NO_PRICES)
        price = prices.get(ticks) or self._price(book, ticks)
        if aggressor_ticks == ticks:
            aggressor_price = price
        else:
            aggressor_price = prices.get(aggressor_ticks) or self._price(book, aggressor_ticks)
        payload = on_trade(
            trade_id, book, timestamp, buy, sell, price, quantity, side, aggressor_price, seq
        )
        return _pack_header(len(payload) + 4, _ON_TRADE) + payload

    def _deleted(self, e: OnOrderBookDeleted) -> bytes:
        message = pb.OnOrderBookDeleted(
            order_book_id=e.order_book_id, timestamp=e.timestamp, sequence_number=e.sequence_number
        )
        return encode_frame(_ON_ORDER_BOOK_DELETED, message.SerializeToString())

    def _amended(self, e: OnOrderAmended) -> bytes:
        (seq, order_id, book, timestamp, ticks, quantity, trade_ids, kept_priority) = e
        price = self._prices.get(book, _NO_PRICES).get(ticks) or self._price(book, ticks)
        payload = on_order_amended(
            order_id, book, timestamp, price, quantity, trade_ids, kept_priority, seq
        )
        return _pack_header(len(payload) + 4, _ON_ORDER_AMENDED) + payload

    def snapshot(self, engine: Engine) -> Iterator[bytes]:
        """The login snapshot: every live book, then every resting order, sequence 0.

        Resting orders come per book, per side, best price first and in time
        priority within a level, so a mirror rebuilds the same queue order.
        """
        books = list(engine.books())
        for info in books:
            self.tick_sizes[info.order_book_id] = info.tick_size
            message = pb.OnOrderBookCreated(
                order_book_id=info.order_book_id,
                tick_size=info.tick_size,
                price_rule=info.price_rule,  # type: ignore[arg-type]
            )
            yield encode_frame(_ON_ORDER_BOOK_CREATED, message.SerializeToString())
        for order in engine.resting_orders():
            payload = on_order_inserted(
                order.order_id,
                order.order_book_id,
                order.timestamp,
                order.side,
                self._price(order.order_book_id, order.price_ticks),
                order.quantity,
                (),
                order.username,
                order.time_in_force,
                0,
            )
            yield encode_frame(_ON_ORDER_INSERTED, payload)


# ------------------------------------------------------------------ commands


class CommandProcessor:
    """Validates requests and applies them to the engine (live and in replay)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Live book id -> its tick size and price memo.  Filled from the engine
        # on a book's first price, dropped when this processor deletes the book:
        # books are created and deleted only through here (the service and the
        # journal replay have no other way), and ``book_info`` costs more than
        # the whole conversion otherwise.
        self._books: dict[int, tuple[float, dict[float, int]]] = {}
        self._process: dict[int, Callable[[Any, int], tuple[bytes, bool]]] = {
            INSERT: self._insert,
            CANCEL: self._cancel,
            AMEND: self._amend,
            CREATE: self._create,
            DELETE: self._delete,
            CLEAR: self._clear,
            STATS: self._stats,
        }

    def process(self, kind: int, request: Any, timestamp: int) -> tuple[bytes, bool]:
        """Run one request; returns its encoded response frame and whether it
        changed anything worth journaling (an accepted state-changing command)."""
        return self._process[kind](request, timestamp)

    def apply(self, kind: int, request: Any, timestamp: int) -> tuple[Message, bool]:
        """:meth:`process`, with the response as a protobuf message (for tools and
        tests; the service itself only needs the frame)."""
        frame, accepted = self._process[kind](request, timestamp)
        return MESSAGE_CLASSES[RESPONSE_TYPE[kind]].FromString(frame[8:]), accepted

    def _ticks(self, order_book_id: int, price: float) -> int | str:
        """``price`` in ticks of a live book, or why it cannot be used."""
        book = self._books.get(order_book_id)
        if book is None:
            info = self.engine.book_info(order_book_id)
            if info is None:
                return unknown_book(order_book_id)
            memo = tick_memo(info.tick_size)
            book = self._books[order_book_id] = (info.tick_size, memo)
        tick_size, memo = book
        ticks = memo.get(price)
        if ticks is None:
            # Only accepted prices are remembered: a refused one (NaN among
            # them, which is never equal to itself) is checked afresh each time.
            converted = to_ticks_remembered(memo, price, tick_size)
            if isinstance(converted, PriceError):
                return converted.message
            ticks = converted
        return ticks

    def _insert(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        request_id = r.request_id
        client_order_id = r.client_order_id
        if client_order_id:
            prior = self.engine.previous_insert(r.on_behalf_of_username, client_order_id)
            if prior is not None:
                # A resend: the original outcome, whatever this request says; nothing changes.
                payload = insert_order_response(
                    request_id,
                    "",
                    prior.order_id,
                    prior.timestamp,
                    prior.trade_ids,
                    prior.traded_quantity,
                    prior.resting_quantity,
                )
                return encode_frame(_INSERT_RESPONSE, payload), False
        side = r.side
        time_in_force = r.time_in_force
        if side not in VALID_SIDES:
            error = f"invalid side {side}"
        elif time_in_force not in VALID_TIFS:
            error = f"invalid time_in_force {time_in_force}"
        else:
            order_book_id = r.order_book_id
            ticks = self._ticks(order_book_id, r.price)
            if isinstance(ticks, str):
                error = ticks
            else:
                result = self.engine.insert(
                    order_book_id,
                    r.on_behalf_of_username,
                    side,
                    ticks,
                    r.quantity,
                    time_in_force,
                    client_order_id,
                    timestamp,
                )
                (error, order_id, result_timestamp, trade_ids, traded, resting) = result
                if not error:
                    payload = insert_order_response(
                        request_id, "", order_id, result_timestamp, trade_ids, traded, resting
                    )
                    return _pack_header(len(payload) + 4, _INSERT_RESPONSE) + payload, True
        payload = insert_order_response(request_id, error, 0, 0, (), 0, 0)
        return encode_frame(_INSERT_RESPONSE, payload), False

    def _cancel(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        result = self.engine.cancel(r.order_book_id, r.order_id, r.on_behalf_of_username, timestamp)
        error = result.error
        if error:
            payload = cancel_order_response(r.request_id, error, 0)
            return encode_frame(_CANCEL_RESPONSE, payload), False
        payload = cancel_order_response(r.request_id, "", result.cancelled_quantity)
        return _pack_header(len(payload) + 4, _CANCEL_RESPONSE) + payload, True

    def _amend(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        order_book_id = r.order_book_id
        ticks = self._ticks(order_book_id, r.price)
        if isinstance(ticks, str):
            payload = amend_order_response(r.request_id, ticks, 0, (), 0, 0)
            return encode_frame(_AMEND_RESPONSE, payload), False
        result = self.engine.amend(
            order_book_id, r.order_id, r.on_behalf_of_username, ticks, r.quantity, timestamp
        )
        (error, result_timestamp, trade_ids, traded, resting, _side) = result
        if error:
            payload = amend_order_response(r.request_id, error, 0, (), 0, 0)
            return encode_frame(_AMEND_RESPONSE, payload), False
        payload = amend_order_response(
            r.request_id, "", result_timestamp, trade_ids, traded, resting
        )
        return _pack_header(len(payload) + 4, _AMEND_RESPONSE) + payload, True

    def _create(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        if r.price_rule not in VALID_PRICE_RULES:
            error = f"invalid price_rule {r.price_rule}"
            return _response(
                _CREATE_RESPONSE,
                pb.CreateOrderBookResponse(request_id=r.request_id, error_message=error),
            ), False
        if not math.isfinite(r.tick_size) or r.tick_size <= 0:
            error = f"tick_size must be finite and > 0, got {r.tick_size!r}"
            return _response(
                _CREATE_RESPONSE,
                pb.CreateOrderBookResponse(request_id=r.request_id, error_message=error),
            ), False
        result = self.engine.create_book(r.tick_size, r.price_rule, timestamp)
        if result.error:
            return _response(
                _CREATE_RESPONSE,
                pb.CreateOrderBookResponse(request_id=r.request_id, error_message=result.error),
            ), False
        response = pb.CreateOrderBookResponse(
            request_id=r.request_id, order_book_id=result.order_book_id, timestamp=result.timestamp
        )
        return _response(_CREATE_RESPONSE, response), True

    def _delete(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        result = self.engine.delete_book(r.order_book_id, timestamp)
        if not result.error:
            self._books.pop(r.order_book_id, None)
        response = pb.DeleteOrderBookResponse(request_id=r.request_id, error_message=result.error)
        return _response(_DELETE_RESPONSE, response), not result.error

    def _clear(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        result = self.engine.clear_book(r.order_book_id, timestamp)
        if result.error:
            return _response(
                _CLEAR_RESPONSE,
                pb.ClearOrderBookResponse(request_id=r.request_id, error_message=result.error),
            ), False
        response = pb.ClearOrderBookResponse(
            request_id=r.request_id, cancelled_orders=result.cancelled_orders
        )
        return _response(_CLEAR_RESPONSE, response), True

    def _stats(self, r: Any, timestamp: int) -> tuple[bytes, bool]:
        stats = self.engine.stats()
        response = pb.GetStatsResponse(
            request_id=r.request_id,
            exchange_profit=stats.exchange_profit,
            trade_count=stats.trade_count,
            traded_volume=stats.traded_volume,
            resting_orders=stats.resting_orders,
        )
        return _response(_STATS_RESPONSE, response), False


def _response(response_type: int, message: Message) -> bytes:
    """The frame of a response built as a protobuf message (the rare commands)."""
    return encode_frame(response_type, message.SerializeToString())
