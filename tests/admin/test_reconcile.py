"""The reconciliation rule: every instrument in both services or in neither."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.admin.intents import Intent
from services.admin.model import BookId, BookInfo, InstrumentSpec, Listing, PriceRule, Symbol
from services.admin.reconcile import plan_repairs


def listing(symbol: str, book: int) -> Listing:
    spec = InstrumentSpec(Symbol(symbol), "", "USD", 1.0, 0.01, PriceRule.RESTING_ORDER_PRICE)
    return Listing(spec, BookId(book), 1)


def book(book_id: int) -> BookInfo:
    return BookInfo(BookId(book_id), 0.01, PriceRule.RESTING_ORDER_PRICE)


def test_consistent_state_needs_nothing() -> None:
    instruments = {Symbol("A"): listing("A", 1), Symbol("B"): listing("B", 2)}
    assert plan_repairs(instruments, {BookId(1): book(1), BookId(2): book(2)}) == []


def test_orphan_book_is_deleted_and_explained_by_its_intent() -> None:
    repairs = plan_repairs({}, {BookId(7): book(7)}, [Intent("create", Symbol("AAPL"), BookId(7))])
    assert [(r.kind, r.book_id) for r in repairs] == [("delete_book", 7)]
    assert "interrupted create of 'AAPL'" in repairs[0].describe()


def test_orphan_book_of_a_create_that_never_learnt_its_id() -> None:
    repairs = plan_repairs({}, {BookId(3): book(3)}, [Intent("create", Symbol("MSFT"))])
    assert "probably left by an interrupted create of 'MSFT'" in repairs[0].reason


def test_unexplained_orphan_book_is_deleted_too() -> None:
    instruments = {Symbol("A"): listing("A", 1)}
    repairs = plan_repairs(instruments, {BookId(1): book(1), BookId(3): book(3)})
    assert [(r.kind, r.book_id) for r in repairs] == [("delete_book", 3)]
    assert "(" not in repairs[0].reason


def test_books_are_held_not_deleted_when_info_lists_nothing_unexplained() -> None:
    """An Info that lost its registry must not make Admin cancel every resting order."""
    books = {BookId(1): book(1), BookId(2): book(2)}
    repairs = plan_repairs({}, books)
    assert [(r.kind, r.book_id) for r in repairs] == [("hold_book", 1), ("hold_book", 2)]
    assert "lost registry" in repairs[0].describe()
    # ... but a book our own interrupted create explains is still deleted.
    explained = plan_repairs({}, books, [Intent("create", Symbol("AAPL"), BookId(2))])
    assert [(r.kind, r.book_id) for r in explained] == [("hold_book", 1), ("delete_book", 2)]


def test_dangling_instrument_is_withdrawn_before_books_are_deleted() -> None:
    instruments = {Symbol("X"): listing("X", 9)}
    repairs = plan_repairs(instruments, {BookId(1): book(1)}, [Intent("delete", Symbol("X"))])
    assert [(r.kind, r.symbol, r.book_id) for r in repairs] == [
        ("withdraw_instrument", "X", 9),
        ("delete_book", None, 1),
    ]
    assert "interrupted delete of 'X'" in repairs[0].reason


@given(
    st.dictionaries(st.sampled_from("ABCDEFGH"), st.integers(1, 12), max_size=8),
    st.sets(st.integers(1, 12), max_size=12),
)
def test_applying_the_plan_leaves_both_sides_agreeing(
    info: dict[str, int], books: set[int]
) -> None:
    instruments = {Symbol(s): listing(s, b) for s, b in info.items()}
    live = {BookId(b): book(b) for b in books}
    held = set()
    for repair in plan_repairs(instruments, live):
        if repair.kind == "withdraw_instrument":
            assert repair.symbol is not None
            del instruments[repair.symbol]
        elif repair.kind == "hold_book":
            assert not info, "books are held only when Info lists nothing"
            held.add(repair.book_id)
        else:
            del live[repair.book_id]
    referenced = {entry.order_book_id for entry in instruments.values()}
    assert referenced | held == set(live)
    # Nothing consistent was touched.
    assert all(s in instruments for s, b in info.items() if b in books)
    assert [r for r in plan_repairs(instruments, live) if r.kind != "hold_book"] == []
