"""Price <-> integer tick conversion, shared by every service and client.

Why this module exists: the wire carries prices as doubles, the engines hold them as
integer ticks (PROTOCOL.md section 2). Converting once, at the edge, keeps NaN,
infinities and off-grid values out of the heaps for good (a NaN inside a heap
corrupts its ordering forever). The two directions are:

* :func:`to_ticks` validates a wire price against a tick size and returns the tick
  count ``n``, or a :class:`PriceError` value naming the problem. Rejections are an
  expected outcome on the request path, so they are values, not exceptions.
* :func:`from_ticks` turns ``n`` back into the *nice* double a person would type
  (``10001`` ticks of ``0.01`` is ``100.01``, not ``100.01000000000001``), so that
  market data and responses compare equal to the prices clients sent.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Final, NamedTuple

__all__ = [
    "MAX_TICKS",
    "PriceError",
    "check_tick_size",
    "from_ticks",
    "tick_memo",
    "to_ticks",
    "to_ticks_remembered",
]

#: Largest tick count a price may have (PROTOCOL.md section 2): every tick count up
#: to here is exactly representable as a double, so prices survive the float trip.
MAX_TICKS: Final = 2**53

#: Relative tolerance for "on the grid": absorbs the representation error of decimal
#: prices in binary doubles without letting a genuinely off-grid price through.
_REL_TOLERANCE: Final = 1e-9

# One float of headroom over MAX_TICKS so that a quotient which rounds to MAX_TICKS
# is accepted while anything that would round beyond it is refused before round().
_MAX_QUOTIENT: Final = MAX_TICKS + 0.5


class PriceError(NamedTuple):
    """A price (or tick size) that cannot be used, with a human-readable reason.

    Returned instead of raised: callers on the request path turn it straight into an
    ``error_message`` without paying for an exception.
    """

    message: str


def check_tick_size(tick_size: float) -> PriceError | None:
    """Return why ``tick_size`` is unusable (not finite or not > 0), or None if fine."""
    if not isinstance(tick_size, int | float) or isinstance(tick_size, bool):
        return PriceError("tick_size must be a number")
    if math.isnan(tick_size):
        return PriceError("tick_size is not a number (NaN)")
    if math.isinf(tick_size):
        return PriceError("tick_size must be finite")
    if tick_size <= 0:
        return PriceError("tick_size must be greater than zero")
    return None


def to_ticks(price: float, tick_size: float) -> int | PriceError:
    """Convert a wire price to a whole number of ticks, or say why it cannot be.

    Rule (PROTOCOL.md section 2): with ``n = round(price / tick_size)``, require
    ``1 <= n <= 2**53`` and ``abs(n * tick_size - price) <= 1e-9 * price``.
    NaN, infinities, zero, negatives, off-grid and out-of-range prices are refused.
    ``tick_size`` is trusted here (books validate it once, at creation).
    """
    # `not price > 0` is also true for NaN, which must never reach a comparison chain.
    if not price > 0.0:
        if price != price:
            return PriceError("price is not a number (NaN)")
        return PriceError("price must be greater than zero")
    quotient = price / tick_size
    if not quotient <= _MAX_QUOTIENT:  # also catches +inf prices and inf quotients
        if math.isinf(price):
            return PriceError("price must be finite")
        return PriceError(f"price is above the maximum of {MAX_TICKS} ticks")
    n = round(quotient)
    if n < 1:
        return PriceError(f"price is below one tick ({tick_size!r})")
    if abs(n * tick_size - price) > _REL_TOLERANCE * price:
        return PriceError(f"price is not a multiple of the tick size {tick_size!r}")
    return n


# tick_size -> number of decimals of its shortest repr; a handful of entries at most.
_DECIMALS: dict[float, int] = {}


def _decimals_of(tick_size: float) -> int:
    """Decimals in the shortest round-tripping repr of ``tick_size`` (0.005 -> 3)."""
    exponent = Decimal(repr(float(tick_size))).as_tuple().exponent
    assert isinstance(exponent, int), "tick_size must be finite"
    return -exponent if exponent < 0 else 0


def from_ticks(n: int, tick_size: float) -> float:
    """The double a person would write for ``n`` ticks of ``tick_size``.

    ``n * tick_size`` carries binary representation noise (10001 * 0.01 is
    100.01000000000001); rounding it to as many decimals as the tick size's shortest
    repr has yields the double nearest the exact decimal product, i.e. exactly what
    ``float("100.01")`` gives. The decimal count is cached per tick size, so this is
    one dict lookup, one multiplication and one ``round``.
    """
    decimals = _DECIMALS.get(tick_size)
    if decimals is None:
        decimals = _DECIMALS[tick_size] = _decimals_of(tick_size)
    return round(n * tick_size, decimals)


# ---------------------------------------------------------------------- memo

TICK_MEMO_LIMIT = 1 << 16
"""Prices a tick size's memo holds before it is emptied and refilled: prices
cluster on a few thousand levels, and the bound keeps a client that sends a new
price every time from growing it without end."""

_tick_memos: dict[float, dict[float, int]] = {}


def tick_memo(tick_size: float) -> dict[float, int]:
    """Accepted wire prices -> ticks for ``tick_size``, shared by the process.

    Why: every order and every event carries a price, and :func:`to_ticks`
    (a division, a rounding and a tolerance check) costs several lookups'
    worth. It depends on nothing but the two numbers, so its answers can be
    kept. Hot paths look up ``memo.get(price)`` themselves and call
    :func:`to_ticks_remembered` only on a miss.
    """
    memo = _tick_memos.get(tick_size)
    if memo is None:
        memo = _tick_memos[tick_size] = {}
    return memo


def to_ticks_remembered(memo: dict[float, int], price: float, tick_size: float) -> int | PriceError:
    """:func:`to_ticks` for a price ``memo`` lacks, remembering it if accepted.

    A refused price is never remembered: it is checked afresh each time (NaN,
    which equals nothing, could not be found again anyway).
    """
    converted = to_ticks(price, tick_size)
    if isinstance(converted, PriceError):
        return converted
    if len(memo) >= TICK_MEMO_LIMIT:
        memo.clear()
    memo[price] = converted
    return converted
