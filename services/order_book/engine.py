"""The pure matching engine of the Order Book service: many books, one event stream.

Why it looks the way it does:

* **Pure and deterministic.** No I/O, no clock, no asyncio, no protobuf: every command
  takes its ``timestamp`` from the caller, so replaying a journal of accepted commands
  rebuilds the same state (:meth:`Engine.state_hash` proves it).
* **Expected outcomes are values.** A refused command returns a result whose
  ``error`` says why, and changes nothing: no id, trade id or sequence number is
  consumed, no event is emitted.
* **One gap-free event stream.** Every change appends a domain event (see
  ``events.py``) numbered from 1 across all books; the caller drains them with
  :meth:`Engine.drain_events` and publishes them in order.
* **Fast.** Prices are integer ticks; levels are found through a dict and ordered
  by a lazily cleaned heap; a cancel is O(1) (see ``book.py``). The common paths
  (resting insert, cancel) are written out inline and build events and results with
  ``tuple.__new__``; matching lives in one loop (:meth:`Engine._match`).

Decisions worth knowing:

* Order ids, trade ids and book ids come from engine-wide counters starting at 1 and
  are never reused; the counters are state (journal replay restores them).
* Resting orders are always good-till-cancel: IOC and FOK never rest, and an amend
  only ever applies to a resting order, so an amended order stays GTC.
* A cancel or amend naming someone else's order gets exactly the error of an unknown
  order. ``username == ""`` on cancel/amend means "anyone" (internal callers).
* ``client_order_id`` is checked first: a resend returns the original
  :class:`InsertResult` object, whatever its other fields say.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from heapq import heappop, heappush

from services.common.prices import check_tick_size
from services.order_book.book import (
    SPARE_LEVELS,
    STALE_SLACK,
    Book,
    BookSide,
    Level,
    Order,
    can_fill,
    iter_levels,
    iter_orders,
    unlink,
)
from services.order_book.events import (
    BUY,
    FOK,
    GTC,
    IOC,
    MAX_PRICE_TICKS,
    MAX_QUANTITY,
    RESTING_ORDER_PRICE,
    SELL,
    SPREAD_CAPTURE,
    AmendResult,
    BookInfo,
    CancelReason,
    CancelResult,
    ClearBookResult,
    CreateBookResult,
    DeleteBookResult,
    Event,
    ExchangeStats,
    InsertResult,
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
    RestingOrder,
)

__all__ = ["MAX_CLIENT_ORDER_ID_BYTES", "Engine"]

#: PROTOCOL.md: client_order_id is at most 64 bytes of UTF-8.
MAX_CLIENT_ORDER_ID_BYTES = 64

_new = tuple.__new__  # builds NamedTuples without their Python-level __new__
_REQUESTED = CancelReason.REQUESTED
_UNFILLED = CancelReason.UNFILLED

# Error texts never echo ids (someone else's order must look exactly like an unknown one).
ERR_UNKNOWN_BOOK = "unknown order book"
ERR_UNKNOWN_ORDER = "unknown order (not resting in this book)"
ERR_QUANTITY = f"quantity must be between 1 and {MAX_QUANTITY}"
ERR_PRICE = f"price must be between 1 and {MAX_PRICE_TICKS} ticks"
ERR_SIDE = "side must be BUY (0) or SELL (1)"
ERR_TIME_IN_FORCE = (
    "time_in_force must be GOOD_TILL_CANCEL (0), IMMEDIATE_OR_CANCEL (1) or FILL_OR_KILL (2)"
)
ERR_CLIENT_ORDER_ID = f"client_order_id is longer than {MAX_CLIENT_ORDER_ID_BYTES} bytes of UTF-8"
ERR_PRICE_RULE = "price_rule must be RESTING_ORDER_PRICE (0) or SPREAD_CAPTURE (1)"

# Refusals are constants: rejecting allocates nothing.
_INSERT_UNKNOWN_BOOK = InsertResult(ERR_UNKNOWN_BOOK, 0, 0, (), 0, 0)
_INSERT_QUANTITY = InsertResult(ERR_QUANTITY, 0, 0, (), 0, 0)
_INSERT_PRICE = InsertResult(ERR_PRICE, 0, 0, (), 0, 0)
_INSERT_SIDE = InsertResult(ERR_SIDE, 0, 0, (), 0, 0)
_INSERT_TIME_IN_FORCE = InsertResult(ERR_TIME_IN_FORCE, 0, 0, (), 0, 0)
_INSERT_CLIENT_ORDER_ID = InsertResult(ERR_CLIENT_ORDER_ID, 0, 0, (), 0, 0)
_CANCEL_UNKNOWN_BOOK = CancelResult(ERR_UNKNOWN_BOOK, 0, 0, 0)
_CANCEL_UNKNOWN_ORDER = CancelResult(ERR_UNKNOWN_ORDER, 0, 0, 0)
_AMEND_UNKNOWN_BOOK = AmendResult(ERR_UNKNOWN_BOOK, 0, (), 0, 0, 0)
_AMEND_UNKNOWN_ORDER = AmendResult(ERR_UNKNOWN_ORDER, 0, (), 0, 0, 0)
_AMEND_QUANTITY = AmendResult(ERR_QUANTITY, 0, (), 0, 0, 0)
_AMEND_PRICE = AmendResult(ERR_PRICE, 0, (), 0, 0, 0)

# Stands in for an OnOrderInserted/OnOrderAmended until its trade ids are known.
_PLACEHOLDER = OnOrderBookDeleted(0, 0, 0)


class Engine:
    """All order books of one exchange and their single, gap-free event stream.

    Commands are methods that return result values and append events; read the
    events with :meth:`drain_events`. Nothing here is thread-safe: one writer.
    """

    __slots__ = (
        "_books",
        "_coids",
        "_events",
        "_next_book_id",
        "_next_order_id",
        "_next_trade_id",
        "_retired_profit",
        "_seq",
        "_traded_volume",
        "_users",
    )

    def __init__(self) -> None:
        self._books: dict[int, Book] = {}
        self._events: list[Event] = []
        self._seq = 0  # last sequence number handed out
        self._next_book_id = 1
        self._next_order_id = 1
        self._next_trade_id = 1
        self._traded_volume = 0
        # (tick_size, profit_ticks) of deleted books: their profit stays in the stats.
        self._retired_profit: list[tuple[float, int]] = []
        # username -> client_order_id -> the InsertResult of the accepted insert.
        self._coids: dict[str, dict[str, InsertResult]] = {}
        # One str object per username, shared by all of its resting orders.
        self._users: dict[str, str] = {}

    # ------------------------------------------------------------------ events

    def drain_events(self) -> list[Event]:
        """Return the events produced since the last drain, oldest first, and forget them."""
        events = self._events
        self._events = []
        return events

    @property
    def last_sequence_number(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._seq

    # ------------------------------------------------------------- book admin

    def create_book(self, tick_size: float, price_rule: int, timestamp: int) -> CreateBookResult:
        """Create a book; emits OnOrderBookCreated. Its id comes from a never-reused counter."""
        problem = check_tick_size(tick_size)
        if problem is not None:
            return CreateBookResult(problem.message, 0, 0)
        if price_rule != RESTING_ORDER_PRICE and price_rule != SPREAD_CAPTURE:
            return CreateBookResult(ERR_PRICE_RULE, 0, 0)
        book_id = self._next_book_id
        self._next_book_id = book_id + 1
        tick = float(tick_size)
        self._books[book_id] = Book(book_id, tick, price_rule)
        self._seq += 1
        self._events.append(OnOrderBookCreated(self._seq, book_id, timestamp, tick, price_rule))
        return CreateBookResult("", book_id, timestamp)

    def delete_book(self, order_book_id: int, timestamp: int) -> DeleteBookResult:
        """Cancel every resting order (OnOrderCancelled each), then OnOrderBookDeleted."""
        book = self._books.get(order_book_id)
        if book is None:
            return DeleteBookResult(ERR_UNKNOWN_BOOK, 0)
        count = self._cancel_all(book, timestamp, CancelReason.BOOK_DELETED)
        del self._books[order_book_id]
        if book.profit_ticks:
            self._retired_profit.append((book.tick_size, book.profit_ticks))
        self._seq += 1
        self._events.append(OnOrderBookDeleted(self._seq, order_book_id, timestamp))
        return DeleteBookResult("", count)

    def clear_book(self, order_book_id: int, timestamp: int) -> ClearBookResult:
        """Cancel every resting order of a book (OnOrderCancelled each); the book stays."""
        book = self._books.get(order_book_id)
        if book is None:
            return ClearBookResult(ERR_UNKNOWN_BOOK, 0)
        return ClearBookResult("", self._cancel_all(book, timestamp, CancelReason.BOOK_CLEARED))

    def _cancel_all(self, book: Book, timestamp: int, reason: int) -> int:
        """Cancel a book's resting orders in snapshot (priority) order; return how many."""
        append = self._events.append
        seq = self._seq
        book_id = book.order_book_id
        count = 0
        for side in book.sides:
            for level in iter_levels(side):
                for order in iter_orders(level):
                    quantity = order.quantity
                    order.quantity = 0
                    seq += 1
                    count += 1
                    append(
                        OnOrderCancelled(seq, order.order_id, book_id, timestamp, quantity, reason)
                    )
            side.clear()  # also breaks the links between orders (no reference cycles left)
        book.orders.clear()
        self._seq = seq
        return count

    # ----------------------------------------------------------------- insert

    def insert(
        self,
        order_book_id: int,
        username: str,
        side: int,
        price_ticks: int,
        quantity: int,
        time_in_force: int,
        client_order_id: str,
        timestamp: int,
    ) -> InsertResult:
        """Insert a limit order: match what crosses, then rest (GTC) or cancel (IOC/FOK).

        Events: OnOrderInserted (with the trade ids), one OnTrade per fill, then
        OnOrderCancelled for a remainder that does not rest.
        """
        if client_order_id:
            return self._insert_once(
                order_book_id,
                username,
                side,
                price_ticks,
                quantity,
                time_in_force,
                client_order_id,
                timestamp,
            )
        book = self._books.get(order_book_id)
        if book is None:
            return _INSERT_UNKNOWN_BOOK
        if not 0 < quantity <= MAX_QUANTITY:
            return _INSERT_QUANTITY
        if not 0 < price_ticks <= MAX_PRICE_TICKS:
            return _INSERT_PRICE
        if not 0 <= time_in_force <= FOK:
            return _INSERT_TIME_IN_FORCE
        if side == BUY:
            heap = book.asks.heap
            if heap and heap[0] <= price_ticks:
                return self._insert_crossing(
                    book, username, side, price_ticks, quantity, time_in_force, timestamp
                )
        elif side == SELL:
            heap = book.bids.heap
            if heap and -heap[0] >= price_ticks:
                return self._insert_crossing(
                    book, username, side, price_ticks, quantity, time_in_force, timestamp
                )
        else:
            return _INSERT_SIDE
        if time_in_force == FOK:
            # Nothing crosses, so nothing can fill; the crossing path handles the rest.
            return self._insert_crossing(
                book, username, side, price_ticks, quantity, time_in_force, timestamp
            )

        # Fast path: nothing to match.
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        seq = self._seq + 1
        append = self._events.append
        append(
            _new(
                OnOrderInserted,
                (
                    seq,
                    order_id,
                    order_book_id,
                    timestamp,
                    side,
                    price_ticks,
                    quantity,
                    (),
                    username,
                    time_in_force,
                ),
            )
        )
        if time_in_force == IOC:
            self._seq = seq + 1
            append(
                _new(
                    OnOrderCancelled,
                    (seq + 1, order_id, order_book_id, timestamp, quantity, _UNFILLED),
                )
            )
            return _new(InsertResult, ("", order_id, timestamp, (), 0, 0))
        self._seq = seq
        own = book.sides[side]
        levels = own.levels
        level = levels.get(price_ticks)
        if level is None:
            spare = own.spare
            if spare:
                level = spare.pop()
                level.price = price_ticks
                level.qty = 0  # not maintained once a level empties
            else:
                level = Level(price_ticks, own)
            levels[price_ticks] = level
            heappush(own.heap, -price_ticks if side == BUY else price_ticks)
        tail = level.tail
        order = Order(
            order_id, quantity, self._users.setdefault(username, username), timestamp, level, tail
        )
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order
        level.qty += quantity
        book.orders[order_id] = order
        return _new(InsertResult, ("", order_id, timestamp, (), 0, quantity))

    def _insert_once(
        self,
        order_book_id: int,
        username: str,
        side: int,
        price_ticks: int,
        quantity: int,
        time_in_force: int,
        client_order_id: str,
        timestamp: int,
    ) -> InsertResult:
        """Insert with a client_order_id: a resend returns the first accepted result."""
        table = self._coids.get(username)
        if table is not None:
            prior = table.get(client_order_id)
            if prior is not None:
                return prior
        # Up to 16 characters are at most 64 bytes; only longer ids need encoding.
        if (
            len(client_order_id) > MAX_CLIENT_ORDER_ID_BYTES // 4
            and len(client_order_id.encode("utf-8", "surrogatepass")) > MAX_CLIENT_ORDER_ID_BYTES
        ):
            return _INSERT_CLIENT_ORDER_ID
        result = self.insert(
            order_book_id, username, side, price_ticks, quantity, time_in_force, "", timestamp
        )
        if not result.error:
            if table is None:
                table = self._coids[self._users.setdefault(username, username)] = {}
            table[client_order_id] = result
        return result

    def _insert_crossing(
        self,
        book: Book,
        username: str,
        side: int,
        price_ticks: int,
        quantity: int,
        time_in_force: int,
        timestamp: int,
    ) -> InsertResult:
        """Insert that may trade (the top of the other side crosses) or is a FOK."""
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        book_id = book.order_book_id
        opposite = book.sides[side ^ 1]
        events = self._events
        first_seq = self._seq + 1
        if time_in_force == FOK and not can_fill(opposite, price_ticks, quantity):
            remaining = quantity
            seq = first_seq
            trade_ids: tuple[int, ...] = ()
            events.append(
                OnOrderInserted(
                    seq,
                    order_id,
                    book_id,
                    timestamp,
                    side,
                    price_ticks,
                    quantity,
                    (),
                    username,
                    time_in_force,
                )
            )
        else:
            position = len(events)
            events.append(_PLACEHOLDER)
            first_trade = self._next_trade_id
            remaining, seq = self._match(
                book, opposite, side, price_ticks, quantity, order_id, timestamp, first_seq
            )
            trade_ids = tuple(range(first_trade, self._next_trade_id))
            events[position] = OnOrderInserted(
                first_seq,
                order_id,
                book_id,
                timestamp,
                side,
                price_ticks,
                quantity,
                trade_ids,
                username,
                time_in_force,
            )
        resting = 0
        if remaining:
            if time_in_force == GTC:
                self._rest(book, side, order_id, price_ticks, remaining, username, timestamp)
                resting = remaining
            else:
                seq += 1
                events.append(
                    OnOrderCancelled(seq, order_id, book_id, timestamp, remaining, _UNFILLED)
                )
        self._seq = seq
        return InsertResult("", order_id, timestamp, trade_ids, quantity - remaining, resting)

    def _rest(
        self,
        book: Book,
        side: int,
        order_id: int,
        price_ticks: int,
        quantity: int,
        username: str,
        timestamp: int,
    ) -> None:
        """Append an order at the back of its price level (creating the level)."""
        own = book.sides[side]
        level = own.levels.get(price_ticks)
        if level is None:
            level = own.add_level(price_ticks)
        tail = level.tail
        order = Order(
            order_id, quantity, self._users.setdefault(username, username), timestamp, level, tail
        )
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order
        level.qty += quantity
        book.orders[order_id] = order

    def _match(
        self,
        book: Book,
        opposite: BookSide,
        side: int,
        limit: int,
        quantity: int,
        order_id: int,
        timestamp: int,
        seq: int,
    ) -> tuple[int, int]:
        """Fill an aggressor against ``opposite``, best price first, FIFO within a level.

        Appends one OnTrade per fill numbered from ``seq + 1`` (``seq`` itself is the
        aggressor's own event) and returns ``(remaining quantity, last seq used)``.
        """
        heap = opposite.heap
        levels = opposite.levels
        orders = book.orders
        append = self._events.append
        book_id = book.order_book_id
        spread = book.price_rule == SPREAD_CAPTURE
        buy = side == BUY
        trade_id = self._next_trade_id
        remaining = quantity
        profit = 0
        while heap:
            if buy:
                price = heap[0]
                if price > limit:
                    break
            else:
                price = -heap[0]
                if price < limit:
                    break
            level = levels.get(price)
            if level is None:  # stale key: its level emptied earlier
                heappop(heap)
                continue
            order = level.head
            while order is not None:
                resting = order.quantity
                if resting <= remaining:
                    fill = resting
                    order.quantity = 0
                    del orders[order.order_id]
                    following = order.next
                    level.head = following
                    if following is not None:
                        following.prev = None
                else:
                    fill = remaining
                    order.quantity = resting - fill
                    following = order
                level.qty -= fill
                remaining -= fill
                seq += 1
                if buy:
                    buyer = order_id
                    seller = order.order_id
                else:
                    buyer = order.order_id
                    seller = order_id
                if spread:
                    profit += (limit - price if buy else price - limit) * fill
                    aggressor_price = limit
                else:
                    aggressor_price = price
                append(
                    _new(
                        OnTrade,
                        (
                            seq,
                            trade_id,
                            book_id,
                            timestamp,
                            buyer,
                            seller,
                            price,
                            fill,
                            side,
                            aggressor_price,
                        ),
                    )
                )
                trade_id += 1
                if following is None:  # the level is used up
                    level.tail = None
                    heappop(heap)
                    del levels[price]
                    if len(opposite.spare) < SPARE_LEVELS:
                        opposite.spare.append(level)
                    break
                if not remaining:
                    break
                order = following
            if not remaining:
                break
        # Consuming a level may expose stale keys: drop them so the top stays live.
        sign = opposite.sign
        while heap and sign * heap[0] not in levels:
            heappop(heap)
        self._next_trade_id = trade_id
        self._traded_volume += quantity - remaining
        if profit:
            book.profit_ticks += profit
        return remaining, seq

    # ----------------------------------------------------------------- cancel

    def cancel(
        self, order_book_id: int, order_id: int, username: str, timestamp: int
    ) -> CancelResult:
        """Cancel a resting order in O(1); emits OnOrderCancelled.

        ``username`` "" means anyone; otherwise the order must be that user's, and
        someone else's order is refused exactly like an unknown one.
        """
        book = self._books.get(order_book_id)
        if book is None:
            return _CANCEL_UNKNOWN_BOOK
        orders = book.orders
        order = orders.get(order_id)
        if order is None or (username and order.username != username):
            return _CANCEL_UNKNOWN_ORDER
        del orders[order_id]
        quantity = order.quantity
        order.quantity = 0
        level = order.level
        price = level.price
        side = level.side
        prev = order.prev
        following = order.next
        if prev is not None:  # unlink in O(1)
            prev.next = following
            if following is None:
                level.tail = prev
            else:
                following.prev = prev
            level.qty -= quantity
        elif following is not None:
            level.head = following
            following.prev = None
            level.qty -= quantity
        else:  # the level empties: unindex it, keep the heap's top live (drop_level inlined)
            level.head = level.tail = None
            levels = side.levels
            del levels[price]
            spare = side.spare
            if len(spare) < SPARE_LEVELS:
                spare.append(level)
            heap = side.heap
            sign = side.sign
            if heap[0] == sign * price:
                heappop(heap)
                while heap and sign * heap[0] not in levels:
                    heappop(heap)
            elif len(heap) > 3 * len(levels) + STALE_SLACK:
                side.compact()
        seq = self._seq + 1
        self._seq = seq
        self._events.append(
            _new(OnOrderCancelled, (seq, order_id, order_book_id, timestamp, quantity, _REQUESTED))
        )
        return _new(CancelResult, ("", quantity, side.side, price))

    # ------------------------------------------------------------------ amend

    def amend(
        self,
        order_book_id: int,
        order_id: int,
        username: str,
        price_ticks: int,
        quantity: int,
        timestamp: int,
    ) -> AmendResult:
        """Change a resting order's price and/or remaining quantity; the id stays.

        A pure reduction at the same price keeps time priority (in place). Anything
        else moves the order to the back of its new level, matching first, at the
        resting orders' prices, if the new price crosses. The same price and quantity
        succeeds with no event.
        """
        book = self._books.get(order_book_id)
        if book is None:
            return _AMEND_UNKNOWN_BOOK
        if not 0 < quantity <= MAX_QUANTITY:
            return _AMEND_QUANTITY
        if not 0 < price_ticks <= MAX_PRICE_TICKS:
            return _AMEND_PRICE
        orders = book.orders
        order = orders.get(order_id)
        if order is None or (username and order.username != username):
            return _AMEND_UNKNOWN_ORDER
        level = order.level
        side = level.side.side
        old_quantity = order.quantity
        events = self._events
        if price_ticks == level.price and quantity <= old_quantity:
            if quantity == old_quantity:
                return AmendResult("", timestamp, (), 0, quantity, side)
            order.quantity = quantity
            level.qty -= old_quantity - quantity
            self._seq += 1
            events.append(
                OnOrderAmended(
                    self._seq, order_id, order_book_id, timestamp, price_ticks, quantity, (), True
                )
            )
            return AmendResult("", timestamp, (), 0, quantity, side)

        # Loses priority: unlink like a cancel (no event), then re-enter like an insert.
        del orders[order_id]
        unlink(order)
        order.quantity = 0
        first_seq = self._seq + 1
        opposite = book.sides[side ^ 1]
        heap = opposite.heap
        if heap and (heap[0] <= price_ticks if side == BUY else -heap[0] >= price_ticks):
            position = len(events)
            events.append(_PLACEHOLDER)
            first_trade = self._next_trade_id
            remaining, seq = self._match(
                book, opposite, side, price_ticks, quantity, order_id, timestamp, first_seq
            )
            trade_ids = tuple(range(first_trade, self._next_trade_id))
            events[position] = OnOrderAmended(
                first_seq,
                order_id,
                order_book_id,
                timestamp,
                price_ticks,
                quantity,
                trade_ids,
                False,
            )
        else:
            remaining = quantity
            seq = first_seq
            trade_ids = ()
            events.append(
                OnOrderAmended(
                    seq, order_id, order_book_id, timestamp, price_ticks, quantity, (), False
                )
            )
        if remaining:
            self._rest(book, side, order_id, price_ticks, remaining, order.username, timestamp)
        self._seq = seq
        return AmendResult("", timestamp, trade_ids, quantity - remaining, remaining, side)

    # ------------------------------------------------------------ read views

    def books(self) -> Iterator[BookInfo]:
        """Live books in id order (the first part of the login snapshot)."""
        for book in self._books.values():
            yield BookInfo(book.order_book_id, book.tick_size, book.price_rule)

    def book_info(self, order_book_id: int) -> BookInfo | None:
        """One live book, or None."""
        book = self._books.get(order_book_id)
        if book is None:
            return None
        return BookInfo(book.order_book_id, book.tick_size, book.price_rule)

    def resting_orders(self, order_book_id: int | None = None) -> Iterator[RestingOrder]:
        """Resting orders with remaining quantity, in an order a mirror can rebuild from.

        Per book (id order), bids then asks, best price first, FIFO within a level:
        inserting them in this order reproduces every level's time priority.
        """
        if order_book_id is None:
            books = list(self._books.values())
        else:
            one = self._books.get(order_book_id)
            books = [] if one is None else [one]
        for book in books:
            book_id = book.order_book_id
            for side in book.sides:
                side_id = side.side
                for level in iter_levels(side):
                    price = level.price
                    for order in iter_orders(level):
                        yield RestingOrder(
                            order.order_id,
                            book_id,
                            side_id,
                            price,
                            order.quantity,
                            order.username,
                            GTC,
                            order.timestamp,
                        )

    def get_order(self, order_book_id: int, order_id: int) -> RestingOrder | None:
        """A resting order of a book, or None (filled, cancelled or never existed)."""
        book = self._books.get(order_book_id)
        order = None if book is None else book.orders.get(order_id)
        if book is None or order is None:
            return None
        level = order.level
        return RestingOrder(
            order_id,
            order_book_id,
            level.side.side,
            level.price,
            order.quantity,
            order.username,
            GTC,
            order.timestamp,
        )

    def depth(self, order_book_id: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Aggregated book: ``(bids, asks)`` as (price_ticks, quantity), best first.

        An unknown book has an empty depth.
        """
        book = self._books.get(order_book_id)
        if book is None:
            return [], []
        bids = [(level.price, level.qty) for level in iter_levels(book.bids)]
        asks = [(level.price, level.qty) for level in iter_levels(book.asks)]
        return bids, asks

    def stats(self) -> ExchangeStats:
        """Exchange totals: profit (price units), trades, volume and resting orders."""
        profit = sum(
            (Decimal(repr(tick)) * ticks for tick, ticks in self._profit_by_book()),
            Decimal(0),
        )
        return ExchangeStats(
            float(profit),
            self._next_trade_id - 1,
            self._traded_volume,
            sum(len(book.orders) for book in self._books.values()),
        )

    def _profit_by_book(self) -> Iterator[tuple[float, int]]:
        yield from self._retired_profit
        for book in self._books.values():
            if book.profit_ticks:
                yield book.tick_size, book.profit_ticks

    def state_hash(self) -> str:
        """SHA-256 of a canonical dump of the whole state (not of pending events).

        Covers counters, sequence number, books, resting orders in priority order with
        remaining quantities, the client_order_id table and the stats, so two engines
        with equal hashes behave identically from here on.
        """
        digest = hashlib.sha256()

        def put(*fields: object) -> None:
            digest.update(repr(fields).encode("utf-8", "surrogatepass"))
            digest.update(b"\n")

        put(
            "counters",
            self._seq,
            self._next_book_id,
            self._next_order_id,
            self._next_trade_id,
            self._traded_volume,
        )
        put("retired", *self._retired_profit)
        for book in self._books.values():
            put("book", book.order_book_id, book.tick_size, book.price_rule, book.profit_ticks)
            for order in self.resting_orders(book.order_book_id):
                put("order", *order)
        for username in sorted(self._coids):
            table = self._coids[username]
            for client_order_id in sorted(table):
                put("coid", username, client_order_id, *table[client_order_id])
        put("stats", *self.stats())
        return digest.hexdigest()
