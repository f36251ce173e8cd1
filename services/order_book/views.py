"""Read-only views of the engine's state: snapshot, depth, single orders, stats, hash.

Why a separate mixin: these are the questions mirrors, the admin service and replay
tests ask, none of them on the hot path, and keeping them apart keeps ``engine.py``
about commands. The state itself is declared in ``state.py``; ``Engine`` inherits
this mixin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal

from services.common.packed_outcome import unpack_outcome
from services.order_book.book import iter_levels, iter_orders
from services.order_book.events import GTC, BookInfo, ExchangeStats, RestingOrder
from services.order_book.state import EngineState

__all__ = ["EngineViews"]


class EngineViews(EngineState):
    """Read-only views; mixed into ``Engine``, which holds the state."""

    __slots__ = ()

    @property
    def last_sequence_number(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._seq

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
        inserting them in this order reproduces every level's time priority. The
        iterator walks the live structures: consume it before the next command.
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
                put("coid", username, client_order_id, "", *unpack_outcome(table[client_order_id]))
        put("stats", *self.stats())
        return digest.hexdigest()
