"""The instrument registry: which symbol trades in which order book.

Admin creates and deletes instruments through Info (messages 130-133) as the second
phase of its two-phase lifecycle; Info is where the Risk Gateway and every
market-data client learn them. This module holds the rules (what a valid
instrument is, uniqueness among live instruments) and the persisted form; the shell
does the waiting, broadcasting and file writing.

Also kept per instrument, because they share its lifetime: the trade counter that
numbers the instrument's ``OnTrade`` messages and the last-trade figures that
``QuotesResponse`` reports. A symbol deleted and created again is a new instrument
with fresh figures.

Pure: no asyncio, no protobuf, no I/O (a test checks the imports).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from services.common.prices import check_tick_size
from services.info.events import RESTING_ORDER_PRICE, SPREAD_CAPTURE

__all__ = ["FORMAT_VERSION", "Instrument", "Registry", "RegistryError", "TradeStats"]

SYMBOL_RE: Final = re.compile(r"[A-Z0-9.\-]{1,16}")
FORMAT_VERSION: Final = 1
"""Version of :meth:`Registry.to_dict`'s layout (checked when loading)."""


class RegistryError(ValueError):
    """A persisted registry that cannot be loaded (corrupt or from a newer version)."""


@dataclass(slots=True)
class TradeStats:
    """Trade figures of one instrument (the ``Quote`` and the ``OnTrade`` numbering)."""

    trade_count: int = 0
    """Trades seen so far; the last ``OnTrade`` sent carried this sequence number."""
    last_price_ticks: int = 0
    last_quantity: int = 0
    last_timestamp: int = 0
    traded_volume: int = 0

    def record(self, price_ticks: int, quantity: int, timestamp: int) -> int:
        """Count one trade; returns its per-instrument sequence number."""
        self.trade_count += 1
        self.last_price_ticks = price_ticks
        self.last_quantity = quantity
        self.last_timestamp = timestamp
        self.traded_volume += quantity
        return self.trade_count


@dataclass(slots=True)
class Instrument:
    """A live instrument, as ``OnInstrument`` announces it."""

    symbol: str
    description: str
    currency: str
    multiplier: float
    tick_size: float
    order_book_id: int
    price_rule: int
    created_timestamp: int
    stats: TradeStats = field(default_factory=TradeStats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "description": self.description,
            "currency": self.currency,
            "multiplier": self.multiplier,
            "tick_size": self.tick_size,
            "order_book_id": self.order_book_id,
            "price_rule": self.price_rule,
            "created_timestamp": self.created_timestamp,
            "stats": {
                "trade_count": self.stats.trade_count,
                "last_price_ticks": self.stats.last_price_ticks,
                "last_quantity": self.stats.last_quantity,
                "last_timestamp": self.stats.last_timestamp,
                "traded_volume": self.stats.traded_volume,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instrument:
        stats = data.get("stats") or {}
        return cls(
            symbol=str(data["symbol"]),
            description=str(data["description"]),
            currency=str(data["currency"]),
            multiplier=float(data["multiplier"]),
            tick_size=float(data["tick_size"]),
            order_book_id=int(data["order_book_id"]),
            price_rule=int(data["price_rule"]),
            created_timestamp=int(data["created_timestamp"]),
            stats=TradeStats(
                trade_count=int(stats.get("trade_count", 0)),
                last_price_ticks=int(stats.get("last_price_ticks", 0)),
                last_quantity=int(stats.get("last_quantity", 0)),
                last_timestamp=int(stats.get("last_timestamp", 0)),
                traded_volume=int(stats.get("traded_volume", 0)),
            ),
        )


def check_symbol(symbol: str) -> str | None:
    """Why ``symbol`` is not a valid instrument symbol, or None."""
    if not symbol:
        return "instrument symbol must not be empty"
    if len(symbol) > 16:
        return "instrument symbol is longer than 16 characters"
    if SYMBOL_RE.fullmatch(symbol) is None:
        return "instrument symbol may contain only A-Z, 0-9, '.' and '-'"
    return None


class Registry:
    """Live instruments by symbol (in creation order) and by order book."""

    __slots__ = ("_by_book", "_by_symbol")

    def __init__(self) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._by_book: dict[int, Instrument] = {}

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __iter__(self) -> Iterator[Instrument]:
        """Live instruments in creation order."""
        return iter(list(self._by_symbol.values()))

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def by_book(self, order_book_id: int) -> Instrument | None:
        return self._by_book.get(order_book_id)

    def check_new(
        self,
        symbol: str,
        tick_size: float,
        multiplier: float,
        order_book_id: int,
    ) -> str | None:
        """Why an instrument with these fields cannot be created (book aside), or None.

        Whether the order book exists is the caller's business (it may have to wait
        for the book's creation event); everything else is decided here.
        """
        problem = check_symbol(symbol)
        if problem is not None:
            return problem
        if symbol in self._by_symbol:
            return f"instrument {symbol} already exists"
        tick_problem = check_tick_size(tick_size)
        if tick_problem is not None:
            return tick_problem.message
        if not math.isfinite(multiplier) or multiplier < 0:
            return "multiplier must be finite and not negative"
        if order_book_id <= 0:
            return "order_book_id must be a positive order book id"
        other = self._by_book.get(order_book_id)
        if other is not None:
            return f"order book {order_book_id} already belongs to instrument {other.symbol}"
        return None

    def add(self, instrument: Instrument) -> None:
        """Register a checked instrument (see :meth:`check_new`)."""
        if instrument.price_rule not in (RESTING_ORDER_PRICE, SPREAD_CAPTURE):
            raise ValueError(f"unknown price rule {instrument.price_rule}")
        self._by_symbol[instrument.symbol] = instrument
        self._by_book[instrument.order_book_id] = instrument

    def remove(self, symbol: str) -> Instrument | None:
        """Forget a live instrument; returns it, or None if there was none."""
        instrument = self._by_symbol.pop(symbol, None)
        if instrument is not None:
            self._by_book.pop(instrument.order_book_id, None)
        return instrument

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "instruments": [i.to_dict() for i in self._by_symbol.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registry:
        """Rebuild a registry saved by :meth:`to_dict`; :class:`RegistryError` if unusable."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise RegistryError(f"unsupported registry format (expected version {FORMAT_VERSION})")
        registry = cls()
        try:
            for item in data["instruments"]:
                instrument = Instrument.from_dict(item)
                problem = registry.check_new(
                    instrument.symbol,
                    instrument.tick_size,
                    instrument.multiplier,
                    instrument.order_book_id,
                )
                if problem is not None:
                    raise RegistryError(f"invalid saved instrument: {problem}")
                registry.add(instrument)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"corrupt registry: {exc!r}") from None
        return registry
