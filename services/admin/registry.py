"""What Admin knows about the world: Info's instruments and the Order Book's books.

Why Admin keeps views instead of asking: the contract has no "list instruments"
request on Info and no "list books" request on the Order Book. Both services
push their state to every logged-in connection instead (Info: ``OnInstrument``
for every live instrument on login, then one per change; the Order Book:
``OnOrderBookCreated`` for every live book on login, then every event). Admin
follows both streams into the two maps below, and also applies the outcome of
its own requests as soon as they are answered, so a create is visible to the
next request for that symbol even if Info's broadcast is still on its way.
Applying the same fact twice is harmless: every update is idempotent.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from services.admin.model import BookId, BookInfo, Listing, Symbol

__all__ = ["Registry"]


class Registry:
    """Two idempotent views: symbol -> listing (Info), book id -> book (Order Book)."""

    def __init__(self) -> None:
        self.instruments: dict[Symbol, Listing] = {}
        self.books: dict[BookId, BookInfo] = {}

    # ------------------------------------------------------------------ Info's view

    def reset_instruments(self) -> None:
        """Forget Info's instruments (a new login re-sends all of them)."""
        self.instruments.clear()

    def put_instrument(self, listing: Listing) -> None:
        self.instruments[listing.symbol] = listing

    def drop_instrument(self, symbol: Symbol) -> Listing | None:
        return self.instruments.pop(symbol, None)

    def instrument(self, symbol: str) -> Listing | None:
        return self.instruments.get(Symbol(symbol))

    # ------------------------------------------------------------------ the Order Book's view

    def reset_books(self) -> None:
        """Forget the books (a new login re-sends all of them)."""
        self.books.clear()

    def put_book(self, book: BookInfo) -> None:
        self.books[book.order_book_id] = book

    def drop_book(self, book_id: BookId) -> None:
        self.books.pop(book_id, None)

    # ------------------------------------------------------------------ queries

    def listings(self) -> Iterator[Listing]:
        """Live instruments sorted by symbol (a stable order for clients).

        Tick size and price rule come from the Order Book's announcement when
        the book is known: the book is what actually matches, and Info's
        internal create request has no field for the price rule.
        """
        for symbol in sorted(self.instruments):
            listing = self.instruments[symbol]
            book = self.books.get(listing.order_book_id)
            if book is not None and (
                book.price_rule != listing.spec.price_rule
                or book.tick_size != listing.spec.tick_size
            ):
                spec = replace(listing.spec, tick_size=book.tick_size, price_rule=book.price_rule)
                listing = replace(listing, spec=spec)
            yield listing
