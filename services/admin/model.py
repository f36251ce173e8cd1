"""Admin's domain: instrument specs, listings, books, and the validation rules.

Pure (no asyncio, no protobuf): ``translate.py`` turns wire messages into these
objects, so everything Admin decides about an instrument can be unit-tested
without sockets.

Why validation lives here and not only in the Order Book or Info: Admin is the
one place a bad instrument can be stopped *before* anything is created, so a
refused create changes nothing anywhere (PROTOCOL.md, "Instrument lifecycle",
step 1). Info and the Order Book check again; that is fine.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Final, NewType

__all__ = [
    "MAX_CURRENCY_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_SYMBOL_CHARS",
    "BookId",
    "BookInfo",
    "InstrumentSpec",
    "Listing",
    "PriceRule",
    "Symbol",
    "check_symbol",
    "describe_symbol",
    "validate_spec",
]

Symbol = NewType("Symbol", str)
BookId = NewType("BookId", int)

MAX_SYMBOL_CHARS: Final = 16
#: Descriptions and currencies travel to every market-data client on login, so
#: they are bounded; a real company name is far shorter.
MAX_DESCRIPTION_CHARS: Final = 256
MAX_CURRENCY_CHARS: Final = 16

_SYMBOL_RE: Final = re.compile(r"[A-Z0-9.\-]{1,16}")
_SHOWN_CHARS: Final = 24


class PriceRule(enum.IntEnum):
    """Numbered exactly like the protobuf ``PriceRule`` enum in common.proto."""

    RESTING_ORDER_PRICE = 0
    SPREAD_CAPTURE = 1

    @property
    def label(self) -> str:
        """The short name the admin CLI uses (``resting`` / ``spread-capture``)."""
        return "resting" if self is PriceRule.RESTING_ORDER_PRICE else "spread-capture"


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """What an operator asks for when creating an instrument."""

    symbol: Symbol
    description: str
    currency: str
    multiplier: float
    tick_size: float
    price_rule: PriceRule


@dataclass(frozen=True, slots=True)
class Listing:
    """A live instrument as Info publishes it (``OnInstrument``)."""

    spec: InstrumentSpec
    order_book_id: BookId
    created_timestamp: int

    @property
    def symbol(self) -> Symbol:
        return self.spec.symbol


@dataclass(frozen=True, slots=True)
class BookInfo:
    """A live order book as the Order Book announces it (``OnOrderBookCreated``)."""

    order_book_id: BookId
    tick_size: float
    price_rule: PriceRule


def describe_symbol(symbol: str) -> str:
    """A safe, bounded rendering of a client-supplied symbol for error texts."""
    shown = symbol if len(symbol) <= _SHOWN_CHARS else symbol[:_SHOWN_CHARS] + "..."
    return repr(shown)


def check_symbol(symbol: str) -> str | None:
    """Why ``symbol`` is not a valid instrument symbol, or None if it is.

    PROTOCOL.md section 2: 1-16 characters from ``A-Z``, ``0-9``, ``.`` and ``-``.
    Lower case is refused rather than folded, so what the operator typed is what
    participants must type.
    """
    if not symbol:
        return "invalid symbol: must not be empty"
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return (
            f"invalid symbol {describe_symbol(symbol)}: must be 1-{MAX_SYMBOL_CHARS} "
            "characters from A-Z, 0-9, '.' and '-'"
        )
    return None


def _check_tick_size(tick_size: float) -> str | None:
    if math.isnan(tick_size):
        return "invalid tick_size: not a number (NaN)"
    if math.isinf(tick_size):
        return "invalid tick_size: must be finite"
    if tick_size <= 0:
        return f"invalid tick_size {tick_size!r}: must be greater than zero"
    return None


def validate_spec(
    symbol: str,
    description: str,
    currency: str,
    multiplier: float,
    tick_size: float,
    price_rule: int,
) -> InstrumentSpec | str:
    """Build an :class:`InstrumentSpec`, or return the first reason it is invalid.

    Uniqueness is not checked here: it depends on the live instruments, which
    only the lifecycle (holding the symbol's lock) can look at safely.
    """
    problem = check_symbol(symbol) or _check_tick_size(tick_size)
    if problem:
        return problem
    if price_rule not in PriceRule._value2member_map_:
        return f"invalid price_rule {price_rule}: expected 0 (RESTING_ORDER_PRICE) or 1 (SPREAD_CAPTURE)"
    if not math.isfinite(multiplier) or multiplier < 0:
        return f"invalid multiplier {multiplier!r}: must be finite and not negative"
    if len(description) > MAX_DESCRIPTION_CHARS:
        return f"invalid description: longer than {MAX_DESCRIPTION_CHARS} characters"
    if len(currency) > MAX_CURRENCY_CHARS:
        return f"invalid currency: longer than {MAX_CURRENCY_CHARS} characters"
    return InstrumentSpec(
        symbol=Symbol(symbol),
        description=description,
        currency=currency,
        multiplier=float(multiplier),
        tick_size=float(tick_size),
        price_rule=PriceRule(price_rule),
    )
