"""Engine behaviour: IOC/FOK, amend priority rules, price rules, rejections,
idempotency, ids and sequence numbers, delete/clear, snapshots, stats and hashing."""

from __future__ import annotations

import gc

import pytest

from services.order_book.engine import (
    ERR_CLIENT_ORDER_ID,
    ERR_PRICE,
    ERR_QUANTITY,
    ERR_SIDE,
    ERR_TIME_IN_FORCE,
    ERR_UNKNOWN_BOOK,
    ERR_UNKNOWN_ORDER,
    Engine,
)
from services.order_book.events import (
    BUY,
    FOK,
    GTC,
    IOC,
    MAX_PRICE_TICKS,
    MAX_QUANTITY,
    RESTING_ORDER_PRICE,
    SELL,
    SPREAD_CAPTURE,
    BookInfo,
    CancelReason,
    CancelResult,
    InsertResult,
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
    RestingOrder,
)
from tests.order_book.helpers import Desk

# ----------------------------------------------------------------------- IOC / FOK


def test_ioc_that_trades_nothing_is_accepted_inserted_then_cancelled() -> None:
    d = Desk()
    result = d.buy(100, 5, tif=IOC)
    assert result == InsertResult("", result.order_id, result.timestamp, (), 0, 0)
    events = d.events()
    assert [type(e) for e in events] == [OnOrderInserted, OnOrderCancelled]
    inserted, cancelled = events
    assert isinstance(inserted, OnOrderInserted) and isinstance(cancelled, OnOrderCancelled)
    assert (inserted.quantity, inserted.trade_ids, inserted.time_in_force) == (5, (), IOC)
    assert (cancelled.order_id, cancelled.cancelled_quantity) == (result.order_id, 5)
    assert cancelled.reason == CancelReason.UNFILLED
    assert d.depth() == ([], [])


def test_ioc_fully_filled_has_no_cancel_event() -> None:
    d = Desk()
    d.sell(100, 5)
    d.events()
    result = d.buy(100, 5, tif=IOC)
    assert (result.traded_quantity, result.resting_quantity) == (5, 0)
    assert [type(e) for e in d.events()] == [OnOrderInserted, OnTrade]


def test_fok_fills_completely_across_levels() -> None:
    d = Desk()
    d.sell(100, 2)
    d.sell(101, 3)
    d.events()
    result = d.buy(101, 5, tif=FOK)
    assert (result.traded_quantity, result.resting_quantity, len(result.trade_ids)) == (5, 0, 2)
    assert [type(e) for e in d.events()] == [OnOrderInserted, OnTrade, OnTrade]


def test_fok_that_cannot_fill_trades_nothing() -> None:
    d = Desk()
    d.sell(100, 2)
    d.sell(101, 3)
    d.sell(102, 10)  # beyond the limit: does not count
    d.events()
    result = d.buy(101, 6, tif=FOK)
    assert (result.error, result.traded_quantity, result.resting_quantity) == ("", 0, 0)
    events = d.events()
    assert [type(e) for e in events] == [OnOrderInserted, OnOrderCancelled]
    assert isinstance(events[1], OnOrderCancelled) and events[1].cancelled_quantity == 6
    assert d.depth() == ([], [(100, 2), (101, 3), (102, 10)])


def test_fok_against_an_empty_side_and_a_non_crossing_side() -> None:
    d = Desk()
    assert d.sell(100, 1, tif=FOK).traded_quantity == 0
    d.buy(90, 5)
    assert d.sell(91, 1, tif=FOK).traded_quantity == 0
    assert d.sell(90, 5, tif=FOK).traded_quantity == 5


def test_fok_ignores_cancelled_liquidity() -> None:
    d = Desk()
    gone = d.sell(100, 50).order_id
    d.sell(101, 1)
    d.cancel(gone)
    assert d.buy(101, 2, tif=FOK).traded_quantity == 0
    assert d.buy(101, 1, tif=FOK).traded_quantity == 1


# --------------------------------------------------------------------------- amend


def test_amend_reducing_quantity_keeps_priority_in_place() -> None:
    d = Desk()
    first = d.buy(99, 10)
    second = d.buy(99, 10).order_id
    d.events()
    result = d.amend(first.order_id, 99, 4)
    assert (result.error, result.trade_ids, result.resting_quantity, result.side) == (
        "",
        (),
        4,
        BUY,
    )
    [event] = d.events()
    assert isinstance(event, OnOrderAmended)
    assert (event.quantity, event.price_ticks, event.kept_priority) == (4, 99, True)
    assert d.queue(BUY, 99) == [(first.order_id, 4), (second, 10)]
    # The order's priority timestamp is unchanged.
    order = d.engine.get_order(d.book, first.order_id)
    assert order is not None and order.timestamp == first.timestamp


def test_amend_increasing_quantity_loses_priority() -> None:
    d = Desk()
    first = d.buy(99, 10).order_id
    second = d.buy(99, 10).order_id
    d.events()
    result = d.amend(first, 99, 11)
    assert result.resting_quantity == 11
    [event] = d.events()
    assert isinstance(event, OnOrderAmended) and not event.kept_priority
    assert d.queue(BUY, 99) == [(second, 10), (first, 11)]
    order = d.engine.get_order(d.book, first)
    assert order is not None and order.timestamp == result.timestamp


def test_amend_to_a_new_price_moves_to_the_back_of_the_new_level() -> None:
    d = Desk()
    mover = d.sell(105, 3).order_id
    there = d.sell(104, 3).order_id
    result = d.amend(mover, 104, 2)  # new price, even with less quantity: back of the queue
    assert result.resting_quantity == 2
    assert d.queue(SELL, 104) == [(there, 3), (mover, 2)]
    assert d.queue(SELL, 105) == []


def test_amend_to_the_same_price_and_quantity_succeeds_without_event() -> None:
    d = Desk()
    order_id = d.buy(99, 10).order_id
    d.events()
    seq = d.engine.last_sequence_number
    result = d.amend(order_id, 99, 10)
    assert (result.error, result.resting_quantity, result.trade_ids) == ("", 10, ())
    assert d.events() == []
    assert d.engine.last_sequence_number == seq


def test_amend_that_fills_completely_removes_the_order() -> None:
    d = Desk()
    d.sell(100, 5)
    bid = d.buy(95, 5).order_id
    d.events()
    result = d.amend(bid, 100, 5)
    assert (result.traded_quantity, result.resting_quantity) == (5, 0)
    events = d.events()
    assert isinstance(events[0], OnOrderAmended) and events[0].quantity == 5
    assert isinstance(events[1], OnTrade) and events[1].buy_order_id == bid
    assert d.engine.get_order(d.book, bid) is None
    assert d.amend(bid, 99, 1).error == ERR_UNKNOWN_ORDER


def test_amend_keeps_order_id_owner_and_gtc() -> None:
    d = Desk()
    order_id = d.buy(99, 10, user="carol").order_id
    d.amend(order_id, 98, 12)
    order = d.engine.get_order(d.book, order_id)
    assert order is not None
    assert (order.order_id, order.username, order.time_in_force) == (order_id, "carol", GTC)


# --------------------------------------------------------------------- price rules


def test_spread_capture_each_side_gets_its_own_limit_and_the_exchange_the_gap() -> None:
    d = Desk(price_rule=SPREAD_CAPTURE, tick_size=0.01)
    d.sell(100, 5)
    d.sell(101, 5)
    d.events()
    d.buy(103, 7)
    trades = d.trades()
    assert [(t.price_ticks, t.aggressor_price_ticks, t.quantity) for t in trades] == [
        (100, 103, 5),
        (101, 103, 2),
    ]
    # profit = (3 ticks * 5 + 2 ticks * 2) * 0.01 = 0.19, kept exact
    assert d.engine.stats().exchange_profit == 0.19
    d.buy(90, 1)
    d.sell(80, 1)  # sell aggressor receives 80 while the bid gets 90
    [trade] = d.trades()
    assert (trade.price_ticks, trade.aggressor_price_ticks) == (90, 80)
    assert d.engine.stats().exchange_profit == 0.29


def test_resting_order_price_rule_has_no_profit() -> None:
    d = Desk(price_rule=RESTING_ORDER_PRICE)
    d.sell(100, 5)
    d.buy(110, 5)
    assert d.engine.stats().exchange_profit == 0.0


def test_profit_survives_deleting_its_book_and_sums_across_tick_sizes() -> None:
    engine = Engine()
    a = engine.create_book(0.1, SPREAD_CAPTURE, 1).order_book_id
    b = engine.create_book(0.005, SPREAD_CAPTURE, 1).order_book_id
    engine.insert(a, "u", SELL, 10, 3, GTC, "", 2)
    engine.insert(a, "v", BUY, 11, 3, GTC, "", 3)  # 1 tick * 3 * 0.1 = 0.3
    engine.insert(b, "u", SELL, 10, 1, GTC, "", 4)
    engine.insert(b, "v", BUY, 13, 1, GTC, "", 5)  # 3 ticks * 1 * 0.005 = 0.015
    assert engine.stats().exchange_profit == 0.315
    engine.delete_book(a, 6)
    assert engine.stats().exchange_profit == 0.315


# ----------------------------------------------------------------------- rejections


def _assert_nothing_changed(engine: Engine, seq: int, hash_before: str) -> None:
    assert engine.drain_events() == []
    assert engine.last_sequence_number == seq
    assert engine.state_hash() == hash_before


@pytest.mark.parametrize(
    ("book_delta", "side", "price", "qty", "tif", "error"),
    [
        (1, BUY, 100, 1, GTC, ERR_UNKNOWN_BOOK),
        (0, BUY, 100, 0, GTC, ERR_QUANTITY),
        (0, BUY, 100, -5, GTC, ERR_QUANTITY),
        (0, BUY, 100, MAX_QUANTITY + 1, GTC, ERR_QUANTITY),
        (0, SELL, 0, 1, GTC, ERR_PRICE),
        (0, SELL, -1, 1, GTC, ERR_PRICE),
        (0, SELL, MAX_PRICE_TICKS + 1, 1, GTC, ERR_PRICE),
        (0, 2, 100, 1, GTC, ERR_SIDE),
        (0, -1, 100, 1, GTC, ERR_SIDE),
        (0, BUY, 100, 1, 3, ERR_TIME_IN_FORCE),
        (0, BUY, 100, 1, -1, ERR_TIME_IN_FORCE),
    ],
)
def test_refused_inserts_change_nothing(
    book_delta: int, side: int, price: int, qty: int, tif: int, error: str
) -> None:
    d = Desk()
    d.sell(105, 1)
    d.buy(95, 1)
    d.events()
    seq, before = d.engine.last_sequence_number, d.engine.state_hash()
    result = d.engine.insert(d.book + book_delta, "u", side, price, qty, tif, "", d.clock())
    assert result.error == error
    assert (result.order_id, result.trade_ids, result.traded_quantity) == (0, (), 0)
    _assert_nothing_changed(d.engine, seq, before)
    # No id was consumed: the next accepted insert gets the next id.
    assert d.buy(90, 1).order_id == 3


def test_valid_edge_values_are_accepted() -> None:
    d = Desk()
    assert not d.buy(1, MAX_QUANTITY).error
    assert not d.sell(MAX_PRICE_TICKS, 1).error


def test_refused_cancels_change_nothing_and_hide_foreign_orders() -> None:
    d = Desk()
    mine = d.buy(99, 5, user="alice").order_id
    d.events()
    seq, before = d.engine.last_sequence_number, d.engine.state_hash()
    unknown = d.engine.cancel(d.book, 999, "alice", d.clock())
    foreign = d.engine.cancel(d.book, mine, "mallory", d.clock())
    wrong_book = d.engine.cancel(d.book + 1, mine, "alice", d.clock())
    assert unknown == foreign == CancelResult(ERR_UNKNOWN_ORDER, 0, 0, 0)
    assert wrong_book.error == ERR_UNKNOWN_BOOK
    _assert_nothing_changed(d.engine, seq, before)
    assert d.engine.cancel(d.book, mine, "alice", d.clock()) == CancelResult("", 5, BUY, 99)


def test_internal_cancel_with_empty_username_may_cancel_anyones_order() -> None:
    d = Desk()
    order_id = d.sell(101, 5, user="bob").order_id
    assert d.cancel(order_id, user="").cancelled_quantity == 5


def test_refused_amends_change_nothing_and_hide_foreign_orders() -> None:
    d = Desk()
    mine = d.buy(99, 5, user="alice").order_id
    d.sell(101, 5, user="bob")
    d.events()
    seq, before = d.engine.last_sequence_number, d.engine.state_hash()
    refusals = [
        (d.engine.amend(d.book + 1, mine, "alice", 99, 4, 1), ERR_UNKNOWN_BOOK),
        (d.engine.amend(d.book, mine, "alice", 99, 0, 1), ERR_QUANTITY),
        (d.engine.amend(d.book, mine, "alice", 99, MAX_QUANTITY + 1, 1), ERR_QUANTITY),
        (d.engine.amend(d.book, mine, "alice", 0, 4, 1), ERR_PRICE),
        (d.engine.amend(d.book, mine, "alice", MAX_PRICE_TICKS + 1, 4, 1), ERR_PRICE),
        (d.engine.amend(d.book, 12345, "alice", 99, 4, 1), ERR_UNKNOWN_ORDER),
        (d.engine.amend(d.book, mine, "mallory", 99, 4, 1), ERR_UNKNOWN_ORDER),
    ]
    for result, error in refusals:
        assert result.error == error
    assert refusals[-1][0] == refusals[-2][0]  # foreign looks exactly like unknown
    _assert_nothing_changed(d.engine, seq, before)


def test_refused_book_commands_change_nothing() -> None:
    engine = Engine()
    seq, before = engine.last_sequence_number, engine.state_hash()
    assert engine.create_book(0.0, RESTING_ORDER_PRICE, 1).error
    assert engine.create_book(-0.01, RESTING_ORDER_PRICE, 1).error
    assert engine.create_book(float("nan"), RESTING_ORDER_PRICE, 1).error
    assert engine.create_book(float("inf"), RESTING_ORDER_PRICE, 1).error
    assert engine.create_book(0.01, 2, 1).error
    assert engine.delete_book(1, 1).error == ERR_UNKNOWN_BOOK
    assert engine.clear_book(1, 1).error == ERR_UNKNOWN_BOOK
    _assert_nothing_changed(engine, seq, before)
    assert engine.create_book(0.01, RESTING_ORDER_PRICE, 1).order_book_id == 1


# ------------------------------------------------------------------- idempotency


def test_client_order_id_resend_returns_the_original_result_and_changes_nothing() -> None:
    d = Desk()
    d.sell(100, 3)
    first = d.buy(100, 5, coid="c-1")
    assert (first.traded_quantity, first.resting_quantity) == (3, 2)
    d.events()
    seq, before = d.engine.last_sequence_number, d.engine.state_hash()
    again = d.buy(101, 9, coid="c-1")  # other fields differ: ignored
    assert again == first
    again_sell = d.engine.insert(d.book + 5, "alice", SELL, 1, 1, IOC, "c-1", 1)
    assert again_sell == first
    _assert_nothing_changed(d.engine, seq, before)


def test_client_order_ids_are_per_user() -> None:
    d = Desk()
    a = d.buy(90, 1, user="alice", coid="same")
    b = d.buy(90, 1, user="bob", coid="same")
    assert a.order_id != b.order_id


def test_refused_insert_does_not_use_up_its_client_order_id() -> None:
    d = Desk()
    refused = d.buy(90, 0, coid="retry")
    assert refused.error == ERR_QUANTITY
    accepted = d.buy(90, 1, coid="retry")
    assert not accepted.error and accepted.order_id == 1


def test_ioc_outcome_is_remembered_too() -> None:
    d = Desk()
    first = d.buy(90, 1, tif=IOC, coid="ioc")
    d.sell(90, 5)
    assert d.buy(90, 1, tif=IOC, coid="ioc") == first


def test_client_order_id_length_is_capped_at_64_utf8_bytes() -> None:
    d = Desk()
    assert not d.buy(90, 1, coid="x" * 64).error
    assert d.buy(90, 1, coid="x" * 65).error == ERR_CLIENT_ORDER_ID
    assert not d.buy(90, 1, coid="é" * 32).error  # 64 bytes
    assert d.buy(90, 1, coid="é" * 33).error == ERR_CLIENT_ORDER_ID  # 66 bytes, 33 chars
    assert d.buy(90, 1, coid="€" * 22).error == ERR_CLIENT_ORDER_ID  # 66 bytes, 22 chars


# ------------------------------------------------------------- ids and sequencing


def test_ids_are_unique_across_books_and_never_reused() -> None:
    engine = Engine()
    a = engine.create_book(0.01, RESTING_ORDER_PRICE, 1).order_book_id
    b = engine.create_book(0.01, RESTING_ORDER_PRICE, 1).order_book_id
    order_ids: list[int] = []
    trade_ids: list[int] = []
    for i in range(20):
        book = a if i % 2 else b
        order_ids.append(engine.insert(book, "u", SELL, 100, 1, GTC, "", i).order_id)
        result = engine.insert(book, "v", BUY, 100, 1, GTC, "", i)
        order_ids.append(result.order_id)
        trade_ids.extend(result.trade_ids)
    assert order_ids == list(range(1, 41))
    assert trade_ids == list(range(1, 21))
    engine.delete_book(a, 99)
    c = engine.create_book(0.01, RESTING_ORDER_PRICE, 100).order_book_id
    assert c == 3  # book ids are not reused either
    assert engine.insert(c, "u", BUY, 1, 1, GTC, "", 101).order_id == 41


def test_sequence_numbers_are_gap_free_across_everything_and_skip_refusals() -> None:
    engine = Engine()
    book = engine.create_book(0.01, SPREAD_CAPTURE, 1).order_book_id
    engine.insert(book, "u", SELL, 100, 5, GTC, "", 2)
    engine.insert(book, "u", SELL, 101, 5, GTC, "", 3)
    engine.insert(book, "v", BUY, 0, 5, GTC, "", 4)  # refused
    engine.insert(book, "v", BUY, 101, 7, IOC, "", 5)
    engine.cancel(book, 999, "", 6)  # refused
    engine.insert(book, "v", BUY, 90, 1, GTC, "", 7)
    engine.amend(book, 4, "", 91, 2, 8)
    engine.clear_book(book, 9)
    engine.insert(book, "v", BUY, 90, 1, GTC, "", 10)
    engine.delete_book(book, 11)
    events = engine.drain_events()
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    assert engine.last_sequence_number == len(events)
    assert isinstance(events[0], OnOrderBookCreated) and isinstance(events[-1], OnOrderBookDeleted)


def test_event_fields_and_order_for_a_crossing_insert() -> None:
    d = Desk()
    s1 = d.sell(100, 2, user="bob").order_id
    s2 = d.sell(101, 2, user="bob").order_id
    d.events()
    result = d.buy(101, 5, user="alice")
    ts = result.timestamp
    events = d.events()
    assert events == [
        OnOrderInserted(4, 3, d.book, ts, BUY, 101, 5, (1, 2), "alice", GTC),
        OnTrade(5, 1, d.book, ts, 3, s1, 100, 2, BUY, 100),
        OnTrade(6, 2, d.book, ts, 3, s2, 101, 2, BUY, 101),
    ]
    assert result == InsertResult("", 3, ts, (1, 2), 4, 1)


# ---------------------------------------------------------------- delete / clear


def test_delete_book_cancels_every_order_in_priority_order_then_deletes() -> None:
    d = Desk()
    b1 = d.buy(99, 1).order_id
    a1 = d.sell(101, 2).order_id
    b2 = d.buy(98, 3).order_id
    b3 = d.buy(99, 4).order_id
    a2 = d.sell(100, 5).order_id
    d.events()
    result = d.engine.delete_book(d.book, 77)
    assert (result.error, result.cancelled_orders) == ("", 5)
    events = d.events()
    assert [(e.order_id, e.cancelled_quantity) for e in events[:-1]] == [  # type: ignore[union-attr]
        (b1, 1),
        (b3, 4),
        (b2, 3),
        (a2, 5),
        (a1, 2),
    ]
    assert all(
        isinstance(e, OnOrderCancelled)
        and e.reason == CancelReason.BOOK_DELETED
        and e.timestamp == 77
        for e in events[:-1]
    )
    assert events[-1] == OnOrderBookDeleted(events[-2].sequence_number + 1, d.book, 77)
    assert d.engine.book_info(d.book) is None
    assert d.buy(99, 1).error == ERR_UNKNOWN_BOOK
    assert d.cancel(b1).error == ERR_UNKNOWN_BOOK
    assert d.engine.stats().resting_orders == 0


def test_clear_book_cancels_everything_and_the_book_stays_usable() -> None:
    d = Desk()
    for price in (95, 96, 97):
        d.buy(price, 1)
        d.sell(price + 10, 1)
    d.events()
    result = d.engine.clear_book(d.book, 5)
    assert (result.error, result.cancelled_orders) == ("", 6)
    events = d.events()
    assert len(events) == 6
    assert all(
        isinstance(e, OnOrderCancelled) and e.reason == CancelReason.BOOK_CLEARED for e in events
    )
    assert d.depth() == ([], [])
    assert d.engine.clear_book(d.book, 6).cancelled_orders == 0
    d.sell(100, 1)
    assert d.buy(100, 1).traded_quantity == 1


def test_empty_book_delete_emits_only_the_deleted_event() -> None:
    engine = Engine()
    book = engine.create_book(0.5, RESTING_ORDER_PRICE, 1).order_book_id
    engine.drain_events()
    assert engine.delete_book(book, 2).cancelled_orders == 0
    assert engine.drain_events() == [OnOrderBookDeleted(2, book, 2)]


# ------------------------------------------------------------ snapshots and views


def test_snapshot_lists_books_and_orders_in_rebuildable_priority_order() -> None:
    engine = Engine()
    b1 = engine.create_book(0.01, RESTING_ORDER_PRICE, 1).order_book_id
    b2 = engine.create_book(0.25, SPREAD_CAPTURE, 2).order_book_id
    ins = engine.insert
    o1 = ins(b1, "a", BUY, 99, 5, GTC, "", 3).order_id
    o2 = ins(b1, "b", BUY, 100, 6, GTC, "", 4).order_id
    o3 = ins(b1, "c", BUY, 99, 7, GTC, "", 5).order_id
    o4 = ins(b1, "d", SELL, 102, 8, GTC, "", 6).order_id
    o5 = ins(b1, "e", SELL, 101, 9, GTC, "", 7).order_id
    o6 = ins(b2, "f", SELL, 7, 1, GTC, "", 8).order_id
    engine.amend(b1, o1, "", 99, 4, 9)  # keeps priority at 99 ahead of o3
    ins(b1, "g", BUY, 101, 2, GTC, "", 10)  # takes 2 of o5
    assert list(engine.books()) == [BookInfo(b1, 0.01, 0), BookInfo(b2, 0.25, 1)]
    assert list(engine.resting_orders()) == [
        RestingOrder(o2, b1, BUY, 100, 6, "b", GTC, 4),
        RestingOrder(o1, b1, BUY, 99, 4, "a", GTC, 3),
        RestingOrder(o3, b1, BUY, 99, 7, "c", GTC, 5),
        RestingOrder(o5, b1, SELL, 101, 7, "e", GTC, 7),
        RestingOrder(o4, b1, SELL, 102, 8, "d", GTC, 6),
        RestingOrder(o6, b2, SELL, 7, 1, "f", GTC, 8),
    ]
    assert [o.order_id for o in engine.resting_orders(b2)] == [o6]
    assert list(engine.resting_orders(12345)) == []


def test_a_mirror_rebuilt_from_the_snapshot_matches_identically() -> None:
    d = Desk()
    for i in range(30):
        d.buy(90 + i % 5, 1 + i % 4, user=f"u{i % 3}")
        d.sell(100 + i % 6, 1 + i % 3, user=f"u{i % 3}")
    for order_id in range(3, 60, 7):
        d.cancel(order_id)
    mirror = Engine()
    mirror.create_book(0.01, RESTING_ORDER_PRICE, 0)
    for order in d.engine.resting_orders():
        mirror.insert(1, order.username, order.side, order.price_ticks, order.quantity, GTC, "", 0)
    assert mirror.depth(1) == d.depth()
    d.events()
    mirror.drain_events()
    d.buy(200, 10_000)
    mirror.insert(1, "x", BUY, 200, 10_000, GTC, "", 0)
    original = [(t.price_ticks, t.quantity) for t in d.trades()]
    rebuilt = [(e.price_ticks, e.quantity) for e in mirror.drain_events() if isinstance(e, OnTrade)]
    assert original == rebuilt and original


def test_depth_and_get_order_views() -> None:
    d = Desk()
    first = d.buy(99, 5)
    o = first.order_id
    d.buy(99, 2)
    d.buy(98, 1)
    d.sell(101, 3)
    assert d.depth() == ([(99, 7), (98, 1)], [(101, 3)])
    assert d.engine.get_order(d.book, o) == RestingOrder(
        o, d.book, BUY, 99, 5, "alice", GTC, first.timestamp
    )
    assert d.engine.get_order(d.book + 1, o) is None
    assert d.engine.depth(999) == ([], [])


def test_stats_count_trades_volume_and_resting_orders() -> None:
    d = Desk()
    d.sell(100, 5)
    d.sell(101, 5)
    d.buy(101, 7)
    d.buy(90, 1)
    stats = d.engine.stats()
    assert (stats.trade_count, stats.traded_volume, stats.resting_orders) == (2, 7, 2)


# ----------------------------------------------------------------------- hashing


def test_state_hash_is_equal_for_equal_histories_and_sensitive_to_changes() -> None:
    def history(engine: Engine) -> None:
        book = engine.create_book(0.01, SPREAD_CAPTURE, 1).order_book_id
        engine.insert(book, "a", BUY, 99, 5, GTC, "k1", 2)
        engine.insert(book, "b", SELL, 98, 2, GTC, "", 3)
        engine.amend(book, 1, "", 99, 2, 4)

    e1, e2 = Engine(), Engine()
    history(e1)
    history(e2)
    assert e1.state_hash() == e2.state_hash()
    e2.insert(1, "a", BUY, 99, 5, GTC, "k1", 9)  # idempotent resend: no change
    assert e1.state_hash() == e2.state_hash()
    e2.cancel(1, 1, "", 10)
    assert e1.state_hash() != e2.state_hash()


def test_client_order_id_outcomes_are_invisible_to_the_cyclic_gc() -> None:
    """The table only grows (ids are kept for good), so its entries must not be
    objects a full garbage collection walks: at 4,000 orders/s such passes grew
    by ~25 ms a minute. The outcomes are packed bytes, so neither they nor the
    per-user tables (which hold only strings and bytes) are tracked, before or
    after a collection."""
    d = Desk()
    for number in range(50):
        d.sell(100, 1)
        d.buy(100, 2, coid=f"c-{number}")  # one trade and one resting lot each
    gc.collect()
    d.buy(99, 1, coid="late")  # added after the collection
    tables = d.engine._coids
    assert len(tables["alice"]) == 51
    # (the outer dict, one entry per user, is tracked: it holds dicts)
    assert not gc.is_tracked(tables["alice"])
    assert not any(gc.is_tracked(v) for v in tables["alice"].values())
    assert d.engine.previous_insert("alice", "c-7") == d.buy(1, 1, coid="c-7")
