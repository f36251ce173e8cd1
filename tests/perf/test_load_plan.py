"""The load generator's pure order-flow planner: mix, prices, bookkeeping, purity."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.load_plan import (
    BUY,
    GTC,
    IOC,
    SELL,
    Instrument,
    Intent,
    Kind,
    Mix,
    Planner,
    RestingOrders,
)

INSTRUMENTS = [Instrument.around("AAA", 0.01), Instrument.around("BBB", 0.05, 20.0)]


def test_mix_parse_round_trips_and_defaults_missing_kinds_to_zero() -> None:
    mix = Mix.parse("passive=3, cancel=1")
    assert (mix.passive, mix.cross, mix.amend, mix.cancel) == (3, 0, 0, 1)
    assert Mix.parse(Mix().text()) == Mix()


@pytest.mark.parametrize("text", ["", "passive=0", "bogus=1", "passive", "cross=-1", "amend=x"])
def test_mix_parse_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        Mix.parse(text)


def test_instrument_prices_are_on_the_tick_grid() -> None:
    instrument = Instrument.around("X", 0.01, 100.0)
    assert instrument.mid_ticks == 10_000
    for ticks in (9_990, 9_995, 10_011):
        price = instrument.price(ticks)
        assert abs(round(price / 0.01) * 0.01 - price) <= 1e-9 * price
    with pytest.raises(ValueError):
        Instrument.around("X", 0.0)


def test_without_resting_orders_amend_and_cancel_become_passive() -> None:
    planner = Planner(INSTRUMENTS, Mix.parse("amend=1,cancel=1"), seed=3)
    intents = [planner.next(RestingOrders()) for _ in range(50)]
    assert {i.kind for i in intents} == {Kind.PASSIVE}


def test_passive_rests_on_its_side_and_cross_goes_through_every_level() -> None:
    planner = Planner(INSTRUMENTS, Mix.parse("passive=1,cross=1"), seed=5, levels=7)
    for _ in range(500):
        intent = planner.next(RestingOrders())
        mid = INSTRUMENTS[intent.instrument].mid_ticks
        if intent.kind is Kind.PASSIVE:
            assert intent.time_in_force == GTC
            assert 1 <= abs(intent.ticks - mid) <= 7
            assert (intent.ticks < mid) == (intent.side == BUY)
        else:
            assert intent.kind is Kind.CROSS and intent.time_in_force == IOC
            assert intent.ticks == (mid + 8 if intent.side == BUY else mid - 8)
        assert 1 <= intent.quantity <= 10


def test_same_seed_same_flow_different_seed_different_flow() -> None:
    def flow(seed: int) -> list[Intent]:
        planner, book = Planner(INSTRUMENTS, Mix(), seed), RestingOrders()
        out = []
        for n in range(200):
            intent = planner.next(book)
            if intent.kind in (Kind.PASSIVE, Kind.CROSS):
                book.rested(n + 1, intent, intent.quantity if intent.kind is Kind.PASSIVE else 0)
            out.append(intent)
        return out

    assert flow(1) == flow(1)
    assert flow(1) != flow(2)


def test_bookkeeping_follows_fills_and_cancels() -> None:
    book = RestingOrders()
    intent = Intent(Kind.PASSIVE, 0, SELL, 10_001, 5)
    book.rested(9, intent, 5)
    book.rested(10, intent, 0)  # nothing rested: not tracked
    assert list(book.orders) == [9]
    book.filled(9, 2)
    assert book.orders[9].quantity == 2
    book.filled(9, 0)
    assert len(book) == 0
    book.rested(11, intent, 5)
    book.gone(11)
    book.gone(12)  # unknown ids are ignored
    assert len(book) == 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    weights=st.tuples(*(st.integers(0, 5) for _ in range(4))).filter(lambda w: sum(w) > 0),
    max_resting=st.integers(1, 20),
    fills=st.lists(st.integers(0, 1000), max_size=30),
)
def test_amends_and_cancels_target_only_resting_orders_and_never_twice(
    seed: int, weights: tuple[int, int, int, int], max_resting: int, fills: list[int]
) -> None:
    print(f"seed={seed}")
    mix = Mix(*(float(w) for w in weights))
    planner = Planner(INSTRUMENTS, mix, seed, max_resting=max_resting)
    book = RestingOrders()
    cancelled: set[int] = set()
    next_id = 1
    for n in range(300):
        if fills and n % 10 == 0:
            book.filled(fills.pop(), 0)
        before = dict(book.orders)
        intent = planner.next(book)
        if intent.kind is Kind.CANCEL:
            assert intent.order_id in before and intent.order_id not in book.orders
            assert intent.order_id not in cancelled
            cancelled.add(intent.order_id)
        elif intent.kind is Kind.AMEND:
            assert intent.order_id in before
            assert list(book.orders)[-1] == intent.order_id  # moved to the back
            assert book.orders[intent.order_id].side == before[intent.order_id].side
        else:
            assert intent.order_id == 0
            book.rested(next_id, intent, intent.quantity if intent.kind is Kind.PASSIVE else 0)
            next_id += 1
        assert len(book) <= max_resting


def test_planner_module_is_pure() -> None:
    source = Path(__file__).resolve().parents[2] / "clients" / "load_plan.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "random", "dataclasses", "enum", "typing"}
