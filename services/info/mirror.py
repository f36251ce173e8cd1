"""The market-data mirror: every order book rebuilt from the Order Book's events.

Why a mirror and not queries: Info never asks the Order Book for its book (there is
no such message, and asking would load the single writer); it replays the stream
that every service already receives: a login snapshot (sequence number 0) followed
by gap-free live events. Whatever Info publishes is derived from this mirror.

What it keeps, per book, in integer ticks: the aggregated quantity per price level
(a dict per side plus a sorted list of prices, so the top and any depth prefix are
cheap), and per resting order its side, price and remaining quantity (the trades
and cancels name orders, not levels).

**Transient books.** An insert or amend that trades emits the order's event with its
trade ids first, then one trade per fill. Until the last of those trades has
arrived the book is *transient*: its levels show partial fills of a match that the
Order Book performed atomically, and the aggressor's remainder has not joined yet.
Nothing derived from a transient book may be published (:attr:`BookMirror.transient`).
An IOC/FOK remainder never joins; its ``OnOrderCancelled`` follows and is expected.

**Contradictions are loud.** Any event that does not fit the mirror (a gap in the
sequence, an unknown order, a trade out of order, a resting order that would cross
the book, ...) raises :class:`MirrorError`. The caller drops the connection and
rebuilds from a fresh snapshot, so a mirror that is wrong is replaced, never patched.
Consequently a book that is not transient is never crossed.

Pure: no asyncio, no protobuf, no clock (a test checks the imports).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any, Final

from services.info.events import (
    BUY,
    GTC,
    BookCreated,
    BookDeleted,
    Event,
    OrderAmended,
    OrderCancelled,
    OrderInserted,
    Trade,
    TradeIds,
)

__all__ = [
    "MAX_LEVEL_QUANTITY",
    "BookMirror",
    "DepthView",
    "Mirror",
    "MirrorError",
    "SequenceGap",
    "TopView",
]

TopView = tuple[int, int, int, int]
"""``(bid_ticks, bid_quantity, ask_ticks, ask_quantity)``; zeros for an empty side."""

Levels = tuple[tuple[int, int], ...]
DepthView = tuple[Levels, Levels]
"""``(bids best first, asks best first)`` as ``(price_ticks, quantity)`` pairs."""

EMPTY_TOP: Final[TopView] = (0, 0, 0, 0)

MAX_LEVEL_QUANTITY: Final = 2**31 - 1
"""``PriceLevel.quantity`` is int32, but a level's total can exceed it (two maximal
orders at one price). Views show such a level as 2**31-1, the value the wire
carries, so a change hidden by that ceiling is no change (PROTOCOL.md: a message
only when what a subscriber sees changed); the levels keep the exact sum."""


class MirrorError(Exception):
    """The event stream contradicts the mirror; rebuild it from a fresh snapshot."""


class SequenceGap(MirrorError):
    """A live event's ``sequence_number`` is not the previous one plus 1."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"sequence gap: expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class _Order:
    __slots__ = ("price", "remaining", "side")

    def __init__(self, side: int, price: int, remaining: int) -> None:
        self.side = side
        self.price = price
        self.remaining = remaining


class _Aggressor:
    """An order whose trades are still arriving (what makes a book transient)."""

    __slots__ = ("index", "order_id", "price", "remaining", "rests", "side", "trade_ids")

    def __init__(
        self, order_id: int, side: int, price: int, remaining: int, rests: bool, trade_ids: TradeIds
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.remaining = remaining
        self.rests = rests
        self.trade_ids = trade_ids
        self.index = 0


class BookMirror:
    """One order book: aggregated levels per side and the resting orders behind them."""

    __slots__ = (
        "_ask_view",
        "_ask_view_depth",
        "_bid_view",
        "_bid_view_depth",
        "aggressor",
        "ask_prices",
        "ask_qty",
        "bid_prices",
        "bid_qty",
        "big",
        "expect_cancel",
        "order_book_id",
        "orders",
        "price_rule",
        "tick_size",
        "timestamp",
    )

    def __init__(
        self, order_book_id: int, tick_size: float, price_rule: int, timestamp: int
    ) -> None:
        self.order_book_id = order_book_id
        self.tick_size = tick_size
        self.price_rule = price_rule
        self.timestamp = timestamp
        """Time of the latest event reflected in the levels (Order Book clock, ns)."""
        self.bid_qty: dict[int, int] = {}
        self.ask_qty: dict[int, int] = {}
        self.bid_prices: list[int] = []  # ascending: best bid is the last
        self.ask_prices: list[int] = []  # ascending: best ask is the first
        self.orders: dict[int, _Order] = {}
        self.aggressor: _Aggressor | None = None
        self.expect_cancel: dict[int, int] = {}
        """IOC/FOK remainders (order id -> quantity) whose cancel is still to come."""
        self.big = False
        """Set (for good) once a level exceeded :data:`MAX_LEVEL_QUANTITY`: only then
        do views pay for capping quantities."""
        # The latest depth view per side (best first) and how many levels it holds
        # (0: all); None once that side's levels changed. An event changes one side,
        # so the other side's view is handed out again as the same tuple, which the
        # publisher recognises by identity and does not compare or encode again.
        self._bid_view: Levels | None = None
        self._bid_view_depth = 0
        self._ask_view: Levels | None = None
        self._ask_view_depth = 0

    # ------------------------------------------------------------------ views

    @property
    def transient(self) -> bool:
        """True while an aggressor's trades are still arriving: publish nothing."""
        return self.aggressor is not None

    def top(self) -> TopView:
        """Best bid and best ask with their aggregated quantities."""
        bids = self.bid_prices
        asks = self.ask_prices
        if bids:
            bid = bids[-1]
            bid_qty = self.bid_qty[bid]
        else:
            bid = bid_qty = 0
        if asks:
            ask = asks[0]
            ask_qty = self.ask_qty[ask]
        else:
            ask = ask_qty = 0
        if self.big:
            return (bid, min(bid_qty, MAX_LEVEL_QUANTITY), ask, min(ask_qty, MAX_LEVEL_QUANTITY))
        return (bid, bid_qty, ask, ask_qty)

    def depth(self, levels: int = 0) -> DepthView:
        """The best ``levels`` price levels per side (0 = all), best first.

        A side that has not changed since the last call returns the same tuple (or a
        slice of it), so asking again after an event on the other side is cheap.
        """
        return (self.bid_levels(levels), self.ask_levels(levels))

    def bid_levels(self, levels: int = 0) -> Levels:
        """The best ``levels`` bids (0 = all), best first; see :meth:`depth`."""
        view = self._bid_view
        if view is not None:
            held = self._bid_view_depth
            if not held:
                return view[:levels] if levels else view
            if levels and levels <= held:
                return view[:levels]
        prices = self.bid_prices
        qty = self.bid_qty
        if levels and levels < len(prices):
            view = tuple([(p, qty[p]) for p in reversed(prices[-levels:])])
            self._bid_view_depth = levels
        else:
            view = tuple([(p, qty[p]) for p in reversed(prices)])
            self._bid_view_depth = 0
        if self.big:
            view = _capped(view)
        self._bid_view = view
        return view

    def ask_levels(self, levels: int = 0) -> Levels:
        """The best ``levels`` asks (0 = all), best first; see :meth:`depth`."""
        view = self._ask_view
        if view is not None:
            held = self._ask_view_depth
            if not held:
                return view[:levels] if levels else view
            if levels and levels <= held:
                return view[:levels]
        prices = self.ask_prices
        qty = self.ask_qty
        if levels and levels < len(prices):
            view = tuple([(p, qty[p]) for p in prices[:levels]])
            self._ask_view_depth = levels
        else:
            view = tuple([(p, qty[p]) for p in prices])
            self._ask_view_depth = 0
        if self.big:
            view = _capped(view)
        self._ask_view = view
        return view

    @property
    def crossed(self) -> bool:
        """Best bid at or above best ask (never true of a non-transient mirror)."""
        return bool(
            self.bid_prices and self.ask_prices and self.bid_prices[-1] >= self.ask_prices[0]
        )

    # ------------------------------------------------------------------ level edits

    def _rest(self, order_id: int, side: int, price: int, quantity: int) -> None:
        """Put an order on the book; a resting order can never cross the other side."""
        if order_id in self.orders:
            raise MirrorError(f"book {self.order_book_id}: order {order_id} is already resting")
        if side == BUY:
            asks = self.ask_prices
            if asks and price >= asks[0]:
                raise MirrorError(
                    f"book {self.order_book_id}: bid {order_id} at {price} would cross ask {asks[0]}"
                )
            levels, prices = self.bid_qty, self.bid_prices
            self._bid_view = None
        else:
            bids = self.bid_prices
            if bids and price <= bids[-1]:
                raise MirrorError(
                    f"book {self.order_book_id}: ask {order_id} at {price} would cross bid {bids[-1]}"
                )
            levels, prices = self.ask_qty, self.ask_prices
            self._ask_view = None
        self.orders[order_id] = _Order(side, price, quantity)
        current = levels.get(price)
        if current is None:
            levels[price] = quantity
            insort(prices, price)
        else:
            current += quantity
            levels[price] = current
            if current > MAX_LEVEL_QUANTITY:
                self.big = True

    def _take(self, side: int, price: int, quantity: int) -> None:
        """Remove ``quantity`` from a level (dropping the level when it empties)."""
        if side == BUY:
            levels, prices = self.bid_qty, self.bid_prices
            self._bid_view = None
        else:
            levels, prices = self.ask_qty, self.ask_prices
            self._ask_view = None
        left = levels[price] - quantity
        if left:
            levels[price] = left
        else:
            del levels[price]
            del prices[bisect_left(prices, price)]


def _capped(levels: Levels) -> Levels:
    """``levels`` with every quantity capped at :data:`MAX_LEVEL_QUANTITY`."""
    return tuple([(p, q if q <= MAX_LEVEL_QUANTITY else MAX_LEVEL_QUANTITY) for p, q in levels])


class Mirror:
    """All books, fed one event at a time; collects what changed for the publisher.

    A fresh mirror is *building* (it accepts snapshot messages, sequence 0) until the
    first live event or :meth:`end_snapshot`; then it is *live* and every event must
    carry the previous sequence number plus 1.
    """

    __slots__ = ("books", "deleted", "dirty", "last_sequence", "live", "trades")

    def __init__(self) -> None:
        self.books: dict[int, BookMirror] = {}
        self.deleted: set[int] = set()
        """Ids of books deleted while this mirror was live (ids are never reused)."""
        self.dirty: set[int] = set()
        """Books touched since the last :meth:`drain` (their views may have changed)."""
        self.trades: list[Trade] = []
        """Trades since the last :meth:`drain`, in stream order."""
        self.last_sequence = 0
        self.live = False

    def end_snapshot(self) -> None:
        """The login snapshot is complete (the stream's barrier came back)."""
        self.live = True

    def drain(self) -> tuple[set[int], list[Trade]]:
        """Touched book ids and trades since the last call; both are then forgotten."""
        dirty, trades = self.dirty, self.trades
        self.dirty = set()
        self.trades = []
        return dirty, trades

    def book(self, order_book_id: int) -> BookMirror | None:
        return self.books.get(order_book_id)

    # ------------------------------------------------------------------ events

    def apply(self, event: Event) -> None:
        """Apply one event; raises :class:`MirrorError` if it does not fit."""
        seq = event[0]
        if seq:
            last = self.last_sequence
            if last and seq != last + 1:
                raise SequenceGap(last + 1, seq)
            self.last_sequence = seq
            self.live = True
        elif self.live:
            raise MirrorError("snapshot message (sequence number 0) in the live stream")
        handler = _HANDLERS.get(type(event))
        if handler is None:  # pragma: no cover - Event is a closed union
            raise MirrorError(f"unexpected event {type(event).__name__}")
        handler(self, event)

    def _book_of(self, order_book_id: int) -> BookMirror:
        book = self.books.get(order_book_id)
        if book is None:
            raise MirrorError(f"event for unknown order book {order_book_id}")
        if book.aggressor is not None:
            raise MirrorError(
                f"book {order_book_id}: event before the trades of order "
                f"{book.aggressor.order_id} have all arrived"
            )
        return book

    def _created(self, e: BookCreated) -> None:
        if e.order_book_id in self.books:
            raise MirrorError(f"order book {e.order_book_id} created twice")
        self.books[e.order_book_id] = BookMirror(
            e.order_book_id, e.tick_size, e.price_rule, e.timestamp
        )
        self.dirty.add(e.order_book_id)

    def _deleted(self, e: BookDeleted) -> None:
        book = self._book_of(e.order_book_id)
        if book.orders:
            raise MirrorError(f"order book {e.order_book_id} deleted with resting orders")
        del self.books[e.order_book_id]
        self.deleted.add(e.order_book_id)
        self.dirty.add(e.order_book_id)

    def _inserted(self, e: OrderInserted) -> None:
        book = self._book_of(e.order_book_id)
        if e.sequence_number == 0:
            # Snapshot: a resting order with its remaining quantity; the state's time
            # is when the snapshot arrived (the BookCreated stamp), not the order's.
            book._rest(e.order_id, e.side, e.price_ticks, e.quantity)
        elif e.trade_ids:
            if e.order_id in book.orders:
                raise MirrorError(f"book {e.order_book_id}: order {e.order_id} inserted twice")
            book.aggressor = _Aggressor(
                e.order_id, e.side, e.price_ticks, e.quantity, e.time_in_force == GTC, e.trade_ids
            )
            book.timestamp = e.timestamp
        else:
            if e.time_in_force == GTC:
                book._rest(e.order_id, e.side, e.price_ticks, e.quantity)
            else:
                book.expect_cancel[e.order_id] = e.quantity
            book.timestamp = e.timestamp
        self.dirty.add(e.order_book_id)

    def _amended(self, e: OrderAmended) -> None:
        book = self._book_of(e.order_book_id)
        order = book.orders.get(e.order_id)
        if order is None:
            raise MirrorError(f"book {e.order_book_id}: amend of unknown order {e.order_id}")
        if e.kept_priority:
            if e.price_ticks != order.price or not 0 < e.quantity <= order.remaining or e.trade_ids:
                raise MirrorError(
                    f"book {e.order_book_id}: order {e.order_id} kept priority wrongly"
                )
            book._take(order.side, order.price, order.remaining - e.quantity)
            order.remaining = e.quantity
        else:
            book._take(order.side, order.price, order.remaining)
            del book.orders[e.order_id]
            if e.trade_ids:
                book.aggressor = _Aggressor(
                    e.order_id, order.side, e.price_ticks, e.quantity, True, e.trade_ids
                )
            else:
                book._rest(e.order_id, order.side, e.price_ticks, e.quantity)
        book.timestamp = e.timestamp
        self.dirty.add(e.order_book_id)

    def _cancelled(self, e: OrderCancelled) -> None:
        book = self._book_of(e.order_book_id)
        order = book.orders.pop(e.order_id, None)
        if order is not None:
            if order.remaining != e.cancelled_quantity:
                raise MirrorError(
                    f"book {e.order_book_id}: order {e.order_id} cancelled with "
                    f"{e.cancelled_quantity}, mirror has {order.remaining}"
                )
            book._take(order.side, order.price, order.remaining)
            book.timestamp = e.timestamp
            self.dirty.add(e.order_book_id)
            return
        expected = book.expect_cancel.pop(e.order_id, None)
        if expected is None:
            raise MirrorError(f"book {e.order_book_id}: cancel of unknown order {e.order_id}")
        if expected != e.cancelled_quantity:
            raise MirrorError(
                f"book {e.order_book_id}: remainder of order {e.order_id} cancelled with "
                f"{e.cancelled_quantity}, expected {expected}"
            )

    def _trade(self, e: Trade) -> None:
        book = self.books.get(e.order_book_id)
        if book is None:
            raise MirrorError(f"trade in unknown order book {e.order_book_id}")
        aggressor = book.aggressor
        if aggressor is None:
            raise MirrorError(f"book {e.order_book_id}: trade {e.trade_id} without an aggressor")
        if e.trade_id != aggressor.trade_ids[aggressor.index]:
            raise MirrorError(
                f"book {e.order_book_id}: trade {e.trade_id} out of order "
                f"(expected {aggressor.trade_ids[aggressor.index]})"
            )
        if e.aggressor_side == BUY:
            aggressor_id, resting_id = e.buy_order_id, e.sell_order_id
        else:
            aggressor_id, resting_id = e.sell_order_id, e.buy_order_id
        resting = book.orders.get(resting_id)
        quantity = e.quantity
        if (
            aggressor_id != aggressor.order_id
            or e.aggressor_side != aggressor.side
            or resting is None
            or resting.side == aggressor.side
            or resting.price != e.price_ticks
            or not 0 < quantity <= min(resting.remaining, aggressor.remaining)
        ):
            raise MirrorError(f"book {e.order_book_id}: trade {e.trade_id} does not fit the book")
        book._take(resting.side, resting.price, quantity)
        resting.remaining -= quantity
        if not resting.remaining:
            del book.orders[resting_id]
        aggressor.remaining -= quantity
        aggressor.index += 1
        book.timestamp = e.timestamp
        self.trades.append(e)
        self.dirty.add(e.order_book_id)
        if aggressor.index == len(aggressor.trade_ids):
            book.aggressor = None
            if aggressor.remaining:
                if aggressor.rests:
                    book._rest(
                        aggressor.order_id, aggressor.side, aggressor.price, aggressor.remaining
                    )
                else:
                    book.expect_cancel[aggressor.order_id] = aggressor.remaining


_HANDLERS: Final[dict[type, Callable[[Mirror, Any], None]]] = {
    BookCreated: Mirror._created,
    BookDeleted: Mirror._deleted,
    OrderInserted: Mirror._inserted,
    OrderAmended: Mirror._amended,
    OrderCancelled: Mirror._cancelled,
    Trade: Mirror._trade,
}
