"""The crossing path of the engine: match an aggressor, then rest or cancel the rest.

Why a separate mixin: inserts that trade (and FOK orders) and amends that move an
order all go through the same three steps, matching against the other side in
price-time priority (:meth:`Matching._match`), then resting a GTC remainder at the
back of its level (:meth:`Matching._rest`) or cancelling an IOC/FOK one. The common,
non-trading commands stay inlined in ``engine.py``; this is the less frequent,
longer path. The state is declared in ``state.py``; ``Engine`` inherits this mixin.
"""

from __future__ import annotations

from heapq import heappop

from services.order_book.book import SPARE_LEVELS, Book, BookSide, Order, can_fill
from services.order_book.events import (
    BUY,
    FOK,
    GTC,
    SPREAD_CAPTURE,
    CancelReason,
    InsertResult,
    OnOrderBookDeleted,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)
from services.order_book.state import EngineState

__all__ = ["PLACEHOLDER", "Matching"]

_new = tuple.__new__  # builds NamedTuples without their Python-level __new__
_UNFILLED = CancelReason.UNFILLED

#: Stands in for an OnOrderInserted/OnOrderAmended until its trade ids are known.
PLACEHOLDER = OnOrderBookDeleted(0, 0, 0)


class Matching(EngineState):
    """Matching, resting and the crossing insert; mixed into ``Engine``."""

    __slots__ = ()

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
            events.append(PLACEHOLDER)
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
