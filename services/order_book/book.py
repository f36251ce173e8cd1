"""Data structures of one order book: orders, price levels, sides and the book itself.

Layout (DESIGN.md, "heaps with lazy deletion and a FIFO per level"):

* ``Book.orders``: order_id -> :class:`Order`, the resting orders of the book.
* Per side a :class:`BookSide` with ``levels`` (price_ticks -> :class:`Level`) and
  ``heap``, a ``heapq`` of price keys: ``price`` for asks, ``-price`` for bids, so
  ``heap[0]`` is the best price's key.
* A :class:`Level` is a FIFO of orders plus its aggregate quantity. The FIFO is
  intrusive: each order links to its neighbours (``prev``/``next``) and the level
  knows ``head`` and ``tail``.

Why an intrusive list and not a ``collections.deque`` per level: a deque costs about
770 bytes even for one order (it allocates a 64-slot block), and real books (flash1's
among them) are mostly levels of one or a few orders, so the deque alone would blow
the memory budget; the links cost 16 bytes per order instead. They also make cancel
a true O(1) unlink that leaves no dead entries behind.

Why lazy deletion for the heap: an emptied level leaves ``levels`` at once, but its
heap key stays until it surfaces at the top (or, if it *is* the top, it goes at
once: every command leaves the heap's top key live, so the best price is O(1)). A
heap key is live exactly when its price is in ``levels`` (every live level has at
least one key; duplicates are harmless). The stale keys are bounded: a side's heap
is rebuilt when they exceed ``2 * live + 16``, so memory stays proportional to the
live book.

No reference cycles survive a removal: unlinking an order fixes its neighbours'
links, and dropping a level or a book clears every link it still holds, so
reference counting frees everything at once and the cyclic GC has nothing to find.
"""

from __future__ import annotations

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
    "iter_orders",
    "unlink",
]

#: Garbage allowed before a rebuild: stale > 2 * live + STALE_SLACK triggers it.
STALE_SLACK: Final = 16
#: Emptied levels kept per side for reuse (see BookSide.spare).
SPARE_LEVELS: Final = 64


class Order:
    """A resting order: what remains of it, who owns it, its place in its level.

    ``timestamp`` is when the order got its current queue position. Side, price and
    book come from ``level`` (one shared object per price), which keeps orders small
    (7 slots, 88 bytes). ``quantity`` is set to 0 when the order leaves the book.
    """

    __slots__ = ("level", "next", "order_id", "prev", "quantity", "timestamp", "username")

    order_id: int
    quantity: int
    username: str
    timestamp: int
    level: Level
    prev: Order | None
    next: Order | None

    def __init__(
        self,
        order_id: int,
        quantity: int,
        username: str,
        timestamp: int,
        level: Level,
        prev: Order | None,
    ) -> None:
        self.order_id = order_id
        self.quantity = quantity
        self.username = username
        self.timestamp = timestamp
        self.level = level
        self.prev = prev
        self.next = None


class Level:
    """One price of one side: a FIFO of orders (``head`` first) and their total quantity.

    A level whose last order leaves is dropped from ``side.levels`` at once (and
    perhaps recycled: see :attr:`BookSide.spare`); a listed level is never empty.
    """

    __slots__ = ("head", "price", "qty", "side", "tail")

    price: int
    qty: int
    head: Order | None
    tail: Order | None
    side: BookSide

    def __init__(self, price: int, side: BookSide) -> None:
        self.price = price
        self.qty = 0
        self.head = None
        self.tail = None
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
        # order for a short while, and reusing one saves an allocation per new price.
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
            level.qty = 0
        else:
            level = Level(price, self)
        self.levels[price] = level
        heappush(self.heap, self.sign * price)
        return level

    def clear(self) -> None:
        """Forget every level and order of this side, breaking all their links."""
        for level in self.levels.values():
            order = level.head
            while order is not None:
                following = order.next
                order.prev = order.next = None
                order = following
            level.head = level.tail = None
        self.levels.clear()
        self.heap.clear()


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
    rebuilt once stale keys exceed ``2 * live + 16``. The engine inlines this on its
    cancel path; keep the two in step.
    """
    side = level.side
    levels = side.levels
    price = level.price
    del levels[price]
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


def unlink(order: Order) -> None:
    """Take an order out of its level's FIFO in O(1), dropping the level if it empties.

    Does not touch ``Book.orders`` or ``order.quantity``; the engine inlines the same
    steps on its cancel path.
    """
    level = order.level
    prev = order.prev
    following = order.next
    if prev is None and following is None:
        level.head = level.tail = None
        drop_level(level)
        return
    if prev is None:
        level.head = following
    else:
        prev.next = following
    if following is None:
        level.tail = prev
    else:
        following.prev = prev
    level.qty -= order.quantity


def iter_levels(side: BookSide) -> Iterator[Level]:
    """Live levels of a side, best price first (sorted; for snapshots and views)."""
    levels = side.levels
    for price in sorted(levels, reverse=side.side == BUY):
        yield levels[price]


def iter_orders(level: Level) -> Iterator[Order]:
    """Orders of a level in time priority."""
    order = level.head
    while order is not None:
        yield order
        order = order.next


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
    sign = side.sign
    limit_key = sign * limit
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
