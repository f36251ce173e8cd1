"""Instrument validation (PROTOCOL.md section 2 and the admin create rules)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.admin.model import (
    InstrumentSpec,
    PriceRule,
    check_symbol,
    describe_symbol,
    validate_spec,
)

SYMBOL_RE = re.compile(r"[A-Z0-9.\-]{1,16}")


def spec(**overrides: object) -> InstrumentSpec | str:
    values: dict[str, object] = {
        "symbol": "AAPL",
        "description": "Apple Inc.",
        "currency": "USD",
        "multiplier": 1.0,
        "tick_size": 0.01,
        "price_rule": 0,
    }
    values.update(overrides)
    return validate_spec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("symbol", ["A", "AAPL", "BRK.B", "X-1", "0123456789ABCDEF", "..--"])
def test_valid_symbols(symbol: str) -> None:
    assert check_symbol(symbol) is None


@pytest.mark.parametrize(
    "symbol", ["", "aapl", "A B", "0123456789ABCDEFG", "AAPL\n", "ÄPPL", "A_B", "A$", " A"]
)
def test_invalid_symbols(symbol: str) -> None:
    problem = check_symbol(symbol)
    assert problem is not None and problem.startswith("invalid symbol")


@given(st.text(max_size=20))
def test_symbol_rule_is_exactly_the_protocol_alphabet(symbol: str) -> None:
    assert (check_symbol(symbol) is None) == (SYMBOL_RE.fullmatch(symbol) is not None)


def test_describe_symbol_bounds_hostile_input() -> None:
    shown = describe_symbol("X" * 10_000 + "\n")
    assert len(shown) < 40 and "\n" not in shown


def test_valid_spec() -> None:
    result = spec(price_rule=1, multiplier=100.0)
    assert isinstance(result, InstrumentSpec)
    assert result.price_rule is PriceRule.SPREAD_CAPTURE and result.price_rule.label == (
        "spread-capture"
    )


@pytest.mark.parametrize("tick", [0.0, -0.01, math.nan, math.inf, -math.inf])
def test_invalid_tick_sizes(tick: float) -> None:
    result = spec(tick_size=tick)
    assert isinstance(result, str) and "tick_size" in result


@pytest.mark.parametrize(
    ("overrides", "word"),
    [
        ({"price_rule": 2}, "price_rule"),
        ({"price_rule": -1}, "price_rule"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"multiplier": -1.0}, "multiplier"),
        ({"description": "x" * 257}, "description"),
        ({"currency": "C" * 17}, "currency"),
        ({"symbol": "bad symbol"}, "symbol"),
    ],
)
def test_invalid_fields(overrides: dict[str, object], word: str) -> None:
    result = spec(**overrides)
    assert isinstance(result, str) and word in result


def test_zero_multiplier_and_empty_texts_are_allowed() -> None:
    # A client may send an Instrument with only the symbol set.
    assert isinstance(spec(multiplier=0.0, description="", currency=""), InstrumentSpec)
