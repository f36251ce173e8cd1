"""A deliberately naive order book: the oracle for differential tests of the engine.

Why it exists: the engine's speed comes from heaps with lazy deletion, dead queue
entries, recycled levels and inlined hot paths, all easy places to hide a bug. This
model has none of that: one plain list of orders per book, a global priority
counter, and matching that sorts the crossing orders every time. It follows
PROTOCOL.md's rules literally and produces the same result and event values, so a
test can compare the two after every command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from services.order_book.engine import (
    ERR_CLIENT_ORDER_ID,
    ERR_PRICE,
    ERR_PRICE_RULE,
    ERR_QUANTITY,
    ERR_SIDE,
    ERR_TIME_IN_FORCE,
    ERR_UNKNOWN_BOOK,
    ERR_UNKNOWN_ORDER,
)
from services.order_book.events import (
    BUY,
    FOK,
    GTC,
    MAX_PRICE_TICKS,
    MAX_QUANTITY,
    SELL,
    SPREAD_CAPTURE,
    AmendResult,
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


@dataclass
class RefOrder:
    order_id: int
    side: int
    price: int
    quantity: int
    username: str
    timestamp: int
    priority: int


@dataclass
class RefBook:
    order_book_id: int
    tick_size: float
    price_rule: int
    orders: list[RefOrder] = field(default_factory=list)
    profit_ticks: int = 0


class ReferenceBook:
    """Same commands and outputs as ``Engine``, implemented the slow, obvious way."""

    def __init__(self) -> None:
        self.books: dict[int, RefBook] = {}
        self.events: list[Event] = []
        self.seq = 0
        self.next_book_id = 1
        self.next_order_id = 1
        self.next_trade_id = 1
        self.priority = 0
        self.traded_volume = 0
        self.retired_profit: list[tuple[float, int]] = []
        self.coids: dict[tuple[str, str], InsertResult] = {}

    def _seq(self) -> int:
        self.seq += 1
        return self.seq

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    # ---------------------------------------------------------------- books

    def create_book(self, tick_size: float, price_rule: int, timestamp: int) -> CreateBookResult:
        if not (math.isfinite(tick_size) and tick_size > 0):
            return CreateBookResult("bad tick", 0, 0)  # engine text differs; tests avoid it
        if price_rule not in (0, 1):
            return CreateBookResult(ERR_PRICE_RULE, 0, 0)
        book_id = self.next_book_id
        self.next_book_id += 1
        self.books[book_id] = RefBook(book_id, tick_size, price_rule)
        self.events.append(
            OnOrderBookCreated(self._seq(), book_id, timestamp, tick_size, price_rule)
        )
        return CreateBookResult("", book_id, timestamp)

    def _priority_order(self, book: RefBook) -> list[RefOrder]:
        bids = sorted(
            (o for o in book.orders if o.side == BUY), key=lambda o: (-o.price, o.priority)
        )
        asks = sorted(
            (o for o in book.orders if o.side == SELL), key=lambda o: (o.price, o.priority)
        )
        return bids + asks

    def _cancel_all(self, book: RefBook, timestamp: int, reason: int) -> int:
        orders = self._priority_order(book)
        for o in orders:
            self.events.append(
                OnOrderCancelled(
                    self._seq(), o.order_id, book.order_book_id, timestamp, o.quantity, reason
                )
            )
        book.orders.clear()
        return len(orders)

    def delete_book(self, order_book_id: int, timestamp: int) -> DeleteBookResult:
        book = self.books.get(order_book_id)
        if book is None:
            return DeleteBookResult(ERR_UNKNOWN_BOOK, 0)
        count = self._cancel_all(book, timestamp, CancelReason.BOOK_DELETED)
        del self.books[order_book_id]
        if book.profit_ticks:
            self.retired_profit.append((book.tick_size, book.profit_ticks))
        self.events.append(OnOrderBookDeleted(self._seq(), order_book_id, timestamp))
        return DeleteBookResult("", count)

    def clear_book(self, order_book_id: int, timestamp: int) -> ClearBookResult:
        book = self.books.get(order_book_id)
        if book is None:
            return ClearBookResult(ERR_UNKNOWN_BOOK, 0)
        return ClearBookResult("", self._cancel_all(book, timestamp, CancelReason.BOOK_CLEARED))

    # -------------------------------------------------------------- matching

    def _crossing(self, book: RefBook, side: int, limit: int) -> list[RefOrder]:
        if side == BUY:
            found = [o for o in book.orders if o.side == SELL and o.price <= limit]
            return sorted(found, key=lambda o: (o.price, o.priority))
        found = [o for o in book.orders if o.side == BUY and o.price >= limit]
        return sorted(found, key=lambda o: (-o.price, o.priority))

    def _match(
        self, book: RefBook, side: int, limit: int, quantity: int, order_id: int, ts: int
    ) -> tuple[int, list[OnTrade]]:
        trades: list[OnTrade] = []
        for resting in self._crossing(book, side, limit):
            if not quantity:
                break
            fill = min(quantity, resting.quantity)
            quantity -= fill
            resting.quantity -= fill
            if not resting.quantity:
                book.orders.remove(resting)
            aggressor_price = limit if book.price_rule == SPREAD_CAPTURE else resting.price
            book.profit_ticks += abs(aggressor_price - resting.price) * fill
            buyer, seller = (
                (order_id, resting.order_id) if side == BUY else (resting.order_id, order_id)
            )
            trades.append(
                OnTrade(
                    0,
                    self.next_trade_id,
                    book.order_book_id,
                    ts,
                    buyer,
                    seller,
                    resting.price,
                    fill,
                    side,
                    aggressor_price,
                )
            )
            self.next_trade_id += 1
            self.traded_volume += fill
        return quantity, trades

    def _rest(
        self, book: RefBook, order_id: int, side: int, price: int, qty: int, user: str, ts: int
    ) -> None:
        self.priority += 1
        book.orders.append(RefOrder(order_id, side, price, qty, user, ts, self.priority))

    # ---------------------------------------------------------------- orders

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
        if client_order_id:
            prior = self.coids.get((username, client_order_id))
            if prior is not None:
                return prior
            if len(client_order_id.encode()) > 64:
                return InsertResult(ERR_CLIENT_ORDER_ID, 0, 0, (), 0, 0)
        book = self.books.get(order_book_id)
        error = ""
        if book is None:
            error = ERR_UNKNOWN_BOOK
        elif not 0 < quantity <= MAX_QUANTITY:
            error = ERR_QUANTITY
        elif not 0 < price_ticks <= MAX_PRICE_TICKS:
            error = ERR_PRICE
        elif time_in_force not in (0, 1, 2):
            error = ERR_TIME_IN_FORCE
        elif side not in (0, 1):
            error = ERR_SIDE
        if error or book is None:
            return InsertResult(error, 0, 0, (), 0, 0)
        order_id = self.next_order_id
        self.next_order_id += 1
        inserted_seq = self._seq()
        crossing = self._crossing(book, side, price_ticks)
        trades: list[OnTrade] = []
        remaining = quantity
        if time_in_force == FOK and sum(o.quantity for o in crossing) < quantity:
            pass  # cannot fill completely: trades nothing
        else:
            remaining, trades = self._match(book, side, price_ticks, quantity, order_id, timestamp)
        trade_ids = tuple(t.trade_id for t in trades)
        self.events.append(
            OnOrderInserted(
                inserted_seq,
                order_id,
                order_book_id,
                timestamp,
                side,
                price_ticks,
                quantity,
                trade_ids,
                username,
                time_in_force,
            )
        )
        self.events.extend(t._replace(sequence_number=self._seq()) for t in trades)
        resting = 0
        if remaining and time_in_force == GTC:
            self._rest(book, order_id, side, price_ticks, remaining, username, timestamp)
            resting = remaining
        elif remaining:
            self.events.append(
                OnOrderCancelled(
                    self._seq(),
                    order_id,
                    order_book_id,
                    timestamp,
                    remaining,
                    CancelReason.UNFILLED,
                )
            )
        result = InsertResult("", order_id, timestamp, trade_ids, quantity - remaining, resting)
        if client_order_id:
            self.coids[(username, client_order_id)] = result
        return result

    def _find(self, book: RefBook, order_id: int, username: str) -> RefOrder | None:
        for o in book.orders:
            if o.order_id == order_id and (not username or o.username == username):
                return o
        return None

    def cancel(
        self, order_book_id: int, order_id: int, username: str, timestamp: int
    ) -> CancelResult:
        book = self.books.get(order_book_id)
        if book is None:
            return CancelResult(ERR_UNKNOWN_BOOK, 0, 0, 0)
        order = self._find(book, order_id, username)
        if order is None:
            return CancelResult(ERR_UNKNOWN_ORDER, 0, 0, 0)
        book.orders.remove(order)
        self.events.append(
            OnOrderCancelled(
                self._seq(),
                order_id,
                order_book_id,
                timestamp,
                order.quantity,
                CancelReason.REQUESTED,
            )
        )
        return CancelResult("", order.quantity, order.side, order.price)

    def amend(
        self,
        order_book_id: int,
        order_id: int,
        username: str,
        price_ticks: int,
        quantity: int,
        timestamp: int,
    ) -> AmendResult:
        book = self.books.get(order_book_id)
        if book is None:
            return AmendResult(ERR_UNKNOWN_BOOK, 0, (), 0, 0, 0)
        if not 0 < quantity <= MAX_QUANTITY:
            return AmendResult(ERR_QUANTITY, 0, (), 0, 0, 0)
        if not 0 < price_ticks <= MAX_PRICE_TICKS:
            return AmendResult(ERR_PRICE, 0, (), 0, 0, 0)
        order = self._find(book, order_id, username)
        if order is None:
            return AmendResult(ERR_UNKNOWN_ORDER, 0, (), 0, 0, 0)
        side = order.side
        if price_ticks == order.price and quantity == order.quantity:
            return AmendResult("", timestamp, (), 0, quantity, side)
        if price_ticks == order.price and quantity < order.quantity:
            order.quantity = quantity
            self.events.append(
                OnOrderAmended(
                    self._seq(), order_id, order_book_id, timestamp, price_ticks, quantity, (), True
                )
            )
            return AmendResult("", timestamp, (), 0, quantity, side)
        book.orders.remove(order)
        amended_seq = self._seq()
        remaining, trades = self._match(book, side, price_ticks, quantity, order_id, timestamp)
        trade_ids = tuple(t.trade_id for t in trades)
        self.events.append(
            OnOrderAmended(
                amended_seq,
                order_id,
                order_book_id,
                timestamp,
                price_ticks,
                quantity,
                trade_ids,
                False,
            )
        )
        self.events.extend(t._replace(sequence_number=self._seq()) for t in trades)
        if remaining:
            self._rest(book, order_id, side, price_ticks, remaining, order.username, timestamp)
        return AmendResult("", timestamp, trade_ids, quantity - remaining, remaining, side)

    # ----------------------------------------------------------------- views

    def resting_orders(self, order_book_id: int | None = None) -> list[RestingOrder]:
        out: list[RestingOrder] = []
        for book_id in sorted(self.books):
            if order_book_id is not None and book_id != order_book_id:
                continue
            for o in self._priority_order(self.books[book_id]):
                out.append(
                    RestingOrder(
                        o.order_id,
                        book_id,
                        o.side,
                        o.price,
                        o.quantity,
                        o.username,
                        GTC,
                        o.timestamp,
                    )
                )
        return out

    def depth(self, order_book_id: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = self.books.get(order_book_id)
        if book is None:
            return [], []
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for o in book.orders:
            levels = bids if o.side == BUY else asks
            levels[o.price] = levels.get(o.price, 0) + o.quantity
        return sorted(bids.items(), reverse=True), sorted(asks.items())

    def stats(self) -> ExchangeStats:
        profit = sum(
            (Decimal(repr(t)) * p for t, p in self.retired_profit),
            Decimal(0),
        ) + sum(
            (Decimal(repr(b.tick_size)) * b.profit_ticks for b in self.books.values()),
            Decimal(0),
        )
        return ExchangeStats(
            float(profit),
            self.next_trade_id - 1,
            self.traded_volume,
            sum(len(b.orders) for b in self.books.values()),
        )
