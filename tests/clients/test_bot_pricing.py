"""The bots' pure pricing rules, property-tested: quotes are two-sided and on
the grid, lean against inventory, and passive noise orders never cross."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from clients.bots import pricing
from services.common.prices import to_ticks as exchange_ticks

ticks = st.integers(1, 10**9)


@given(ticks, st.integers(0, 50), st.integers(0, 100), st.integers(-500, 500), st.integers(0, 300))
def test_quotes_are_two_sided_and_positive(
    fair: int, half: int, size: int, position: int, max_position: int
) -> None:
    quote = pricing.make_quote(fair, half, size, position, max_position)
    assert 1 <= quote.bid < quote.ask and quote.size >= 1


@given(st.integers(1000, 10**6), st.integers(1, 20), st.integers(1, 200))
def test_quotes_lean_against_inventory(fair: int, half: int, position: int) -> None:
    flat = pricing.make_quote(fair, half, 1)
    long = pricing.make_quote(fair, half, 1, position, 200)
    short = pricing.make_quote(fair, half, 1, -position, 200)
    assert long.bid <= flat.bid <= short.bid and long.ask <= flat.ask <= short.ask


@given(
    st.integers(0, 2**32),
    ticks,
    st.one_of(st.none(), ticks),
    st.one_of(st.none(), ticks),
)
def test_passive_noise_never_crosses(
    seed: int, fair: int, bid: int | None, ask: int | None
) -> None:
    if bid is not None and ask is not None and bid >= ask:
        bid, ask = min(bid, ask), max(bid, ask) + 1
    order = pricing.noise_order(random.Random(seed), fair, bid, ask)
    assert order.ticks >= 1 and 1 <= order.quantity <= 10
    if order.marketable:
        assert order.ticks == (ask if order.buy else bid)
    elif order.buy and ask is not None and ask > 1:
        assert order.ticks < ask
    elif not order.buy and bid is not None:
        assert order.ticks > bid


@given(st.integers(1, 10**7), st.sampled_from([0.01, 0.05, 0.5, 1.0, 0.0001, 25.0]))
def test_prices_are_on_the_exchange_grid(n: int, tick: float) -> None:
    price = pricing.price_of(n, tick)
    assert exchange_ticks(price, tick) == n
    assert pricing.to_ticks(price, tick) == n


def test_walk_and_fill_reaction() -> None:
    rng = random.Random(7)
    assert all(pricing.walk(1, rng) >= 1 for _ in range(100))
    assert pricing.after_fill(100, 98, bought=True) == 98  # bought low: fair value down
    assert pricing.after_fill(100, 102, bought=False) == 102
