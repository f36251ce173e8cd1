"""The order table: fills at each side's price, remainders vs. unsolicited cancels,
deferred decisions for cancels in flight, sequence gaps, and a differential test
of exposures and fills against the real matching engine."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.clock import ManualClock
from services.common.prices import from_ticks
from services.order_book.engine import Engine
from services.order_book.events import (
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)
from services.risk_gateway.limits import RiskEngine, amount_unit
from services.risk_gateway.orders import Cancelled, Fill, OrderTable

BUY, SELL = 0, 1
GTC, IOC, FOK = 0, 1, 2
TICK = 0.01


@pytest.fixture
def risk() -> RiskEngine:
    return RiskEngine(ManualClock().monotonic)


@pytest.fixture
def table(risk: RiskEngine) -> OrderTable:
    table = OrderTable(risk.exposure)
    table.book_created(1, TICK)
    return table


def test_a_trade_fills_both_owners_at_their_own_prices(table: OrderTable) -> None:
    table.inserted(1, 1, SELL, 10.0, 5, "alice", GTC, snapshot=False)
    table.inserted(2, 1, BUY, 10.5, 3, "bob", GTC, snapshot=False)
    fills = table.trade(7, 2, 1, 10.0, 10.5, 3, BUY, 123)  # spread capture: bob pays 10.5
    assert fills == [
        Fill("bob", 2, 1, 7, BUY, 10.5, 3, 0, 123),
        Fill("alice", 1, 1, 7, SELL, 10.0, 3, 2, 123),
    ]
    assert table.get(2) is None and table.get(1) is not None


def test_exposure_follows_insert_fill_amend_and_cancel(table: OrderTable, risk: RiskEngine) -> None:
    table.inserted(1, 1, BUY, 10.0, 10, "alice", GTC, snapshot=False)
    exposure = risk.exposure("alice", 1)
    unit = amount_unit(TICK)
    assert (exposure.quantity, exposure.amount) == (10, 10 * 1000 * unit)
    table.inserted(2, 1, SELL, 10.0, 4, "bob", GTC, snapshot=False)
    table.trade(1, 1, 2, 10.0, 10.0, 4, SELL, 0)
    assert exposure.quantity == 6
    table.amended(1, 9.5, 8)
    assert (exposure.quantity, exposure.amount) == (8, 8 * 950 * unit)
    assert table.cancelled(1, 8, 0) is not None  # nobody asked: unsolicited
    assert (exposure.quantity, exposure.amount) == (0, 0)
    assert risk.user("alice").outstanding == 0


def test_ioc_and_fok_never_rest_and_their_remainders_are_not_notified(
    table: OrderTable, risk: RiskEngine
) -> None:
    table.inserted(1, 1, BUY, 10.0, 5, "alice", IOC, snapshot=False)
    assert risk.exposure("alice", 1).quantity == 0
    assert table.cancelled(1, 5, 0) is None
    table.inserted(2, 1, BUY, 10.0, 5, "alice", FOK, snapshot=False)
    assert table.cancelled(2, 5, 0) is None


def test_a_cancel_in_flight_decides_whether_the_owner_is_told(table: OrderTable) -> None:
    table.inserted(1, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    table.inserted(2, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    # Our cancel of 1 succeeded: its event was ours.
    table.expect_cancel(1)
    assert table.cancelled(1, 5, 0) is None
    assert table.cancel_done(1, True) is None
    # A clear beat our cancel of 2: the owner must hear about it.
    table.expect_cancel(2)
    assert table.cancelled(2, 5, 9) is None
    assert table.cancel_done(2, False) == Cancelled("alice", 2, 1, 5, 9)


def test_two_cancels_in_flight_one_succeeding(table: OrderTable) -> None:
    table.inserted(1, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    table.expect_cancel(1)
    table.expect_cancel(1)
    assert table.cancelled(1, 5, 0) is None
    assert table.cancel_done(1, True) is None
    assert table.cancel_done(1, False) is None


def test_sequence_gaps_are_detected(table: OrderTable) -> None:
    assert table.sequence(0) and table.sequence(0)  # snapshot
    assert table.sequence(41)  # first live event: any number
    assert table.sequence(42)
    assert not table.sequence(44)
    assert not table.sequence(0)  # no snapshot after live events


def test_saw_insert_tells_live_inserts_from_snapshot_ones(table: OrderTable) -> None:
    table.inserted(5, 1, BUY, 10.0, 5, "alice", GTC, snapshot=True)
    table.inserted(6, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    assert not table.saw_insert(5) and table.saw_insert(6)


# ------------------------------------------------------------ differential test


def feed(table: OrderTable, events: Sequence[object], ticks: dict[int, float]) -> list[Fill]:
    """Feed engine events to the table the way the wire would carry them."""
    fills: list[Fill] = []
    for event in events:
        if isinstance(event, OnOrderBookCreated):
            ticks[event.order_book_id] = event.tick_size
            table.book_created(event.order_book_id, event.tick_size)
        elif isinstance(event, OnOrderInserted):
            tick = ticks[event.order_book_id]
            table.inserted(
                event.order_id,
                event.order_book_id,
                event.side,
                from_ticks(event.price_ticks, tick),
                event.quantity,
                event.username,
                event.time_in_force,
                snapshot=False,
            )
        elif isinstance(event, OnTrade):
            tick = ticks[event.order_book_id]
            fills += table.trade(
                event.trade_id,
                event.buy_order_id,
                event.sell_order_id,
                from_ticks(event.price_ticks, tick),
                from_ticks(event.aggressor_price_ticks, tick),
                event.quantity,
                event.aggressor_side,
                event.timestamp,
            )
        elif isinstance(event, OnOrderCancelled):
            table.cancelled(event.order_id, event.cancelled_quantity, event.timestamp)
        elif isinstance(event, OnOrderAmended):
            tick = ticks[event.order_book_id]
            table.amended(event.order_id, from_ticks(event.price_ticks, tick), event.quantity)
        elif isinstance(event, OnOrderBookDeleted):
            table.book_deleted(event.order_book_id)
    return fills


USERS = ("alice", "bob", "carol")


def run_differential(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    engine = Engine()
    risk = RiskEngine(ManualClock().monotonic)
    table = OrderTable(risk.exposure)
    ticks: dict[int, float] = {}
    engine.create_book(0.01, 0, 0)
    engine.create_book(0.5, 1, 0)
    feed(table, engine.drain_events(), ticks)
    traded = 0
    for step in range(steps):
        book = rng.choice([1, 2])
        roll = rng.random()
        live = list(engine.resting_orders(book))
        if roll < 0.6 or not live:
            engine.insert(
                book,
                rng.choice(USERS),
                rng.choice([BUY, SELL]),
                rng.randint(95, 105),
                rng.randint(1, 20),
                rng.choice([GTC, GTC, GTC, IOC, FOK]),
                "",
                step,
            )
        elif roll < 0.75:
            order = rng.choice(live)
            engine.cancel(book, order.order_id, "", step)
        elif roll < 0.95:
            order = rng.choice(live)
            engine.amend(book, order.order_id, "", rng.randint(95, 105), rng.randint(1, 20), step)
        else:
            engine.clear_book(book, step)
        fills = feed(table, engine.drain_events(), ticks)
        traded += sum(f.quantity for f in fills)
        # Exposures equal the engine's resting orders, per user and book.
        expected: dict[tuple[str, int], tuple[int, int]] = {}
        for order in engine.resting_orders():
            unit = amount_unit(ticks[order.order_book_id])
            q, a = expected.get((order.username, order.order_book_id), (0, 0))
            expected[(order.username, order.order_book_id)] = (
                q + order.quantity,
                a + order.quantity * order.price_ticks * unit,
            )
        for user in USERS:
            for book_id in (1, 2):
                exposure = risk.exposure(user, book_id)
                assert (exposure.quantity, exposure.amount) == expected.get(
                    (user, book_id), (0, 0)
                ), f"seed {seed} step {step}"
            assert risk.user(user).outstanding == sum(
                q for (u, _), (q, _) in expected.items() if u == user
            )
        assert {e.order_id for e in table.resting()} == {
            o.order_id for o in engine.resting_orders()
        }
    # Every trade was reported to both sides.
    assert traded == 2 * engine.stats().traded_volume, f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exposures_match_the_engine_on_seeded_streams(seed: int) -> None:
    print(f"seed={seed}")
    run_differential(seed, 600)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_exposures_match_the_engine_property(seed: int) -> None:
    run_differential(seed, 120)


# ------------------------------------------------------------ settled without a barrier


def test_insert_settled_only_once_all_of_its_events_are_in(table: OrderTable) -> None:
    # A GTC that traded twice: OnOrderInserted, then two trades.
    table.inserted(1, 1, SELL, 10.0, 3, "bob", GTC, snapshot=False)
    assert not table.insert_settled(2, (5, 6), GTC, 3, 5)
    table.inserted(2, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    assert not table.insert_settled(2, (5, 6), GTC, 3, 5)
    table.trade(5, 2, 1, 10.0, 10.0, 2, BUY, 0)
    assert not table.insert_settled(2, (5, 6), GTC, 3, 5)
    table.trade(6, 2, 1, 10.0, 10.0, 1, BUY, 0)
    assert table.insert_settled(2, (5, 6), GTC, 3, 5)


def test_an_ioc_remainder_must_be_cancelled_before_the_insert_is_settled(
    table: OrderTable,
) -> None:
    table.inserted(1, 1, BUY, 10.0, 5, "alice", IOC, snapshot=False)
    assert not table.insert_settled(1, (), IOC, 0, 5)
    table.cancelled(1, 5, 0)
    assert table.insert_settled(1, (), IOC, 0, 5)


def test_cancel_and_amend_settled(table: OrderTable) -> None:
    table.inserted(1, 1, BUY, 10.0, 5, "alice", GTC, snapshot=False)
    assert not table.cancel_settled(1)
    assert not table.amend_settled(1, 1001, 5, ())  # new price not seen yet
    assert not table.amend_settled(1, 1000, 3, ())  # reduction not seen yet
    assert table.amend_settled(1, 1000, 5, ())  # same price and quantity: no event
    table.amended(1, 10.01, 5)
    assert table.amend_settled(1, 1001, 5, ())
    table.cancelled(1, 5, 0)
    assert table.cancel_settled(1)
