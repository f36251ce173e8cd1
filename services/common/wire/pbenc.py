"""Protobuf (proto3) wire-format pieces for hand-written encoders on hot paths.

Why this exists: building a protobuf message object field by field and then
serialising it costs about a microsecond per message in Python, most of it in
the message's constructor.  A service that encodes a few fixed message types
millions of times (the Order Book's events and responses) can instead join
pre-encoded tags and values.  The bytes must be *identical* to what
``SerializeToString()`` (upb) produces, because the wire contract is checked
byte for byte; so the rules here are exactly upb's for proto3 fields with
implicit presence:

* fields are written in field-number order;
* a field holding its default (0, empty string, empty list, False, and a double
  whose bits are all zero, i.e. ``+0.0`` but not ``-0.0``) is not written;
* int32, int64 and enum values are varints, a negative value as its 64-bit two's
  complement (always 10 bytes), whether the field is 32 or 64 bits wide;
* doubles are 8 bytes little-endian (wire type 1); strings and bytes are
  length-delimited (wire type 2), strings in UTF-8;
* repeated scalar numbers are packed (proto3's default): one length-delimited
  field holding the values' varints back to back.

The helpers return ``b""`` for a default value wherever that makes the caller
simpler.  Nothing here knows any particular message; the encoders that use it
are checked against ``SerializeToString()`` by property tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

__all__ = [
    "CONTINUED_CHUNK",
    "SMALL_VARINT",
    "bool_field",
    "double_bytes",
    "double_field",
    "int_field",
    "leading_int64_field1",
    "packed_field",
    "packed_varints",
    "string_field",
    "tag",
    "varint",
]

WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_LENGTH: Final = 2

_MASK64: Final = (1 << 64) - 1
_SMALL_LIMIT: Final = 1 << 14
_TWO_CHUNKS: Final = 1 << 28
_LOW14: Final = _SMALL_LIMIT - 1

SMALL_VARINT: Final[tuple[bytes, ...]] = tuple(
    bytes((v,)) if v < 0x80 else bytes(((v & 0x7F) | 0x80, v >> 7)) for v in range(_SMALL_LIMIT)
)
"""Varint of every value below 2**14 (one or two bytes), by value.

Callers on a hot path index it directly for values known to be in range, which
saves the call to :func:`varint`."""

CONTINUED_CHUNK: Final[tuple[bytes, ...]] = tuple(
    bytes(((v & 0x7F) | 0x80, (v >> 7) | 0x80)) for v in range(_SMALL_LIMIT)
)
"""The two bytes of a 14-bit chunk that more chunks follow (both continuation bits):
``CONTINUED_CHUNK[v & 0x3FFF] + SMALL_VARINT[v >> 14]`` is the varint of any
``2**14 <= v < 2**28``."""

_pack_double = struct.Struct("<d").pack
_ZERO_DOUBLE: Final = bytes(8)

# Timestamps (nanoseconds, nine varint bytes) repeat across the response and all
# events of one command, so the varint of the last value above 28 bits is kept,
# and so is the tail of its bits above 28.  Each as one tuple, so that a thread
# switch can never pair a value with another's bytes.  (0 is never looked up.)
_last_large: tuple[int, bytes] = (0, b"")
_last_high: tuple[int, bytes] = (0, b"")


def varint(value: int) -> bytes:
    """Varint of an int32/int64/enum value (negative: 64-bit two's complement).

    Values are encoded 14 bits at a time from two lookup tables: a Python loop
    over 7-bit groups costs three to five times as much for the ids and
    timestamps this is used for.  Raises ``ValueError`` beyond 64 bits, as
    protobuf does for such a field value.
    """
    global _last_large, _last_high
    if value < _SMALL_LIMIT:
        if value >= 0:
            return SMALL_VARINT[value]
        value &= _MASK64
    elif value < _TWO_CHUNKS:
        return CONTINUED_CHUNK[value & _LOW14] + SMALL_VARINT[value >> 14]
    last = _last_large
    if value == last[0]:
        return last[1]
    # Above 28 bits: two continued chunks, then the varint of ``value >> 28``
    # (at least 1, so its encoding is also the minimal tail).  Nanosecond
    # timestamps keep the same high part for a quarter of a second.
    high = value >> 28
    last_high = _last_high
    if high == last_high[0]:
        tail = last_high[1]
    else:
        if high < _SMALL_LIMIT:
            tail = SMALL_VARINT[high]
        elif high < _TWO_CHUNKS:
            tail = CONTINUED_CHUNK[high & _LOW14] + SMALL_VARINT[high >> 14]
        elif value <= _MASK64:
            tail = b"".join(
                (
                    CONTINUED_CHUNK[high & _LOW14],
                    CONTINUED_CHUNK[(high >> 14) & _LOW14],
                    SMALL_VARINT[high >> 28],
                )
            )
        else:
            raise ValueError(f"varint of more than 64 bits: {value}")
        _last_high = (high, tail)
    encoded = CONTINUED_CHUNK[value & _LOW14] + CONTINUED_CHUNK[(value >> 14) & _LOW14] + tail
    _last_large = (value, encoded)
    return encoded


def tag(field_number: int, wire_type: int) -> bytes:
    """The key of a field: its number and wire type as one varint."""
    return varint((field_number << 3) | wire_type)


def int_field(field_number: int, value: int) -> bytes:
    """An int32/int64/enum field, or ``b""`` for 0."""
    if not value:
        return b""
    return tag(field_number, WIRE_VARINT) + varint(value)


def bool_field(field_number: int, value: bool) -> bytes:
    """A bool field, or ``b""`` for False."""
    return tag(field_number, WIRE_VARINT) + b"\x01" if value else b""


def double_bytes(value: float) -> bytes:
    """The 8 little-endian bytes of a double, or ``b""`` when upb omits it.

    upb leaves out a proto3 double whose bits are all zero: ``+0.0`` is omitted,
    ``-0.0`` is written."""
    packed = _pack_double(value)
    return b"" if packed == _ZERO_DOUBLE else packed


def double_field(field_number: int, value: float) -> bytes:
    """A double field, or ``b""`` for +0.0."""
    packed = double_bytes(value)
    return tag(field_number, WIRE_FIXED64) + packed if packed else b""


def string_field(field_number: int, value: str) -> bytes:
    """A string field (UTF-8), or ``b""`` for the empty string."""
    if not value:
        return b""
    encoded = value.encode()
    return tag(field_number, WIRE_LENGTH) + varint(len(encoded)) + encoded


def packed_varints(values: Iterable[int]) -> bytes:
    """The varints of ``values`` back to back (the body of a packed field)."""
    return b"".join([varint(v) for v in values])


def packed_field(field_number: int, values: Iterable[int]) -> bytes:
    """A packed repeated int32/int64 field, or ``b""`` when there are no values."""
    body = packed_varints(values)
    if not body:
        return b""
    return tag(field_number, WIRE_LENGTH) + varint(len(body)) + body


def leading_int64_field1(payload: bytes) -> int:
    """Field 1 read as an int64 varint when it is the first thing in ``payload``, else 0.

    Why: an ``ON_ERROR`` carries the offending request's ``request_id`` "when it
    could be read" (PROTOCOL.md), also for a type the port does not serve or a
    payload that does not parse as a whole.  Every request keeps ``request_id``
    in field 1, and encoders write fields in number order, so a request's id is
    its payload's first varint.  A truncated or over-long varint reads as 0.
    """
    if not payload or payload[0] != 0x08:
        return 0
    value = 0
    shift = 0
    for byte in payload[1:11]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            value &= _MASK64
            return value - (1 << 64) if value >> 63 else value
        shift += 7
    return 0
