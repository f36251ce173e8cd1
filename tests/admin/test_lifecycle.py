"""The two-phase flows, driven through every combination of peer outcomes.

A tiny simulated world (the Order Book's books, Info's instruments) executes the
flows' actions; hypothesis picks how each call ends, including the nasty cases
where a call times out *after* the peer acted. The properties are the contract's:
a successful create leaves the instrument in both services, a failed one that
does not ask for repair leaves nothing anywhere, and whatever a flow leaves
behind, one reconciliation pass makes both sides agree again without touching a
successfully created instrument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.admin.lifecycle import (
    Action,
    CreateBook,
    CreateFlow,
    CreateInstrument,
    DeleteBook,
    DeleteFlow,
    Finished,
    Outcome,
    RemoveInstrument,
    Reply,
)
from services.admin.model import BookId, BookInfo, InstrumentSpec, Listing, PriceRule, Symbol
from services.admin.reconcile import plan_repairs

SPEC = InstrumentSpec(Symbol("AAPL"), "Apple", "USD", 1.0, 0.01, PriceRule.RESTING_ORDER_PRICE)
# How a call ends: the peer acted and answered / refused / was never reached /
# acted but the answer was lost / did not act and the answer was lost.
FATES = ["ok", "refused", "unavailable", "unknown-done", "unknown-not-done"]


@dataclass
class World:
    books: set[int] = field(default_factory=set)
    instruments: dict[str, int] = field(default_factory=dict)
    next_book: int = 1

    def snapshot(self) -> tuple[frozenset[int], dict[str, int]]:
        return frozenset(self.books), dict(self.instruments)

    def execute(self, action: Action, fate: str) -> Reply:
        acts = fate in ("ok", "unknown-done")
        reply = Reply(Outcome.OK)
        if isinstance(action, CreateBook):
            book = self.next_book
            if acts:
                self.next_book += 1
                self.books.add(book)
            reply = Reply(Outcome.OK, book_id=book)
        elif isinstance(action, DeleteBook):
            if action.book_id not in self.books:
                return Reply(Outcome.REFUSED, "unknown order book")
            if acts:
                self.books.discard(action.book_id)
        elif isinstance(action, CreateInstrument):
            if action.spec.symbol in self.instruments:
                return Reply(Outcome.REFUSED, "instrument already exists")
            if acts:
                self.instruments[action.spec.symbol] = action.book_id
            reply = Reply(Outcome.OK, timestamp=42)
        elif isinstance(action, RemoveInstrument):
            if action.symbol not in self.instruments:
                return Reply(Outcome.REFUSED, "unknown instrument")
            if acts:
                del self.instruments[action.symbol]
        if fate == "ok":
            return reply
        if fate == "refused":
            return Reply(Outcome.REFUSED, "no")
        if fate == "unavailable":
            return Reply(Outcome.UNAVAILABLE, "peer unavailable")
        return Reply(Outcome.UNKNOWN, "no answer in time")

    def reconcile(self) -> None:
        instruments = {Symbol(s): Listing(SPEC, BookId(b), 1) for s, b in self.instruments.items()}
        books = {BookId(b): BookInfo(BookId(b), 0.01, SPEC.price_rule) for b in self.books}
        for repair in plan_repairs(instruments, books):
            if repair.kind == "withdraw_instrument":
                assert repair.symbol is not None
                del self.instruments[repair.symbol]
            else:
                self.books.discard(repair.book_id)

    def consistent(self) -> bool:
        return set(self.instruments.values()) == self.books


def drive(flow: CreateFlow | DeleteFlow, world: World, fates: list[str]) -> Finished:
    step: Action | Finished = flow.start()
    calls = 0
    while not isinstance(step, Finished):
        step = flow.step(world.execute(step, fates[calls]))
        calls += 1
    assert calls <= 3
    return step


fate_lists = st.lists(st.sampled_from(FATES), min_size=3, max_size=3)


@settings(max_examples=300)
@given(fate_lists, st.booleans())
def test_create_never_leaves_half_an_instrument(fates: list[str], other: bool) -> None:
    world = World()
    if other:  # an unrelated, consistent instrument must survive everything
        world.books.add(99)
        world.instruments["MSFT"] = 99
    before = world.snapshot()
    finished = drive(CreateFlow(SPEC), world, fates)
    if not finished.error:
        assert finished.listing is not None
        assert world.instruments["AAPL"] == finished.listing.order_book_id
        assert finished.listing.order_book_id in world.books
    elif not finished.repair_needed:
        assert world.snapshot() == before, finished
    if not finished.repair_needed:
        assert world.consistent()
    world.reconcile()
    assert world.consistent()
    assert ("AAPL" in world.instruments) == (not finished.error) or finished.repair_needed
    if not finished.error:
        assert "AAPL" in world.instruments
    if other:
        assert world.instruments["MSFT"] == 99 and 99 in world.books


@settings(max_examples=300)
@given(fate_lists)
def test_delete_withdraws_first_and_never_strands_a_book(fates: list[str]) -> None:
    world = World(books={5}, instruments={"AAPL": 5})
    before = world.snapshot()
    flow = DeleteFlow(Listing(SPEC, BookId(5), 1))
    first = flow.start()
    assert isinstance(first, RemoveInstrument)  # Info first: no new orders can route
    step: Action | Finished = flow.step(world.execute(first, fates[0]))
    if isinstance(step, DeleteBook):
        assert "AAPL" not in world.instruments or fates[0] == "unknown-not-done"
        step = flow.step(world.execute(step, fates[1]))
    assert isinstance(step, Finished)
    if not step.error:
        assert "AAPL" not in world.instruments
        if not step.repair_needed:
            assert 5 not in world.books
    elif not step.repair_needed:
        assert world.snapshot() == before
    world.reconcile()
    assert world.consistent()
    if not step.error:
        assert world.books == set()


def test_info_refusal_rolls_the_book_back_and_reports_info() -> None:
    flow = CreateFlow(SPEC)
    assert flow.start() == CreateBook(0.01, PriceRule.RESTING_ORDER_PRICE)
    rollback = flow.step(Reply(Outcome.OK, book_id=7))
    assert rollback == CreateInstrument(SPEC, BookId(7)) and flow.book_id == 7
    assert flow.step(Reply(Outcome.REFUSED, "duplicate")) == DeleteBook(BookId(7))
    finished = flow.step(Reply(Outcome.OK))
    assert finished == Finished(error="info refused: duplicate")


def test_failed_rollback_says_so_and_asks_for_repair() -> None:
    flow = CreateFlow(SPEC)
    flow.start()
    flow.step(Reply(Outcome.OK, book_id=7))
    flow.step(Reply(Outcome.UNAVAILABLE, "info unavailable"))
    finished = flow.step(Reply(Outcome.UNKNOWN, "lost connection to order book"))
    assert isinstance(finished, Finished) and finished.repair_needed
    assert finished.error.startswith("info unavailable; rolling back order book 7 failed")


def test_flows_refuse_misuse() -> None:
    flow = CreateFlow(SPEC)
    with pytest.raises(RuntimeError):
        flow.step(Reply(Outcome.OK))
    flow.start()
    with pytest.raises(RuntimeError):
        flow.start()
