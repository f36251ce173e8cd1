"""The two-phase instrument lifecycle as pure state machines (sans-I/O).

Why state machines rather than one ``async def create()``: every step talks to
another service and each call can end four ways (done, refused, never sent,
or *unknown* -- a timeout or a dropped connection after the request left).
Writing the flows as pure objects that say *what to do next* and learn *what
happened* makes every path explicit and lets a property test drive them through
every combination of outcomes (``tests/admin/test_lifecycle.py``), checking that
no half-created instrument survives. The asyncio shell (``orchestrator.py``)
only executes the actions these machines return.

Create (PROTOCOL.md, "Instrument lifecycle"): create the order book, then the
Info instrument with that book id; if the second step fails, delete the book
again before answering. Delete runs the other way: withdraw the instrument from
Info first (no new orders can route to it), then delete the book (its resting
orders are cancelled and their owners told).

When an outcome is unknown, or a rollback itself fails, the machine finishes
with ``repair_needed``: the shell then runs a reconciliation pass
(``reconcile.py``) as soon as both services are reachable, which removes
whatever exists on one side only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.admin.model import BookId, InstrumentSpec, Listing, PriceRule, Symbol

__all__ = [
    "Action",
    "CreateBook",
    "CreateFlow",
    "CreateInstrument",
    "DeleteBook",
    "DeleteFlow",
    "Finished",
    "Outcome",
    "RemoveInstrument",
    "Reply",
]


class Outcome(enum.Enum):
    """How one request to another service ended."""

    OK = "ok"
    REFUSED = "refused"
    """The peer answered with an error: it changed nothing."""
    UNAVAILABLE = "unavailable"
    """Not sent (the peer is not connected): nothing changed."""
    UNKNOWN = "unknown"
    """Sent but not answered (timeout, connection lost): it may or may not have happened."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the shell learned from executing an action."""

    outcome: Outcome
    error: str = ""
    book_id: int = 0
    """For ``CreateBook``: the new book's id."""
    timestamp: int = 0
    """For ``CreateInstrument``: Info's ``created_timestamp``."""


@dataclass(frozen=True, slots=True)
class CreateBook:
    tick_size: float
    price_rule: PriceRule


@dataclass(frozen=True, slots=True)
class DeleteBook:
    book_id: BookId


@dataclass(frozen=True, slots=True)
class CreateInstrument:
    spec: InstrumentSpec
    book_id: BookId


@dataclass(frozen=True, slots=True)
class RemoveInstrument:
    symbol: Symbol


Action = CreateBook | DeleteBook | CreateInstrument | RemoveInstrument


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a flow: the answer for the client, and whether to reconcile."""

    error: str = ""
    """Empty on success."""
    listing: Listing | None = None
    """The created instrument (create, on success)."""
    repair_needed: bool = False
    """Something may exist on one side only; run a reconciliation pass."""


def _unsent_or_unknown(reply: Reply, prefix: str) -> str:
    return f"{prefix}: {reply.error}" if reply.outcome is Outcome.REFUSED else reply.error


class CreateFlow:
    """Create: book, then instrument; roll the book back if the instrument fails."""

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.book_id: BookId | None = None
        """Set once the Order Book has created the book (the intent log records it)."""
        self._failure = ""
        self._info_unknown = False
        self._state = "new"

    def start(self) -> Action:
        if self._state != "new":
            raise RuntimeError("flow already started")
        self._state = "book"
        return CreateBook(self.spec.tick_size, self.spec.price_rule)

    def step(self, reply: Reply) -> Action | Finished:
        """Feed the reply to the last action; returns the next action or the end."""
        if self._state == "book":
            return self._after_book(reply)
        if self._state == "instrument":
            return self._after_instrument(reply)
        if self._state == "rollback":
            return self._after_rollback(reply)
        raise RuntimeError(f"no reply expected in state {self._state!r}")

    def _after_book(self, reply: Reply) -> Action | Finished:
        if reply.outcome is not Outcome.OK:
            self._state = "done"
            return Finished(
                error=_unsent_or_unknown(reply, "order book refused"),
                # A book created after a timeout is unreferenced: reconciliation deletes it.
                repair_needed=reply.outcome is Outcome.UNKNOWN,
            )
        self.book_id = BookId(reply.book_id)
        self._state = "instrument"
        return CreateInstrument(self.spec, self.book_id)

    def _after_instrument(self, reply: Reply) -> Action | Finished:
        assert self.book_id is not None
        if reply.outcome is Outcome.OK:
            self._state = "done"
            return Finished(listing=Listing(self.spec, self.book_id, reply.timestamp))
        self._failure = _unsent_or_unknown(reply, "info refused")
        self._info_unknown = reply.outcome is Outcome.UNKNOWN
        self._state = "rollback"
        return DeleteBook(self.book_id)

    def _after_rollback(self, reply: Reply) -> Finished:
        self._state = "done"
        if reply.outcome is Outcome.OK:
            return Finished(error=self._failure, repair_needed=self._info_unknown)
        if reply.outcome is Outcome.REFUSED:
            # Normally "unknown order book": it is gone already, which is what we
            # wanted. Reconciliation checks that against the Order Book's own list.
            return Finished(error=self._failure, repair_needed=True)
        return Finished(
            error=(
                f"{self._failure}; rolling back order book {self.book_id} failed "
                f"({reply.error}): Admin deletes it when the Order Book is reachable"
            ),
            repair_needed=True,
        )


class DeleteFlow:
    """Delete: withdraw the instrument from Info, then delete its book."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.book_id = listing.order_book_id
        self._state = "new"

    def start(self) -> Action:
        if self._state != "new":
            raise RuntimeError("flow already started")
        self._state = "instrument"
        return RemoveInstrument(self.listing.symbol)

    def step(self, reply: Reply) -> Action | Finished:
        if self._state == "instrument":
            if reply.outcome is not Outcome.OK:
                self._state = "done"
                return Finished(
                    error=_unsent_or_unknown(reply, "info refused"),
                    repair_needed=reply.outcome is Outcome.UNKNOWN,
                )
            self._state = "book"
            return DeleteBook(self.book_id)
        if self._state == "book":
            self._state = "done"
            if reply.outcome is Outcome.OK:
                return Finished()
            if reply.outcome is Outcome.REFUSED:
                # The instrument is withdrawn, so the delete has taken effect for
                # everyone; a refusal means the book is gone already (or something
                # odd): reconciliation checks against the Order Book's own list.
                return Finished(repair_needed=True)
            return Finished(
                error=(
                    f"instrument {self.listing.symbol!r} was withdrawn from Info, but "
                    f"deleting order book {self.book_id} failed ({reply.error}): "
                    "Admin deletes it when the Order Book is reachable"
                ),
                repair_needed=True,
            )
        raise RuntimeError(f"no reply expected in state {self._state!r}")
