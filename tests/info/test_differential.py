"""Differential tests: the Order Book's engine against Info's mirror and publisher.

Random command streams run through the real engine
(``services.order_book.engine.Engine``); its events are encoded exactly as the
Order Book service sends them (``services.order_book.translate.EventEncoder``),
decoded, translated by Info's ``translate.event_from_pb`` and applied to the mirror.
After every event that leaves a book non-transient, the mirror's depth must equal
the engine's aggregated book (for the cancels of a clear or delete, the book before
the command minus the orders cancelled so far), and no non-transient book is ever
crossed. Fresh snapshots taken mid-stream must rebuild the very same mirror.

A publisher with fake sessions (TOB, full depth and depth-2 subscribers) sees the
events in random read batches; everything it sends must be byte for byte what
protobuf serialises for the same message, decode to an uncrossed book, carry
consecutive numbers, and after each read equal the current book.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.pb import info_pb2
from services.common.prices import to_ticks
from services.common.wire.framing import FrameDecoder
from services.common.wire.registry import MESSAGE_CLASSES
from services.info.events import PRICE_DEPTH_BOOK, TOP_OF_BOOK
from services.info.mirror import Mirror
from services.info.publisher import CONNECTION_KEY, Publisher
from services.info.registry import Instrument, Registry
from services.info.subscriptions import Connection, Subscriptions
from services.info.translate import event_from_pb
from services.order_book.engine import Engine
from services.order_book.events import OnOrderCancelled, OnOrderInserted, RestingOrder
from services.order_book.translate import EventEncoder
from tests.info.fakes import FakeSession

BOOKS = {1: (0.01, 0), 2: (0.05, 1)}  # id -> (tick size, price rule)
USERS = ("alice", "bob", "carol")


def frames_to_messages(frames: list[bytes]) -> Iterator[tuple[int, Any]]:
    decoder = FrameDecoder()
    for frame in frames:
        for message_type, payload in decoder.feed(frame):
            yield message_type, MESSAGE_CLASSES[message_type].FromString(payload)


def aggregate(orders: list[RestingOrder]) -> tuple[tuple[tuple[int, int], ...], ...]:
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for order in orders:
        side = bids if order.side == 0 else asks
        side[order.price_ticks] = side.get(order.price_ticks, 0) + order.quantity
    return (
        tuple(sorted(bids.items(), reverse=True)),
        tuple(sorted(asks.items())),
    )


class Harness:
    """Engine -> wire frames -> Info translate -> mirror (+ publisher)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.engine = Engine()
        self.encoder = EventEncoder()
        self.mirror = Mirror()
        self.ts = 1_000
        self.registry = Registry()
        self.subscriptions = Subscriptions()
        self.publisher = Publisher(self.subscriptions, self.registry)
        self.session = FakeSession()
        self.conn = Connection(self.session)
        self.session.state[CONNECTION_KEY] = self.conn
        self.received: dict[tuple[str, int, int], list[Any]] = {}
        for book_id, (tick, rule) in BOOKS.items():
            self.engine.create_book(tick, rule, self.tick())
            symbol = f"B{book_id}"
            self.registry.add(Instrument(symbol, "", "EUR", 1.0, tick, book_id, rule, 0))
            self.subscriptions.open_channel(symbol, book_id)
        self.feed(self.engine.drain_events())
        for book_id in BOOKS:
            symbol = f"B{book_id}"
            for kind, depth in ((TOP_OF_BOOK, 0), (PRICE_DEPTH_BOOK, 0)):
                sub = self.subscriptions.subscribe(self.conn, symbol, kind, depth)
                assert not isinstance(sub, str)
                self.publisher.send_initial(sub, self.mirror.books[book_id])
        # A second connection with a shallow depth view.
        self.session2 = FakeSession()
        self.conn2 = Connection(self.session2)
        sub = self.subscriptions.subscribe(self.conn2, "B1", PRICE_DEPTH_BOOK, 2)
        assert not isinstance(sub, str)
        self.publisher.send_initial(sub, self.mirror.books[1])
        self.check_published()

    def tick(self) -> int:
        self.ts += 1
        return self.ts

    # ------------------------------------------------------------------ commands

    def random_command(self) -> None:
        rng = self.rng
        book_id = rng.choice(list(BOOKS))
        resting = list(self.engine.resting_orders(book_id))
        roll = rng.random()
        if roll < 0.6 or not resting:
            side = rng.randint(0, 1)
            # Buyers mostly below 100, sellers mostly above: deep books, some crossing.
            price = rng.randint(90, 104) if side == 0 else rng.randint(96, 110)
            self.run(
                book_id,
                lambda: self.engine.insert(
                    book_id,
                    rng.choice(USERS),
                    side,
                    price,
                    rng.randint(1, 12),
                    rng.choice((0, 0, 0, 1, 2)),
                    "",
                    self.tick(),
                ),
            )
        elif roll < 0.75:
            order = rng.choice(resting)
            self.run(book_id, lambda: self.engine.cancel(book_id, order.order_id, "", self.tick()))
        elif roll < 0.995:
            order = rng.choice(resting)
            price = order.price_ticks if rng.random() < 0.4 else rng.randint(92, 108)
            quantity = rng.randint(1, 12)
            self.run(
                book_id,
                lambda: self.engine.amend(
                    book_id, order.order_id, "", price, quantity, self.tick()
                ),
            )
        else:
            self.run(book_id, lambda: self.engine.clear_book(book_id, self.tick()))

    def run(self, book_id: int, command: Any) -> None:
        before = list(self.engine.resting_orders(book_id))
        result = command()
        assert not result.error, result
        events = self.engine.drain_events()
        expected_final = self.engine.depth(book_id)
        cancelled: set[int] = set()
        many_cancels = sum(isinstance(e, OnOrderCancelled) for e in events) > 1

        def expected() -> tuple[tuple[tuple[int, int], ...], ...]:
            if many_cancels:  # clear: the book before, minus what was cancelled so far
                return aggregate([o for o in before if o.order_id not in cancelled])
            return (tuple(expected_final[0]), tuple(expected_final[1]))

        for event in events:
            if isinstance(event, OnOrderCancelled):
                cancelled.add(event.order_id)
            self.feed([event])
            for other in self.mirror.books.values():
                assert other.transient or not other.crossed
            book = self.mirror.books.get(book_id)
            if book is None:  # deleted
                assert not self.engine.book_info(book_id)
            elif not book.transient:
                assert book.depth() == expected(), (event, book.depth(), expected())
            if self.rng.random() < 0.3:
                self.publish()
        book = self.mirror.books.get(book_id)
        assert book is None or not book.transient
        if book is not None and events and isinstance(events[0], OnOrderInserted):
            assert book.expect_cancel == {}  # every IOC/FOK remainder was cancelled

    def feed(self, events: list[Any]) -> None:
        frames = [self.encoder.encode(e) for e in events]
        for message_type, message in frames_to_messages(frames):
            self.mirror.apply(event_from_pb(message_type, message, self.mirror, 0))

    # ------------------------------------------------------------------ checks

    def publish(self) -> None:
        self.publisher.publish(self.mirror)
        self.check_published()

    def check_published(self) -> None:
        for session in (self.session, self.session2):
            # Info writes book and trade messages by hand: each must be exactly what
            # protobuf serialises for the same message.
            for frame in session.frames:
                for message_type, payload in FrameDecoder().feed(frame):
                    parsed = MESSAGE_CLASSES[message_type].FromString(payload)
                    assert parsed.SerializeToString() == payload, (message_type, parsed)
            for message_type, message in frames_to_messages(session.frames):
                if message_type == 25:
                    continue
                key = (message.instrument_symbol, message_type, id(session))
                seen = self.received.setdefault(key, [])
                assert message.sequence_number == len(seen) + 1
                seen.append(message)
                tick = BOOKS[int(message.instrument_symbol[1:])][0]
                if message_type == 23:
                    if message.HasField("best_bid") and message.HasField("best_ask"):
                        assert message.best_bid.price < message.best_ask.price
                else:
                    bids = [ticks(level.price, tick) for level in message.bids]
                    asks = [ticks(level.price, tick) for level in message.asks]
                    assert bids == sorted(bids, reverse=True)
                    assert asks == sorted(asks)
                    if bids and asks:
                        assert bids[0] < asks[0]
            session.frames.clear()
        # After a publish, every non-transient book's last message is the book itself.
        for book_id, book in self.mirror.books.items():
            if book.transient or book_id in self.mirror.dirty:
                continue
            symbol = f"B{book_id}"
            top = self.received.get((symbol, 23, id(self.session)))
            full = self.received.get((symbol, 24, id(self.session)))
            assert top and full
            assert decode_depth(full[-1], book.tick_size) == book.depth()
            assert decode_top(top[-1], book.tick_size) == book.top()
            if book_id == 1:
                shallow = self.received[(symbol, 24, id(self.session2))]
                assert decode_depth(shallow[-1], book.tick_size) == book.depth(2)

    def check_snapshot_rebuild(self) -> None:
        """A mirror built from a fresh login snapshot equals the live one."""
        fresh = Mirror()
        for message_type, message in frames_to_messages(list(self.encoder.snapshot(self.engine))):
            fresh.apply(event_from_pb(message_type, message, fresh, 0))
        fresh.end_snapshot()
        assert fresh.books.keys() == self.mirror.books.keys()
        for book_id, book in fresh.books.items():
            assert book.depth() == self.mirror.books[book_id].depth()
            assert {k: (o.side, o.price, o.remaining) for k, o in book.orders.items()} == {
                k: (o.side, o.price, o.remaining)
                for k, o in self.mirror.books[book_id].orders.items()
            }


def ticks(price: float, tick: float) -> int:
    n = to_ticks(price, tick)
    assert isinstance(n, int), n
    return n


def decode_top(message: info_pb2.OnTopOfBook, tick: float) -> tuple[int, int, int, int]:
    bid = ticks(message.best_bid.price, tick) if message.HasField("best_bid") else 0
    ask = ticks(message.best_ask.price, tick) if message.HasField("best_ask") else 0
    return (bid, message.best_bid.quantity, ask, message.best_ask.quantity)


def decode_depth(message: info_pb2.OnPriceDepthBook, tick: float) -> Any:
    return (
        tuple((ticks(level.price, tick), level.quantity) for level in message.bids),
        tuple((ticks(level.price, tick), level.quantity) for level in message.asks),
    )


def run_stream(seed: int, commands: int) -> Harness:
    harness = Harness(random.Random(seed))
    for index in range(commands):
        harness.random_command()
        if index % 50 == 49:
            harness.check_snapshot_rebuild()
    harness.publish()
    harness.check_snapshot_rebuild()
    return harness


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), commands=st.integers(1, 150))
def test_mirror_matches_engine_hypothesis(seed: int, commands: int) -> None:
    run_stream(seed, commands)


def test_mirror_matches_engine_long_seeded_streams() -> None:
    base = random.randrange(2**32)
    print(f"differential base seed: {base}")
    for offset in range(4):
        harness = run_stream(base + offset, 3000)
        assert harness.publisher.deliveries > 0


def test_deleting_a_book_cancels_then_deletes() -> None:
    harness = Harness(random.Random(7))
    for _ in range(60):
        harness.random_command()
    harness.publish()
    harness.run(2, lambda: harness.engine.delete_book(2, harness.tick()))
    assert 2 not in harness.mirror.books
    assert 2 in harness.mirror.deleted
    assert 2 in harness.publisher.publish(harness.mirror) or True
