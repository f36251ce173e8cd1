"""The pure mirror: levels, transient books, IOC/FOK remainders, amends, contradictions."""

from __future__ import annotations

import pytest

from services.info.events import (
    BUY,
    FOK,
    GTC,
    IOC,
    SELL,
    BookCreated,
    BookDeleted,
    OrderAmended,
    OrderCancelled,
    OrderInserted,
    Trade,
)
from services.info.mirror import Mirror, MirrorError, SequenceGap


class Stream:
    """Builds live events with consecutive sequence numbers for one book."""

    def __init__(self, mirror: Mirror, book: int = 1) -> None:
        self.mirror = mirror
        self.book = book
        self.seq = 0
        self.ts = 1000

    def _next(self) -> tuple[int, int]:
        self.seq += 1
        self.ts += 1
        return self.seq, self.ts

    def create(self, tick: float = 0.01) -> None:
        seq, ts = self._next()
        self.mirror.apply(BookCreated(seq, self.book, tick, 0, ts))

    def insert(
        self,
        oid: int,
        side: int,
        price: int,
        qty: int,
        trades: tuple[int, ...] = (),
        tif: int = GTC,
    ) -> None:
        seq, ts = self._next()
        self.mirror.apply(OrderInserted(seq, oid, self.book, ts, side, price, qty, trades, tif))

    def trade(
        self, tid: int, aggressor: int, resting: int, side: int, price: int, qty: int
    ) -> None:
        seq, ts = self._next()
        buy, sell = (aggressor, resting) if side == BUY else (resting, aggressor)
        self.mirror.apply(Trade(seq, tid, self.book, ts, buy, sell, price, qty, side))

    def cancel(self, oid: int, qty: int) -> None:
        seq, ts = self._next()
        self.mirror.apply(OrderCancelled(seq, oid, self.book, ts, qty))

    def amend(
        self, oid: int, price: int, qty: int, trades: tuple[int, ...] = (), kept: bool = False
    ) -> None:
        seq, ts = self._next()
        self.mirror.apply(OrderAmended(seq, oid, self.book, ts, price, qty, trades, kept))

    def delete(self) -> None:
        seq, ts = self._next()
        self.mirror.apply(BookDeleted(seq, self.book, ts))


@pytest.fixture
def s() -> Stream:
    stream = Stream(Mirror())
    stream.create()
    return stream


def depth(s: Stream) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    return s.mirror.books[s.book].depth()


def test_levels_aggregate_and_sort(s: Stream) -> None:
    s.insert(1, BUY, 100, 5)
    s.insert(2, BUY, 102, 3)
    s.insert(3, BUY, 100, 2)
    s.insert(4, SELL, 105, 7)
    s.insert(5, SELL, 103, 1)
    book = s.mirror.books[1]
    assert depth(s) == (((102, 3), (100, 7)), ((103, 1), (105, 7)))
    assert book.top() == (102, 3, 103, 1)
    assert book.depth(1) == (((102, 3),), ((103, 1),))
    s.cancel(2, 3)
    assert book.top() == (100, 7, 103, 1)
    s.cancel(5, 1)
    s.cancel(4, 7)
    assert book.top() == (100, 7, 0, 0)
    assert not book.crossed


def test_aggressor_is_transient_until_its_last_trade(s: Stream) -> None:
    s.insert(1, SELL, 101, 2)
    s.insert(2, SELL, 102, 2)
    book = s.mirror.books[1]
    s.insert(3, BUY, 103, 5, trades=(1, 2))
    assert book.transient
    s.trade(1, 3, 1, BUY, 101, 2)
    assert book.transient
    s.trade(2, 3, 2, BUY, 102, 2)
    assert not book.transient
    # The GTC remainder joins the book only now.
    assert depth(s) == (((103, 1),), ())
    assert [t.trade_id for t in s.mirror.trades] == [1, 2]


def test_ioc_remainder_never_joins_and_its_cancel_is_expected(s: Stream) -> None:
    s.insert(1, SELL, 101, 2)
    s.insert(2, BUY, 105, 5, trades=(1,), tif=IOC)
    s.trade(1, 2, 1, BUY, 101, 2)
    assert depth(s) == ((), ())
    assert not s.mirror.books[1].transient
    s.cancel(2, 3)
    assert depth(s) == ((), ())


def test_fok_without_fill_and_ioc_without_cross(s: Stream) -> None:
    s.insert(1, SELL, 101, 2)
    s.insert(2, BUY, 101, 5, tif=FOK)
    s.cancel(2, 5)
    s.insert(3, BUY, 100, 5, tif=IOC)
    s.cancel(3, 5)
    assert depth(s) == ((), ((101, 2),))
    with pytest.raises(MirrorError):
        s.cancel(3, 5)  # already gone


def test_amend_reduction_keeps_level_and_move_reprices(s: Stream) -> None:
    s.insert(1, BUY, 100, 5)
    s.insert(2, BUY, 100, 5)
    s.amend(1, 100, 2, kept=True)
    assert depth(s) == (((100, 7),), ())
    s.amend(2, 99, 6)
    assert depth(s) == (((100, 2), (99, 6)), ())
    with pytest.raises(MirrorError):
        s.amend(2, 99, 7, kept=True)  # kept priority may only reduce


def test_amend_that_crosses_trades_then_rests(s: Stream) -> None:
    s.insert(1, SELL, 105, 3)
    s.insert(2, BUY, 100, 5)
    s.amend(2, 106, 5, trades=(1,))
    assert s.mirror.books[1].transient
    s.trade(1, 2, 1, BUY, 105, 3)
    assert depth(s) == (((106, 2),), ())


def test_delete_requires_empty_book_and_remembers_id(s: Stream) -> None:
    s.insert(1, BUY, 100, 5)
    s.cancel(1, 5)
    s.delete()
    assert 1 not in s.mirror.books
    assert 1 in s.mirror.deleted
    with pytest.raises(MirrorError):
        s.insert(2, BUY, 100, 1)


def test_sequence_gap_and_snapshot_rules() -> None:
    mirror = Mirror()
    mirror.apply(BookCreated(0, 1, 0.01, 0, 5))
    mirror.apply(OrderInserted(0, 7, 1, 3, BUY, 100, 4, (), GTC))
    assert not mirror.live
    mirror.apply(OrderInserted(41, 8, 1, 3, BUY, 99, 4, (), GTC))  # any first live number
    assert mirror.live
    with pytest.raises(SequenceGap):
        mirror.apply(OrderCancelled(43, 8, 1, 4, 4))
    with pytest.raises(MirrorError):
        mirror.apply(OrderInserted(0, 9, 1, 3, BUY, 98, 4, (), GTC))


def test_end_snapshot_makes_sequence_zero_illegal() -> None:
    mirror = Mirror()
    mirror.apply(BookCreated(0, 1, 0.01, 0, 5))
    mirror.end_snapshot()
    with pytest.raises(MirrorError):
        mirror.apply(BookCreated(0, 2, 0.01, 0, 5))


@pytest.mark.parametrize(
    "bad",
    [
        # resting order that would cross
        lambda s: s.insert(9, BUY, 101, 1),
        # trade without an aggressor
        lambda s: s.trade(1, 9, 1, BUY, 101, 1),
        # cancel with the wrong quantity
        lambda s: s.cancel(1, 3),
        # unknown book
        lambda s: Stream(s.mirror, book=9).insert(1, BUY, 1, 1),
        # amend of an unknown order
        lambda s: s.amend(99, 100, 1),
    ],
)
def test_contradictions_raise(s: Stream, bad: object) -> None:
    s.insert(1, SELL, 101, 2)
    with pytest.raises(MirrorError):
        bad(s)  # type: ignore[operator]


def test_trade_must_match_the_expected_trade_and_prices(s: Stream) -> None:
    s.insert(1, SELL, 101, 2)
    s.insert(2, BUY, 101, 1, trades=(5,))
    with pytest.raises(MirrorError):
        s.trade(6, 2, 1, BUY, 101, 1)  # wrong trade id
    s2 = Stream(Mirror())
    s2.create()
    s2.insert(1, SELL, 101, 2)
    s2.insert(2, BUY, 102, 1, trades=(5,))
    with pytest.raises(MirrorError):
        s2.trade(5, 2, 1, BUY, 102, 1)  # price must be the resting order's


def test_other_events_during_transient_state_are_refused(s: Stream) -> None:
    s.insert(1, SELL, 101, 2)
    s.insert(2, SELL, 102, 2)
    s.insert(3, BUY, 105, 3, trades=(1, 2))
    with pytest.raises(MirrorError):
        s.cancel(2, 2)


def test_drain_reports_touched_books_and_trades(s: Stream) -> None:
    s.mirror.drain()
    s.insert(1, SELL, 101, 2)
    s.insert(2, BUY, 101, 2, trades=(1,))
    s.trade(1, 2, 1, BUY, 101, 2)
    dirty, trades = s.mirror.drain()
    assert dirty == {1}
    assert len(trades) == 1
    assert s.mirror.drain() == (set(), [])
