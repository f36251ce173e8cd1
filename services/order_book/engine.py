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

from heapq import heappop, heappush

from services.common.packed_outcome import pack_outcome, unpack_outcome
from services.common.prices import check_tick_size
from services.order_book.book import (
    SPARE_LEVELS,
    STALE_SLACK,
    Book,
    Level,
    Order,
    iter_levels,
    iter_orders,
    unlink,
)
from services.order_book.errors import (
    AMEND_PRICE,
    AMEND_QUANTITY,
    AMEND_UNKNOWN_BOOK,
    AMEND_UNKNOWN_ORDER,
    CANCEL_UNKNOWN_BOOK,
    CANCEL_UNKNOWN_ORDER,
    ERR_CLIENT_ORDER_ID,
    ERR_PRICE,
    ERR_PRICE_RULE,
    ERR_QUANTITY,
    ERR_SIDE,
    ERR_TIME_IN_FORCE,
    ERR_UNKNOWN_BOOK,
    ERR_UNKNOWN_ORDER,
    INSERT_CLIENT_ORDER_ID,
    INSERT_PRICE,
    INSERT_QUANTITY,
    INSERT_SIDE,
    INSERT_TIME_IN_FORCE,
    INSERT_UNKNOWN_BOOK,
    MAX_CLIENT_ORDER_ID_BYTES,
)
from services.order_book.events import (
    BUY,
    FOK,
    IOC,
    MAX_PRICE_TICKS,
    MAX_QUANTITY,
    RESTING_ORDER_PRICE,
    SELL,
    SPREAD_CAPTURE,
    AmendResult,
    CancelReason,
    CancelResult,
    ClearBookResult,
    CreateBookResult,
    DeleteBookResult,
    Event,
    InsertResult,
    OnOrderAmended,
    OnOrderBookCreated,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
)
from services.order_book.matching import PLACEHOLDER, Matching
from services.order_book.views import EngineViews

__all__ = [
    "ERR_CLIENT_ORDER_ID",
    "ERR_PRICE",
    "ERR_PRICE_RULE",
    "ERR_QUANTITY",
    "ERR_SIDE",
    "ERR_TIME_IN_FORCE",
    "ERR_UNKNOWN_BOOK",
    "ERR_UNKNOWN_ORDER",
    "MAX_CLIENT_ORDER_ID_BYTES",
    "Engine",
]

_new = tuple.__new__  # builds NamedTuples without their Python-level __new__
_REQUESTED = CancelReason.REQUESTED
_UNFILLED = CancelReason.UNFILLED


class Engine(Matching, EngineViews):
    """All order books of one exchange and their single, gap-free event stream.

    Commands are methods that return result values and append events; read the
    events with :meth:`drain_events`. Nothing here is thread-safe: one writer.
    """

    __slots__ = ()

    # ------------------------------------------------------------------ events

    def previous_insert(self, username: str, client_order_id: str) -> InsertResult | None:
        """The outcome of ``username``'s accepted insert with ``client_order_id``, if any.

        The edge asks this before validating a resend, so a resend returns the
        original outcome "whatever the other fields of the resend say" (even
        when its book has since been deleted).
        """
        table = self._coids.get(username)
        data = None if table is None else table.get(client_order_id)
        return None if data is None else accepted_result(data)

    def drain_events(self) -> list[Event]:
        """Return the events produced since the last drain, oldest first, and forget them."""
        events = self._events
        self._events = []
        return events

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
            return INSERT_UNKNOWN_BOOK
        if not 0 < quantity <= MAX_QUANTITY:
            return INSERT_QUANTITY
        if not 0 < price_ticks <= MAX_PRICE_TICKS:
            return INSERT_PRICE
        if not 0 <= time_in_force <= FOK:
            return INSERT_TIME_IN_FORCE
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
            return INSERT_SIDE
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
                return accepted_result(prior)
        # Up to 16 characters are at most 64 bytes; only longer ids need encoding.
        if (
            len(client_order_id) > MAX_CLIENT_ORDER_ID_BYTES // 4
            and len(client_order_id.encode("utf-8", "surrogatepass")) > MAX_CLIENT_ORDER_ID_BYTES
        ):
            return INSERT_CLIENT_ORDER_ID
        result = self.insert(
            order_book_id, username, side, price_ticks, quantity, time_in_force, "", timestamp
        )
        if not result.error:
            if table is None:
                table = self._coids[self._users.setdefault(username, username)] = {}
            table[client_order_id] = pack_outcome(*result[1:])
        return result

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
            return CANCEL_UNKNOWN_BOOK
        orders = book.orders
        order = orders.get(order_id)
        if order is None or (username and order.username != username):
            return CANCEL_UNKNOWN_ORDER
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
            return AMEND_UNKNOWN_BOOK
        if not 0 < quantity <= MAX_QUANTITY:
            return AMEND_QUANTITY
        if not 0 < price_ticks <= MAX_PRICE_TICKS:
            return AMEND_PRICE
        orders = book.orders
        order = orders.get(order_id)
        if order is None or (username and order.username != username):
            return AMEND_UNKNOWN_ORDER
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
            events.append(PLACEHOLDER)
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


def accepted_result(data: bytes) -> InsertResult:
    """The :class:`InsertResult` of an accepted insert kept packed in the
    client_order_id table."""
    return InsertResult("", *unpack_outcome(data))
