"""Data structures of one order book: orders, price levels, sides and the book itself.

Layout (DESIGN.md, "heaps with lazy deletion and a FIFO per level"):

* ``Book.orders``: order_id -> :class:`Order`, the resting orders of the book.
* Per side a :class:`BookSide` with ``levels`` (price_ticks -> :class:`Level`) and
  ``heap``, a ``heapq`` of price keys: ``price`` for asks, ``-price`` for bids, so
  ``heap[0]`` is always the best price's key.
* A :class:`Level` is a FIFO (``deque``) of orders plus its aggregate quantity and
  live-order count.

Why lazy deletion: cancelling must be O(1) whatever the size of the book. A cancel
zeroes the order's quantity (the "dead" mark) and fixes the level's totals; the
order stays in its deque until it surfaces at the head, and an emptied level is
dropped from ``levels`` at once while its heap key stays until it surfaces at the
top. A heap key is live exactly when its price is in ``levels`` (every live level
has at least one key; duplicates are harmless). Both kinds of garbage are bounded:
a side's heap is rebuilt when its stale keys exceed ``2 * live + 16``, and a level's
deque likewise (see :func:`trim_level` and :func:`drop_level`), so memory stays
proportional to the live book.

Why these objects are tiny: a resting order holds five slots (no side or price; its
level knows both), about 72 bytes, so a million resting orders fit the 300-byte
budget with the dict and deque entries included.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from typing import Final

from services.order_book.events import BUY, SELL

__all__ = [
    "SPARE_LEVELS",
    "STALE_SLACK",
    "Book",
    "BookSide",
    "Level",
    "Order",
    "can_fill",
    "drop_level",
    "iter_levels",
    "trim_level",
]

#: Garbage allowed before a rebuild: stale > 2 * live + STALE_SLACK triggers it.
STALE_SLACK: Final = 16
#: Emptied levels kept per side for reuse (see BookSide.spare).
SPARE_LEVELS: Final = 64


class Order:
    """A resting order. ``quantity`` is what remains; 0 marks a dead queue entry.

    ``timestamp`` is when the order got its current queue position. Side, price and
    book come from ``level`` (one shared object per price), which keeps orders small.
    """

    __slots__ = ("level", "order_id", "quantity", "timestamp", "username")

    order_id: int
    quantity: int
    username: str
    timestamp: int
    level: Level

    def __init__(
        self, order_id: int, quantity: int, username: str, timestamp: int, level: Level
    ) -> None:
        self.order_id = order_id
        self.quantity = quantity
        self.username = username
        self.timestamp = timestamp
        self.level = level


class Level:
    """One price of one side: a FIFO of orders, their total quantity and live count.

    ``orders`` may hold dead entries (quantity 0); ``count`` counts only live ones,
    and a level whose count drops to 0 leaves ``side.levels`` at once.
    """

    __slots__ = ("count", "orders", "price", "qty", "side")

    price: int
    orders: deque[Order]
    qty: int
    count: int
    side: BookSide

    def __init__(self, price: int, side: BookSide) -> None:
        self.price = price
        self.orders = deque()
        self.qty = 0
        self.count = 0
        self.side = side


class BookSide:
    """Bids or asks of one book: price levels plus a heap of price keys (lazy).

    Invariant kept by every command: the heap's top key is live (or the heap is
    empty), so the best price is ``sign * heap[0]`` in O(1); stale keys only linger
    below the top until they surface or the heap is compacted.
    """

    __slots__ = ("book", "heap", "levels", "side", "sign", "spare")

    side: int
    sign: int
    heap: list[int]
    levels: dict[int, Level]
    book: Book
    spare: list[Level]

    def __init__(self, side: int, book: Book) -> None:
        self.side = side
        # Heap key = sign * price: bids are negated so the heap's minimum is the best.
        self.sign = -1 if side == BUY else 1
        self.heap = []
        self.levels = {}
        self.book = book
        # Emptied Level objects kept for reuse: most levels of a busy book hold one
        # order for a short while, and reusing saves two allocations per new price.
        self.spare = []

    def best(self) -> Level | None:
        """The best live level, dropping stale heap keys that surface on the way."""
        heap = self.heap
        levels = self.levels
        sign = self.sign
        while heap:
            level = levels.get(sign * heap[0])
            if level is not None:
                return level
            heappop(heap)
        return None

    def compact(self) -> None:
        """Rebuild the heap from the live levels only (drops every stale key)."""
        sign = self.sign
        self.heap = [sign * p for p in self.levels]
        heapify(self.heap)

    def add_level(self, price: int) -> Level:
        """Create (or recycle) the level at ``price``, which must not exist, and index it."""
        spare = self.spare
        if spare:
            level = spare.pop()
            level.price = price
            level.qty = 0  # an emptied level's qty is not maintained (count 0 says empty)
        else:
            level = Level(price, self)
        self.levels[price] = level
        heappush(self.heap, self.sign * price)
        return level


class Book:
    """One order book: identity, price rule, both sides and its resting orders."""

    __slots__ = (
        "asks",
        "bids",
        "order_book_id",
        "orders",
        "price_rule",
        "profit_ticks",
        "sides",
        "tick_size",
    )

    order_book_id: int
    tick_size: float
    price_rule: int
    bids: BookSide
    asks: BookSide
    sides: tuple[BookSide, BookSide]
    orders: dict[int, Order]
    profit_ticks: int

    def __init__(self, order_book_id: int, tick_size: float, price_rule: int) -> None:
        self.order_book_id = order_book_id
        self.tick_size = tick_size
        self.price_rule = price_rule
        self.bids = BookSide(BUY, self)
        self.asks = BookSide(SELL, self)
        self.sides = (self.bids, self.asks)
        self.orders = {}
        # Spread captured by the exchange, in ticks x quantity: exact, scaled on demand.
        self.profit_ticks = 0


def drop_level(level: Level) -> None:
    """Unindex an emptied level and keep its side's heap tidy.

    If the level was the best, its key and any stale keys under it leave the heap
    now (so the top stays live); otherwise the key goes stale, and the heap is
    rebuilt once stale keys exceed ``2 * live + 16``.
    """
    side = level.side
    levels = side.levels
    price = level.price
    del levels[price]
    # Dead orders point back at their level: clearing the queue breaks that cycle so
    # reference counting frees both at once (no work left for the cyclic GC).
    level.orders.clear()
    if len(side.spare) < SPARE_LEVELS:
        side.spare.append(level)
    heap = side.heap
    sign = side.sign
    if heap[0] == sign * price:
        heappop(heap)
        while heap and sign * heap[0] not in levels:
            heappop(heap)
    elif len(heap) > 3 * len(levels) + STALE_SLACK:
        side.compact()


def trim_level(level: Level) -> None:
    """Drop a level's dead queue entries once they exceed ``2 * live + 16``."""
    if len(level.orders) > 3 * level.count + STALE_SLACK:
        level.orders = deque([o for o in level.orders if o.quantity])


def iter_levels(side: BookSide) -> Iterator[Level]:
    """Live levels of a side, best price first (sorted; for snapshots and views)."""
    levels = side.levels
    for price in sorted(levels, reverse=side.side == BUY):
        yield levels[price]


def can_fill(side: BookSide, limit: int, quantity: int) -> bool:
    """Whether ``side`` holds at least ``quantity`` at prices crossing ``limit``.

    Used by fill-or-kill. Walks the heap as a tree in key order with a small
    frontier heap, so it visits only the levels it needs (O(k log k) for k levels)
    instead of sorting the whole side; stale and duplicate keys are skipped.
    """
    heap = side.heap
    if not heap:
        return False
    levels = side.levels
    if side.side == BUY:
        sign = -1
        limit_key = -limit
    else:
        sign = 1
        limit_key = limit
    size = len(heap)
    frontier = [(heap[0], 0)]
    seen: set[int] = set()
    need = quantity
    while frontier:
        key, index = heappop(frontier)
        if key > limit_key:
            return False  # every unexplored key is >= this one: nothing more crosses
        if key not in seen:
            seen.add(key)
            level = levels.get(sign * key)
            if level is not None:
                need -= level.qty
                if need <= 0:
                    return True
        child = 2 * index + 1
        if child < size:
            heappush(frontier, (heap[child], child))
            if child + 1 < size:
                heappush(frontier, (heap[child + 1], child + 1))
    return False
