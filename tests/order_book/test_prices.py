"""services.common.prices: the wire-price rule of PROTOCOL.md section 2, both ways."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.prices import MAX_TICKS, PriceError, check_tick_size, from_ticks, to_ticks

TICKS = [0.01, 0.005, 0.05, 0.25, 0.5, 1.0, 5.0, 0.1, 0.001, 1e-05, 0.0001, 2.5, 1e-8, 100.0]


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        (100.01, 0.01, 10001),
        (0.01, 0.01, 1),
        (167.565, 0.005, 33513),
        (0.3, 0.1, 3),
        (1e-05, 1e-05, 1),
        (2.5, 0.5, 5),
        (MAX_TICKS * 1.0, 1.0, MAX_TICKS),
        (MAX_TICKS * 0.5, 0.5, MAX_TICKS),
    ],
)
def test_valid_prices_convert_to_ticks(price: float, tick: float, expected: int) -> None:
    assert to_ticks(price, tick) == expected


@pytest.mark.parametrize(
    ("price", "tick", "reason"),
    [
        (math.nan, 0.01, "not a number"),
        (math.inf, 0.01, "finite"),
        (-math.inf, 0.01, "greater than zero"),
        (0.0, 0.01, "greater than zero"),
        (-0.0, 0.01, "greater than zero"),
        (-1.0, 0.01, "greater than zero"),
        (100.015, 0.01, "multiple of the tick size"),
        (100.001, 0.01, "multiple of the tick size"),
        (0.004, 0.01, "below one tick"),
        (1e-300, 0.01, "below one tick"),
        ((MAX_TICKS + 2) * 1.0, 1.0, "maximum"),
        (1e300, 1e-300, "maximum"),
        (1.7976931348623157e308, 0.5, "maximum"),
    ],
)
def test_invalid_prices_are_refused_with_a_reason(price: float, tick: float, reason: str) -> None:
    result = to_ticks(price, tick)
    assert isinstance(result, PriceError), result
    assert reason in result.message


def test_tolerance_accepts_representation_noise_only() -> None:
    assert to_ticks(0.1 + 0.2, 0.1) == 3  # 0.30000000000000004
    assert to_ticks(100.01 * (1 + 5e-10), 0.01) == 10001
    assert isinstance(to_ticks(100.01 * (1 + 5e-9), 0.01), PriceError)


@pytest.mark.parametrize("tick", [0.0, -0.01, math.nan, math.inf, -math.inf])
def test_bad_tick_sizes_are_named(tick: float) -> None:
    assert isinstance(check_tick_size(tick), PriceError)


def test_good_tick_sizes_pass() -> None:
    for tick in TICKS:
        assert check_tick_size(tick) is None
    assert check_tick_size(True) is not None  # a bool is not a number here


@pytest.mark.parametrize(
    ("n", "tick", "text"),
    [
        (10001, 0.01, "100.01"),
        (3, 0.1, "0.3"),
        (33513, 0.005, "167.565"),
        (7, 1e-05, "7e-05"),
        (123, 0.0001, "0.0123"),
        (4, 2.5, "10.0"),
        (3, 5.0, "15.0"),
        (1, 1e-8, "1e-08"),
    ],
)
def test_from_ticks_gives_the_nice_double(n: int, tick: float, text: str) -> None:
    price = from_ticks(n, tick)
    assert price == float(text)
    assert repr(price) == text


@settings(max_examples=500, derandomize=True)
@given(tick=st.sampled_from(TICKS), n=st.integers(1, 2**50))
def test_round_trip_ticks_to_price_to_ticks(tick: float, n: int) -> None:
    """Every tick count a double can resolve survives the trip (2**50 leaves each
    tick several ulps wide; at 2**53 a double cannot tell 0.01-ticks apart)."""
    assert to_ticks(from_ticks(n, tick), tick) == n


@settings(max_examples=300, derandomize=True)
@given(tick=st.sampled_from([0.5, 1.0, 2.0, 0.25]), n=st.integers(1, MAX_TICKS))
def test_round_trip_up_to_the_maximum_for_binary_ticks(tick: float, n: int) -> None:
    assert to_ticks(from_ticks(n, tick), tick) == n


@settings(max_examples=300, derandomize=True)
@given(tick=st.sampled_from(TICKS), n=st.integers(1, 10**9))
def test_from_ticks_matches_the_decimal_text(tick: float, n: int) -> None:
    """The double is the one nearest the exact decimal product (what a person types)."""
    from decimal import Decimal

    exact = Decimal(repr(tick)) * n
    assert from_ticks(n, tick) == float(exact)


@settings(max_examples=500, derandomize=True)
@given(price=st.floats(allow_nan=True, allow_infinity=True), tick=st.sampled_from(TICKS))
def test_to_ticks_never_raises_and_obeys_the_rule(price: float, tick: float) -> None:
    result = to_ticks(price, tick)
    if isinstance(result, PriceError):
        assert result.message
        return
    assert 1 <= result <= MAX_TICKS
    assert abs(result * tick - price) <= 1e-9 * price


def test_the_tick_memo_remembers_accepted_prices_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common import prices

    memo = prices.tick_memo(0.25)
    assert prices.tick_memo(0.25) is memo  # one memo per tick size in the process
    assert prices.to_ticks_remembered(memo, 10.25, 0.25) == 41
    assert memo[10.25] == 41
    refused = prices.to_ticks_remembered(memo, 10.3, 0.25)
    assert isinstance(refused, PriceError) and 10.3 not in memo
    assert isinstance(prices.to_ticks_remembered(memo, math.nan, 0.25), PriceError)
    monkeypatch.setattr(prices, "TICK_MEMO_LIMIT", len(memo))
    assert prices.to_ticks_remembered(memo, 0.5, 0.25) == 2
    assert memo == {0.5: 2}  # full: emptied, then refilled
