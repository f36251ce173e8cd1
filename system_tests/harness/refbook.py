"""A naive price-time order book: the grader's reference for differential tests.

Lists, linear scans, integer tick prices: slow and obviously right, which is the
point.  It implements only what PROTOCOL.md says (price-time priority, trades at
the resting price, IOC/FOK remainders, amend priority rules), so a workload run
through the exchange and through this book must agree on every fill.
"""

from __future__ import annotations

from dataclasses import dataclass

BUY, SELL = 0, 1
GTC, IOC, FOK = 0, 1, 2


@dataclass
class RefOrder:
    key: int
    side: int
    ticks: int
    quantity: int
    stamp: int


@dataclass(frozen=True)
class RefTrade:
    maker: int
    taker: int
    ticks: int
    quantity: int


class RefBook:
    """See the module docstring.  ``key`` identifies an order (the caller's id)."""

    def __init__(self) -> None:
        self.orders: dict[int, RefOrder] = {}
        self._clock = 0

    def _stamp(self) -> int:
        self._clock += 1
        return self._clock

    def _opposite(self, side: int, ticks: int) -> list[RefOrder]:
        """Resting orders the aggressor can hit, best price first, then time."""
        if side == BUY:
            hits = [o for o in self.orders.values() if o.side == SELL and o.ticks <= ticks]
            return sorted(hits, key=lambda o: (o.ticks, o.stamp))
        hits = [o for o in self.orders.values() if o.side == BUY and o.ticks >= ticks]
        return sorted(hits, key=lambda o: (-o.ticks, o.stamp))

    def _match(self, key: int, side: int, ticks: int, quantity: int) -> tuple[list[RefTrade], int]:
        trades = []
        for maker in self._opposite(side, ticks):
            if quantity == 0:
                break
            size = min(quantity, maker.quantity)
            trades.append(RefTrade(maker.key, key, maker.ticks, size))
            maker.quantity -= size
            quantity -= size
            if maker.quantity == 0:
                del self.orders[maker.key]
        return trades, quantity

    def insert(
        self, key: int, side: int, ticks: int, quantity: int, tif: int = GTC
    ) -> tuple[list[RefTrade], int]:
        """Returns (trades in fill order, resting quantity)."""
        if tif == FOK and sum(o.quantity for o in self._opposite(side, ticks)) < quantity:
            return [], 0
        trades, left = self._match(key, side, ticks, quantity)
        if left and tif == GTC:
            self.orders[key] = RefOrder(key, side, ticks, left, self._stamp())
            return trades, left
        return trades, 0

    def cancel(self, key: int) -> int | None:
        """Cancelled quantity, or None when the order is not resting."""
        order = self.orders.pop(key, None)
        return None if order is None else order.quantity

    def amend(self, key: int, ticks: int, quantity: int) -> tuple[list[RefTrade], int] | None:
        """Returns (trades, resting) or None when the order is not resting."""
        order = self.orders.get(key)
        if order is None:
            return None
        if ticks == order.ticks and quantity <= order.quantity:
            order.quantity = quantity
            return [], quantity
        del self.orders[key]
        trades, left = self._match(key, order.side, ticks, quantity)
        if left:
            self.orders[key] = RefOrder(key, order.side, ticks, left, self._stamp())
        return trades, left

    def depth(self, limit: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids best first, asks best first) as (ticks, total quantity) levels."""
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for order in self.orders.values():
            book = bids if order.side == BUY else asks
            book[order.ticks] = book.get(order.ticks, 0) + order.quantity
        bid_levels = sorted(bids.items(), key=lambda level: -level[0])
        ask_levels = sorted(asks.items())
        if limit:
            bid_levels, ask_levels = bid_levels[:limit], ask_levels[:limit]
        return bid_levels, ask_levels
