"""Subscriptions and fan-out without sockets: numbering, only-on-change, conflation."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.pb import info_pb2
from services.common.wire.framing import FrameDecoder
from services.info.events import (
    BUY,
    GTC,
    PRICE_DEPTH_BOOK,
    SELL,
    TOP_OF_BOOK,
    BookCreated,
    OrderCancelled,
    OrderInserted,
    Trade,
)
from services.info.mirror import Mirror
from services.info.publisher import CONNECTION_KEY, Publisher
from services.info.registry import Instrument, Registry
from services.info.subscriptions import Connection, Subscriptions
from services.info.translate import with_sequence
from tests.info.fakes import FakeSession


class World:
    def __init__(self) -> None:
        self.mirror = Mirror()
        self.registry = Registry()
        self.subs = Subscriptions()
        self.publisher = Publisher(self.subs, self.registry)
        self.seq = 0
        self.mirror.apply(BookCreated(0, 1, 0.5, 0, 10))
        self.mirror.end_snapshot()
        self.registry.add(Instrument("ABC", "", "EUR", 1.0, 0.5, 1, 0, 1))
        self.subs.open_channel("ABC", 1)
        self.mirror.drain()

    def connect(self) -> tuple[FakeSession, Connection]:
        session = FakeSession()
        conn = Connection(session)
        session.state[CONNECTION_KEY] = conn
        return session, conn

    def subscribe(self, conn: Connection, kind: int, depth: int = 0) -> Any:
        sub = self.subs.subscribe(conn, "ABC", kind, depth)
        assert not isinstance(sub, str), sub
        self.publisher.send_initial(sub, self.mirror.books.get(1))
        return sub

    def apply(self, *events: Any) -> None:
        for event in events:
            self.seq += 1
            self.mirror.apply(event._replace(sequence_number=self.seq))
        self.publisher.publish(self.mirror)

    def insert(
        self, oid: int, side: int, price: int, qty: int, trades: tuple[int, ...] = ()
    ) -> Any:
        return OrderInserted(0, oid, 1, 100 + oid, side, price, qty, trades, GTC)


@pytest.fixture
def world() -> World:
    return World()


def test_subscribe_errors(world: World) -> None:
    _, conn = world.connect()
    assert "unknown instrument symbol 'NOPE'" in str(world.subs.subscribe(conn, "NOPE", 0, 0))
    assert "subscription_type" in str(world.subs.subscribe(conn, "ABC", 7, 0))
    assert "depth must not be negative" in str(world.subs.subscribe(conn, "ABC", 1, -1))
    world.subscribe(conn, TOP_OF_BOOK)
    assert "already subscribed to ABC TOP_OF_BOOK" in str(world.subs.subscribe(conn, "ABC", 0, 0))
    assert world.subs.unsubscribe(conn, "ABC", PRICE_DEPTH_BOOK) == (
        "not subscribed to ABC PRICE_DEPTH_BOOK"
    )
    assert world.subs.unsubscribe(conn, "ABC", TOP_OF_BOOK) is None


def test_initial_message_then_only_changes(world: World) -> None:
    session, conn = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    [(kind, first)] = session.take()
    assert kind == 23 and first.sequence_number == 1
    assert not first.HasField("best_bid") and not first.HasField("best_ask")
    world.apply(world.insert(1, BUY, 200, 5))
    [(_, top)] = session.take()
    assert (top.best_bid.price, top.best_bid.quantity, top.sequence_number) == (100.0, 5, 2)
    world.apply(world.insert(2, BUY, 198, 5))  # below the best: no TOB message
    assert session.take() == []
    world.apply(world.insert(3, BUY, 200, 1))  # quantity at the best changed
    [(_, top)] = session.take()
    assert (top.best_bid.quantity, top.sequence_number) == (6, 3)


def test_depth_limit_and_groups(world: World) -> None:
    a, conn_a = world.connect()
    b, conn_b = world.connect()
    world.subscribe(conn_a, PRICE_DEPTH_BOOK, 1)
    world.subscribe(conn_b, PRICE_DEPTH_BOOK, 0)
    a.take(), b.take()
    world.apply(world.insert(1, SELL, 210, 5), world.insert(2, SELL, 212, 5))
    [(_, shallow)] = a.take()
    [(_, full)] = b.take()
    assert [lvl.price for lvl in shallow.asks] == [105.0]
    assert [lvl.price for lvl in full.asks] == [105.0, 106.0]
    world.apply(world.insert(3, SELL, 214, 1))  # outside depth 1
    assert a.take() == []
    assert [m.sequence_number for _, m in b.take()] == [3]


def test_trades_once_per_connection_and_numbered_per_instrument(world: World) -> None:
    a, conn_a = world.connect()
    b, conn_b = world.connect()
    world.subscribe(conn_a, TOP_OF_BOOK)
    world.subscribe(conn_a, PRICE_DEPTH_BOOK)
    world.apply(world.insert(1, SELL, 210, 5))
    world.subscribe(conn_b, TOP_OF_BOOK)
    a.take(), b.take()
    world.apply(world.insert(2, BUY, 210, 2, trades=(1,)), Trade(0, 1, 1, 300, 2, 1, 210, 2, BUY))
    kinds_a = [k for k, _ in a.take()]
    assert kinds_a == [25, 23, 24]  # the trade first, then the books after it
    received_b = b.take()
    assert [k for k, _ in received_b] == [25, 23]
    trade = received_b[0][1]
    assert (trade.price, trade.quantity, trade.sequence_number, trade.aggressor_side) == (
        105.0,
        2,
        1,
        BUY,
    )
    quote = world.registry.get("ABC").stats  # type: ignore[union-attr]
    assert (quote.trade_count, quote.traded_volume) == (1, 2)


def test_conflation_for_a_congested_session(world: World) -> None:
    slow, conn = world.connect()
    fast, conn_fast = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    world.subscribe(conn_fast, TOP_OF_BOOK)
    slow.take(), fast.take()
    slow.congested = True
    for oid in range(1, 6):
        world.apply(world.insert(oid, BUY, 200 + oid, 1))
    assert slow.take() == []
    assert len(fast.take()) == 5
    slow.congested = False
    world.publisher.on_writable(slow)
    [(_, top)] = slow.take()
    assert (top.best_bid.price, top.sequence_number) == (102.5, 2)  # latest state, next number
    # Changed and changed back while congested: nothing owed.
    slow.congested = True
    world.apply(world.insert(9, BUY, 220, 1))
    world.apply(OrderCancelled(0, 9, 1, 400, 1))
    slow.congested = False
    world.publisher.on_writable(slow)
    assert slow.take() == []


def test_trades_are_not_conflated(world: World) -> None:
    slow, conn = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    world.apply(world.insert(1, SELL, 210, 5))
    slow.take()
    slow.congested = True
    world.apply(world.insert(2, BUY, 210, 1, trades=(1,)), Trade(0, 1, 1, 300, 2, 1, 210, 1, BUY))
    world.apply(world.insert(3, BUY, 210, 1, trades=(2,)), Trade(0, 2, 1, 300, 3, 1, 210, 1, BUY))
    assert [(k, m.sequence_number) for k, m in slow.take()] == [(25, 1), (25, 2)]


def test_transient_book_is_not_published_and_initial_waits(world: World) -> None:
    session, conn = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    session.take()
    world.apply(world.insert(1, SELL, 210, 5))
    session.take()
    world.apply(world.insert(2, BUY, 212, 8, trades=(1,)))  # trade still to come
    assert session.take() == []
    late, late_conn = world.connect()
    world.subscribe(late_conn, PRICE_DEPTH_BOOK)  # new group while transient: must wait
    assert late.take() == []
    world.apply(Trade(0, 1, 1, 300, 2, 1, 210, 5, BUY))
    [(trade_kind, _), (_, top)] = session.take()
    assert trade_kind == 25
    assert (top.best_bid.price, top.best_bid.quantity, top.HasField("best_ask")) == (
        106.0,
        3,
        False,
    )
    [depth] = [m for k, m in late.take() if k == 24]
    assert depth.sequence_number == 1 and [lvl.quantity for lvl in depth.bids] == [3]


def test_unsubscribe_then_resubscribe_restarts_numbering(world: World) -> None:
    session, conn = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    world.apply(world.insert(1, BUY, 200, 1))
    assert world.subs.unsubscribe(conn, "ABC", TOP_OF_BOOK) is None
    session.take()
    world.apply(world.insert(2, BUY, 202, 1))
    assert session.take() == []
    world.subscribe(conn, TOP_OF_BOOK)
    [(_, top)] = session.take()
    assert (top.sequence_number, top.best_bid.price) == (1, 101.0)


def test_close_channel_ends_everything(world: World) -> None:
    session, conn = world.connect()
    world.subscribe(conn, TOP_OF_BOOK)
    world.subscribe(conn, PRICE_DEPTH_BOOK)
    ended = world.subs.close_channel("ABC")
    assert len(ended) == 2 and conn.subs == {}
    session.take()
    world.apply(world.insert(1, BUY, 200, 1))
    assert session.take() == []


def test_with_sequence_appends_field_15() -> None:
    payload = info_pb2.OnTopOfBook(instrument_symbol="X", timestamp=5).SerializeToString()
    for number in (1, 127, 128, 300, 2**40):
        frame = with_sequence(23, payload, number)
        [(kind, body)] = FrameDecoder().feed(frame)
        message = info_pb2.OnTopOfBook.FromString(body)
        assert (kind, message.instrument_symbol, message.sequence_number) == (23, "X", number)
        assert (
            body
            == info_pb2.OnTopOfBook(
                instrument_symbol="X", timestamp=5, sequence_number=number
            ).SerializeToString()
        )
