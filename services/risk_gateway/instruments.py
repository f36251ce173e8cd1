"""The instruments participants may trade: symbol <-> order book, learned from Info.

Info announces every live instrument to each connection on login
(``OnInstrument``), then each new one and each deletion. The Gateway keeps the
result here so that an order for ``AAPL`` can be forwarded to the right book
with its price checked against the right tick size, and so that a fill in book
7 can be reported to its owner as a fill in ``AAPL``.

Pure: no asyncio, no protobuf. Books of deleted instruments stay known by id
(ids are never reused) so late events of a deleted book still find their symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from services.risk_gateway.limits import amount_unit

__all__ = ["Instrument", "InstrumentDirectory", "valid_symbol"]

_SYMBOL_RE: Final = re.compile(r"[A-Z0-9.\-]{1,16}")


_VALID: set[str] = set()
"""Symbols already found valid: every request names one, and a set lookup is
several times cheaper than the match (bounded: cleared when full)."""
_VALID_MAX: Final = 65536


def valid_symbol(symbol: str) -> bool:
    """PROTOCOL.md: 1-16 characters from ``A-Z``, ``0-9``, ``.`` and ``-``."""
    if symbol in _VALID:
        return True
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return False
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(symbol)
    return True


@dataclass(frozen=True, slots=True)
class Instrument:
    """A live (or formerly live) instrument and its order book."""

    symbol: str
    order_book_id: int
    tick_size: float
    price_rule: int
    unit: int
    """Amount units per tick (see :func:`services.risk_gateway.limits.amount_unit`)."""


class InstrumentDirectory:
    """Live instruments by symbol, and every instrument ever seen by book id."""

    def __init__(self) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._by_book: dict[int, Instrument] = {}
        self._unconfirmed: set[str] | None = None

    def get(self, symbol: str) -> Instrument | None:
        """The live instrument called ``symbol``, or None."""
        return self._by_symbol.get(symbol)

    def by_book(self, order_book_id: int) -> Instrument | None:
        """The instrument (live or deleted) whose book is ``order_book_id``."""
        return self._by_book.get(order_book_id)

    def is_live_book(self, order_book_id: int) -> bool:
        instrument = self._by_book.get(order_book_id)
        return instrument is not None and self._by_symbol.get(instrument.symbol) is instrument

    def __iter__(self) -> Iterator[Instrument]:
        return iter(list(self._by_symbol.values()))

    def __len__(self) -> int:
        return len(self._by_symbol)

    def added(self, symbol: str, order_book_id: int, tick_size: float, price_rule: int) -> None:
        """``OnInstrument``: a new instrument, or one re-announced after a reconnect."""
        current = self._by_symbol.get(symbol)
        if current is None or current.order_book_id != order_book_id:
            instrument = Instrument(
                symbol, order_book_id, tick_size, price_rule, amount_unit(tick_size)
            )
            self._by_symbol[symbol] = instrument
            self._by_book[order_book_id] = instrument
        if self._unconfirmed is not None:
            self._unconfirmed.discard(symbol)

    def deleted(self, symbol: str) -> None:
        """``OnInstrumentDeleted``: the symbol no longer routes."""
        self._by_symbol.pop(symbol, None)
        if self._unconfirmed is not None:
            self._unconfirmed.discard(symbol)

    def begin_resync(self) -> None:
        """A new Info connection: what it does not announce again is gone."""
        self._unconfirmed = set(self._by_symbol)

    def end_resync(self) -> list[str]:
        """Drop instruments the new connection did not announce; returns their symbols."""
        gone = sorted(self._unconfirmed or ())
        for symbol in gone:
            self._by_symbol.pop(symbol, None)
        self._unconfirmed = None
        return gone
