"""Reconciliation: make every instrument exist in both services or in neither.

The rule (also in docs/admin.md), decided only from the two services' own lists:

1. An Info instrument whose ``order_book_id`` is not a live book is *withdrawn
   from Info* (its book is gone, so nothing could trade it anyway).
2. A live book that no Info instrument references is *deleted* (its resting
   orders are cancelled and their owners told): nobody can route an order to a
   book without a symbol, so keeping it would only strand those orders.

Instruments are repaired before books so that, mid-pass, no symbol ever points
at a book that was just deleted. Open intents (``intents.py``) only explain a
repair in the log ("interrupted create of 'AAPL'"); they never change what is
repaired, so a lost or stale intent log cannot make the outcome wrong.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.admin.intents import Intent
from services.admin.model import BookId, BookInfo, Listing, Symbol

__all__ = ["Repair", "plan_repairs"]


@dataclass(frozen=True, slots=True)
class Repair:
    """One action of a reconciliation pass, with why it is needed."""

    kind: str
    """``withdraw_instrument``, ``delete_book``, or ``hold_book`` (needs an operator)."""
    symbol: Symbol | None
    book_id: BookId
    reason: str

    def describe(self) -> str:
        if self.kind == "withdraw_instrument":
            return f"withdraw instrument {self.symbol!r} from Info: {self.reason}"
        if self.kind == "hold_book":
            return f"keep order book {self.book_id}: {self.reason}"
        return f"delete order book {self.book_id}: {self.reason}"


def _explain(intents: Iterable[Intent], *, symbol: str | None, book_id: int) -> str:
    """The open intent that explains this repair, if any (for the log only)."""
    by_book = [i for i in intents if i.book_id == book_id]
    if by_book:
        return f" (left by an {by_book[-1].describe()})"
    if symbol is not None:
        by_symbol = [i for i in intents if i.symbol == symbol]
        if by_symbol:
            return f" (left by an {by_symbol[-1].describe()})"
        return ""
    # A create interrupted before the Order Book answered never learnt its book id.
    unnumbered = sorted({i.symbol for i in intents if i.op == "create" and i.book_id is None})
    if unnumbered:
        names = ", ".join(repr(s) for s in unnumbered)
        return f" (probably left by an interrupted create of {names})"
    return ""


def plan_repairs(
    instruments: Mapping[Symbol, Listing],
    books: Mapping[BookId, BookInfo],
    intents: Iterable[Intent] = (),
) -> list[Repair]:
    """The repairs that make both views agree, instruments first, in a stable order."""
    intents = list(intents)
    repairs: list[Repair] = []
    referenced: set[BookId] = set()
    for symbol in sorted(instruments):
        listing = instruments[symbol]
        referenced.add(listing.order_book_id)
        if listing.order_book_id not in books:
            explained = _explain(intents, symbol=symbol, book_id=listing.order_book_id)
            repairs.append(
                Repair(
                    "withdraw_instrument",
                    symbol,
                    listing.order_book_id,
                    f"its order book {listing.order_book_id} does not exist{explained}",
                )
            )
    for book_id in sorted(books):
        if book_id not in referenced:
            explained = _explain(intents, symbol=None, book_id=book_id)
            if not instruments and not explained:
                # Info lists nothing at all and no interrupted operation of ours
                # explains the book: far likelier Info lost its registry than that
                # every book is an orphan. Deleting would cancel every resting order
                # on the exchange, so hold and let an operator decide.
                repairs.append(
                    Repair(
                        "hold_book",
                        None,
                        book_id,
                        "no instrument in Info uses it, but Info lists no instruments at all"
                        " (lost registry?); not deleting it: restore Info's data or delete"
                        " the book deliberately",
                    )
                )
                continue
            repairs.append(
                Repair("delete_book", None, book_id, f"no instrument in Info uses it{explained}")
            )
    return repairs
