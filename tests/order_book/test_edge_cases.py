"""The flash1 conformance edge cases (README "Edge cases"), one test each."""

from __future__ import annotations

import time

from services.order_book.events import (
    BUY,
    IOC,
    MAX_PRICE_TICKS,
    SELL,
    OnOrderAmended,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)
from tests.order_book.helpers import Desk


def test_cancel_head_of_queue_loses_none_behind_it() -> None:
    d = Desk()
    ids = [d.sell(100, 5).order_id for _ in range(3)]
    assert not d.cancel(ids[0]).error
    assert d.queue(SELL, 100) == [(ids[1], 5), (ids[2], 5)]
    fill = d.buy(100, 10)
    assert fill.traded_quantity == 10
    assert [(t.sell_order_id, t.quantity) for t in d.trades()] == [(ids[1], 5), (ids[2], 5)]


def test_cancel_middle_of_queue_loses_none_behind_it() -> None:
    d = Desk()
    ids = [d.sell(100, 5).order_id for _ in range(3)]
    assert not d.cancel(ids[1]).error
    assert d.queue(SELL, 100) == [(ids[0], 5), (ids[2], 5)]
    assert d.depth()[1] == [(100, 10)]


def test_fifo_holds_after_scattered_cancels_in_a_deep_queue() -> None:
    d = Desk()
    ids = [d.sell(100, 1).order_id for _ in range(200)]
    cancelled = set(ids[1::3]) | set(ids[::7]) | {ids[-1]}
    for order_id in cancelled:
        assert not d.cancel(order_id).error
    survivors = [i for i in ids if i not in cancelled]
    assert [i for i, _ in d.queue(SELL, 100)] == survivors
    d.events()
    d.buy(100, len(survivors))
    assert [t.sell_order_id for t in d.trades()] == survivors
    assert d.depth() == ([], [])


def test_marketable_order_fills_across_levels_best_price_first() -> None:
    d = Desk()
    a = d.sell(102, 3).order_id
    b = d.sell(100, 3).order_id
    c = d.sell(101, 3).order_id
    d.events()
    result = d.buy(102, 9)
    assert (result.traded_quantity, result.resting_quantity) == (9, 0)
    assert [(t.sell_order_id, t.price_ticks) for t in d.trades()] == [(b, 100), (c, 101), (a, 102)]
    assert d.depth() == ([], [])  # an exact fill leaves nothing resting


def test_non_ioc_residual_rests_and_becomes_the_new_best_price() -> None:
    d = Desk()
    d.sell(100, 3)
    d.sell(101, 3)
    d.buy(90, 1)
    result = d.buy(101, 10)
    assert (result.traded_quantity, result.resting_quantity) == (6, 4)
    assert d.best() == (101, None)
    assert d.depth()[0] == [(101, 4), (90, 1)]


def test_marketable_limit_stops_at_its_own_price_and_rests_the_rest() -> None:
    d = Desk()
    d.sell(100, 2)
    d.sell(103, 2)
    result = d.buy(101, 5)
    assert (result.traded_quantity, result.resting_quantity) == (2, 3)
    assert d.depth() == ([(101, 3)], [(103, 2)])


def test_trades_print_at_the_makers_price_in_both_directions() -> None:
    d = Desk()
    d.sell(100, 1)
    d.events()
    d.buy(105, 1)
    buy_trade = d.trades()[0]
    assert (buy_trade.price_ticks, buy_trade.aggressor_price_ticks) == (100, 100)
    assert buy_trade.aggressor_side == BUY
    d.buy(100, 1)
    d.events()
    d.sell(95, 1)
    sell_trade = d.trades()[0]
    assert (sell_trade.price_ticks, sell_trade.aggressor_price_ticks) == (100, 100)
    assert sell_trade.aggressor_side == SELL


def test_crossing_modify_with_a_better_limit_trades_at_the_makers_price() -> None:
    d = Desk()
    d.sell(100, 2)
    bid = d.buy(95, 2).order_id
    d.events()
    result = d.amend(bid, 110, 2)
    assert (result.traded_quantity, result.resting_quantity) == (2, 0)
    trades = d.trades()
    assert [(t.price_ticks, t.buy_order_id) for t in trades] == [(100, bid)]


def test_modify_that_crosses_matches_instead_of_resting_crossed() -> None:
    d = Desk()
    d.buy(99, 5)
    ask = d.sell(102, 3).order_id
    d.events()
    result = d.amend(ask, 98, 7)
    assert (result.traded_quantity, result.resting_quantity) == (5, 2)
    events = d.events()
    assert isinstance(events[0], OnOrderAmended)
    assert events[0].trade_ids == result.trade_ids
    assert [type(e) for e in events[1:]] == [OnTrade]
    assert d.depth() == ([], [(98, 2)])


def test_repricing_one_of_two_same_price_orders_leaves_the_other_untouched() -> None:
    d = Desk()
    first = d.buy(99, 5).order_id
    second = d.buy(99, 6).order_id
    assert not d.amend(first, 97, 5).error
    assert d.queue(BUY, 99) == [(second, 6)]
    assert d.queue(BUY, 97) == [(first, 5)]
    assert not d.amend(first, 99, 5).error  # back at 99, now behind `second`
    assert d.queue(BUY, 99) == [(second, 6), (first, 5)]


def test_partial_fill_residual_is_conserved_and_can_be_cancelled_or_modified() -> None:
    d = Desk()
    maker = d.sell(100, 10).order_id
    other = d.sell(100, 10).order_id
    d.buy(100, 4)
    assert d.queue(SELL, 100) == [(maker, 6), (other, 10)]
    amended = d.amend(maker, 100, 5)  # reduce: keeps priority
    assert (amended.error, amended.resting_quantity) == ("", 5)
    assert d.queue(SELL, 100) == [(maker, 5), (other, 10)]
    cancelled = d.cancel(maker)
    assert (cancelled.error, cancelled.cancelled_quantity) == ("", 5)
    assert d.depth() == ([], [(100, 10)])


def test_cancel_or_modify_of_filled_cancelled_or_never_issued_orders_is_rejected() -> None:
    d = Desk()
    filled = d.sell(100, 1).order_id
    d.buy(100, 1)
    cancelled = d.buy(90, 1).order_id
    assert not d.cancel(cancelled).error
    d.events()
    for order_id in (filled, cancelled, 12345):
        assert d.cancel(order_id).error
        assert d.amend(order_id, 95, 2).error
    assert d.events() == []


def test_cancelling_the_best_level_leaves_no_phantom_best_price() -> None:
    d = Desk()
    best_bid = d.buy(99, 1).order_id
    d.buy(98, 1)
    best_ask = d.sell(101, 1).order_id
    d.sell(102, 1)
    d.cancel(best_bid)
    d.cancel(best_ask)
    assert d.best() == (98, 102)
    d.events()
    # A sell at 99 must not trade against the cancelled 99 bid; it rests as best ask.
    result = d.sell(99, 1)
    assert (result.traded_quantity, result.resting_quantity) == (0, 1)
    assert d.best() == (98, 99)


def test_ioc_residual_is_cancelled_never_rested() -> None:
    d = Desk()
    d.sell(100, 2)
    d.events()
    result = d.buy(101, 5, tif=IOC)
    assert (result.traded_quantity, result.resting_quantity) == (2, 0)
    events = d.events()
    assert [type(e) for e in events] == [OnOrderInserted, OnTrade, OnOrderCancelled]
    assert isinstance(events[-1], OnOrderCancelled)
    assert events[-1].cancelled_quantity == 3
    assert d.depth() == ([], [])


def test_partly_consumed_maker_keeps_its_place_between_separate_aggressors() -> None:
    d = Desk()
    maker = d.sell(100, 10).order_id
    behind = d.sell(100, 10).order_id
    d.events()
    d.buy(100, 3)
    d.buy(100, 3)
    assert [t.sell_order_id for t in d.trades()] == [maker, maker]
    assert d.queue(SELL, 100) == [(maker, 4), (behind, 10)]
    d.buy(100, 6)
    assert [(t.sell_order_id, t.quantity) for t in d.trades()] == [(maker, 4), (behind, 2)]


def test_prices_near_the_top_of_the_representable_range_work() -> None:
    d = Desk()
    top = MAX_PRICE_TICKS
    ask = d.sell(top, 2).order_id
    d.sell(top - 1, 1)
    d.buy(top - 2, 1)
    assert d.best() == (top - 2, top - 1)
    d.events()
    result = d.buy(top, 3)
    assert result.traded_quantity == 3
    assert [(t.price_ticks, t.sell_order_id == ask) for t in d.trades()] == [
        (top - 1, False),
        (top, True),
    ]
    assert d.sell(top + 1, 1).error


def test_single_price_sweep_of_5000_fills_is_correct_and_fast() -> None:
    d = Desk()
    makers = [d.sell(100, 1).order_id for _ in range(5000)]
    d.events()
    started = time.perf_counter()
    result = d.buy(100, 5000)
    elapsed = time.perf_counter() - started
    assert result.traded_quantity == 5000
    assert result.trade_ids == tuple(range(result.trade_ids[0], result.trade_ids[0] + 5000))
    trades = d.trades()
    assert [t.sell_order_id for t in trades] == makers
    assert d.depth() == ([], [])
    assert elapsed < 0.5, f"5,000-fill sweep took {elapsed:.3f}s"
