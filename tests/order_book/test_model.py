"""Differential test: the engine against the naive reference book, after every command.

A hypothesis state machine drives both with the same random commands (several books
of both price rules, a narrow price band so that orders cross often, all time-in-force
kinds, cancels and amends of live, dead and foreign orders, client order ids, invalid
values) and requires identical results, events, depth, resting orders and stats, an
uncrossed book, gap-free sequence numbers, and that replaying the accepted commands
into a fresh engine reproduces the same ``state_hash``.

Runs are derandomized by default (reproducible in CI); set OPTIVEX_HYPOTHESIS_RANDOM=1
to explore new cases. Failures print a reproduce blob.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from services.order_book.engine import Engine
from services.order_book.events import MAX_PRICE_TICKS
from tests.order_book.reference import ReferenceBook

RANDOM = os.environ.get("OPTIVEX_HYPOTHESIS_RANDOM") == "1"
print(f"hypothesis: derandomize={not RANDOM} (set OPTIVEX_HYPOTHESIS_RANDOM=1 to explore)")

USERS = ("alice", "bob", "")
PRICES = st.one_of(
    st.integers(96, 104),
    st.sampled_from([0, -1, 1, MAX_PRICE_TICKS, MAX_PRICE_TICKS + 1]),
)
QUANTITIES = st.one_of(st.integers(1, 12), st.sampled_from([0, -3, 2**31 - 1, 2**31]))
COIDS = st.sampled_from(["", "", "", "a", "b", "x" * 64, "é" * 33])


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.ref = ReferenceBook()
        self.time = 1_000
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self.order_ids: list[int] = [0, 10_000]

    def _do(self, name: str, *args: Any) -> Any:
        self.time += 1
        args = (*args, self.time)
        engine_method: Callable[..., Any] = getattr(self.engine, name)
        ref_method: Callable[..., Any] = getattr(self.ref, name)
        got = engine_method(*args)
        want = ref_method(*args)
        assert got == want, f"{name}{args}: engine {got} != reference {want}"
        events = self.engine.drain_events()
        assert events == self.ref.drain_events(), f"{name}{args}: events differ"
        if getattr(got, "error", ""):
            assert events == [], "a refused command must not emit events"
        else:
            self.log.append((name, args))
        order_id = getattr(got, "order_id", 0)
        if name == "insert" and order_id:
            self.order_ids.append(order_id)
        return got

    def _book(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from([*sorted(self.ref.books), 77]), label="book")

    @rule(tick=st.sampled_from([0.01, 0.005, 0.25, 1.0]), price_rule=st.sampled_from([0, 1, 5]))
    def create_book(self, tick: float, price_rule: int) -> None:
        if len(self.ref.books) < 3:
            self._do("create_book", tick, price_rule)

    @rule(data=st.data())
    def delete_book(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9)) == 0:
            self._do("delete_book", self._book(data))

    @rule(data=st.data())
    def clear_book(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 6)) == 0:
            self._do("clear_book", self._book(data))

    @rule(
        data=st.data(),
        user=st.sampled_from(USERS),
        side=st.sampled_from([0, 1, 0, 1, 2]),
        price=PRICES,
        quantity=QUANTITIES,
        tif=st.sampled_from([0, 0, 0, 1, 2, 3]),
        coid=COIDS,
    )
    def insert(
        self,
        data: st.DataObject,
        user: str,
        side: int,
        price: int,
        quantity: int,
        tif: int,
        coid: str,
    ) -> None:
        self._do("insert", self._book(data), user, side, price, quantity, tif, coid)

    @rule(data=st.data(), user=st.sampled_from(USERS))
    def cancel(self, data: st.DataObject, user: str) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids), label="order")
        self._do("cancel", self._book(data), order_id, user)

    @rule(data=st.data(), user=st.sampled_from(USERS), price=PRICES, quantity=QUANTITIES)
    def amend(self, data: st.DataObject, user: str, price: int, quantity: int) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids), label="order")
        book = self._book(data)
        live = self.engine.get_order(book, order_id)
        if live is not None and data.draw(st.booleans(), label="same price"):
            price = live.price_ticks  # exercise the keep-priority and no-op paths
            quantity = data.draw(st.integers(1, live.quantity + 2), label="qty")
        self._do("amend", book, order_id, user, price, quantity)

    @invariant()
    def same_state(self) -> None:
        assert list(self.engine.resting_orders()) == self.ref.resting_orders()
        for book_id in [*self.ref.books, 77]:
            bids, asks = self.engine.depth(book_id)
            assert (bids, asks) == self.ref.depth(book_id)
            if bids and asks:
                assert bids[0][0] < asks[0][0], "crossed book"
        assert self.engine.stats() == self.ref.stats()
        assert self.engine.last_sequence_number == self.ref.seq

    def teardown(self) -> None:
        replayed = Engine()
        for name, args in self.log:
            getattr(replayed, name)(*args)
        assert replayed.state_hash() == self.engine.state_hash()
        assert replayed.last_sequence_number == self.engine.last_sequence_number


EngineVersusReference.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=80,
    deadline=None,
    derandomize=not RANDOM,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVersusReference = EngineVersusReference.TestCase
