"""Small helpers that keep the engine tests short and readable."""

from __future__ import annotations

from services.order_book.engine import Engine
from services.order_book.events import (
    GTC,
    RESTING_ORDER_PRICE,
    AmendResult,
    CancelResult,
    Event,
    InsertResult,
    OnTrade,
)


class Clock:
    """Deterministic timestamps: every call is one nanosecond later."""

    def __init__(self, start: int = 1_700_000_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


class Desk:
    """An engine with one book and terse command helpers."""

    def __init__(self, price_rule: int = RESTING_ORDER_PRICE, tick_size: float = 0.01) -> None:
        self.engine = Engine()
        self.clock = Clock()
        created = self.engine.create_book(tick_size, price_rule, self.clock())
        assert not created.error
        self.book = created.order_book_id
        self.engine.drain_events()

    def buy(
        self, price: int, qty: int, user: str = "alice", tif: int = GTC, coid: str = ""
    ) -> InsertResult:
        return self.engine.insert(self.book, user, 0, price, qty, tif, coid, self.clock())

    def sell(
        self, price: int, qty: int, user: str = "bob", tif: int = GTC, coid: str = ""
    ) -> InsertResult:
        return self.engine.insert(self.book, user, 1, price, qty, tif, coid, self.clock())

    def cancel(self, order_id: int, user: str = "") -> CancelResult:
        return self.engine.cancel(self.book, order_id, user, self.clock())

    def amend(self, order_id: int, price: int, qty: int, user: str = "") -> AmendResult:
        return self.engine.amend(self.book, order_id, user, price, qty, self.clock())

    def events(self) -> list[Event]:
        return self.engine.drain_events()

    def trades(self) -> list[OnTrade]:
        return [e for e in self.engine.drain_events() if isinstance(e, OnTrade)]

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.engine.depth(self.book)

    def queue(self, side: int, price: int) -> list[tuple[int, int]]:
        """(order_id, remaining) at one price level, in time priority."""
        return [
            (o.order_id, o.quantity)
            for o in self.engine.resting_orders(self.book)
            if o.side == side and o.price_ticks == price
        ]

    def best(self) -> tuple[int | None, int | None]:
        bids, asks = self.depth()
        return (bids[0][0] if bids else None, asks[0][0] if asks else None)
