"""Price arithmetic for the sample bots, on the integer tick grid.

Why ticks: the exchange refuses any price off its instrument's grid, and
floating-point steps (``100.1 + 0.01``) drift off it.  Bots therefore think in
whole ticks and convert to a price once, with the same rounding the exchange
uses for display (:func:`services.common.prices.from_ticks`).  Pure: no I/O,
so the quoting rules are unit- and property-tested.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.common.prices import from_ticks

DEFAULT_FAIR_VALUE = 100.0
"""Where a bot starts on an instrument that has never traded and has no book."""


def to_ticks(price: float, tick_size: float) -> int:
    """Nearest whole number of ticks, at least 1."""
    return max(1, round(price / tick_size))


def price_of(ticks: int, tick_size: float) -> float:
    """The grid price of ``ticks`` (at least one tick)."""
    return from_ticks(max(1, ticks), tick_size)


@dataclass(frozen=True, slots=True)
class Quote:
    """Both sides of a market maker's quote, in ticks (``bid < ask``)."""

    bid: int
    ask: int
    size: int


def make_quote(
    fair_ticks: int,
    half_spread: int,
    size: int,
    position: int = 0,
    max_position: int = 0,
) -> Quote:
    """Quote around ``fair_ticks``, leaning against the inventory.

    A long market maker lowers both prices (sells more eagerly, buys less), a
    short one raises them, by up to ``half_spread`` ticks at ``max_position``;
    so inventory mean-reverts instead of growing without bound.
    """
    half_spread = max(1, half_spread)
    skew = 0
    if max_position > 0 and position:
        ratio = max(-1.0, min(1.0, position / max_position))
        skew = round(ratio * half_spread)
    bid = max(1, fair_ticks - half_spread - skew)
    ask = max(bid + 1, fair_ticks + half_spread - skew)
    return Quote(bid, ask, max(1, size))


def walk(fair_ticks: int, rng: random.Random, max_step: int = 2) -> int:
    """One random-walk step of a fair value (never below 1 tick)."""
    return max(1, fair_ticks + rng.randint(-max_step, max_step))


def after_fill(fair_ticks: int, fill_ticks: int, bought: bool) -> int:
    """Move the fair value after being filled: being hit on the bid suggests the
    market is lower, being lifted on the offer that it is higher."""
    step = -1 if bought else 1
    return max(1, (fair_ticks + fill_ticks) // 2 + step)


@dataclass(frozen=True, slots=True)
class NoiseOrder:
    """One order of the noise trader."""

    buy: bool
    ticks: int
    quantity: int
    marketable: bool


def noise_order(
    rng: random.Random,
    fair_ticks: int,
    best_bid: int | None,
    best_ask: int | None,
    marketable_share: float = 0.35,
    max_quantity: int = 10,
    max_offset: int = 8,
) -> NoiseOrder:
    """A random order: sometimes crossing the spread (IOC), mostly resting nearby.

    A marketable buy is priced at the best ask (a marketable sell at the best
    bid); without an opposite side it becomes a passive order instead.
    Passive orders rest 1..``max_offset`` ticks on their own side of the fair
    value, never crossing the opposite best price.
    """
    buy = rng.random() < 0.5
    quantity = rng.randint(1, max_quantity)
    opposite = best_ask if buy else best_bid
    if opposite is not None and rng.random() < marketable_share:
        return NoiseOrder(buy, opposite, quantity, True)
    offset = rng.randint(1, max_offset)
    if buy:
        ticks = fair_ticks - offset
        if best_ask is not None:
            ticks = min(ticks, best_ask - 1)
    else:
        ticks = fair_ticks + offset
        if best_bid is not None:
            ticks = max(ticks, best_bid + 1)
    return NoiseOrder(buy, max(1, ticks), quantity, False)
