"""The two sample strategies: a market maker and a noise trader.

Both are deliberately simple and readable -- they exist to make a demo
exchange lively and to show the SDK in use, not to make money.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.bots import pricing
from clients.bots.base import Bot
from clients.sdk import SdkError, Side, TimeInForce


@dataclass
class _Book:
    """A market maker's state in one instrument."""

    fair: int
    position: int = 0
    bid_id: int = 0
    ask_id: int = 0
    dirty: bool = True


class MarketMaker(Bot):
    """Quotes a bid and an ask around a fair value in every symbol, re-quoting
    (by amending, which keeps the order ids) when filled or when the fair
    value drifts; leans its quotes against its inventory."""

    name = "market-maker"
    half_spread = 2
    max_position = 200

    async def setup(self) -> None:
        self.books: dict[str, _Book] = {}
        self.size = self.rng.randint(5, 20)
        try:
            quotes = await self.client.quotes()
        except (SdkError, TimeoutError):  # a fair value guess will do without quotes
            quotes = {}
        for symbol in self.symbols:
            tick = self.tick_size(symbol) or 0.01
            quote = quotes.get(symbol)
            top = self.top.get(symbol)
            if quote is not None and quote.last_price > 0:
                start = quote.last_price
            elif top is not None and top.mid is not None:
                start = top.mid
            else:
                start = pricing.DEFAULT_FAIR_VALUE * (1 + self.rng.uniform(-0.2, 0.2))
            self.books[symbol] = _Book(pricing.to_ticks(start, tick))
        self._next = 0

    def _pick(self) -> str:
        dirty = [s for s in self.symbols if self.books[s].dirty]
        if dirty:
            return dirty[0]
        symbol = self.symbols[self._next % len(self.symbols)]
        self._next += 1
        return symbol

    async def step(self) -> None:
        symbol = self._pick()
        book = self.books[symbol]
        if not book.dirty and self.rng.random() < 0.5:
            book.fair = pricing.walk(book.fair, self.rng)
        book.dirty = False
        quote = pricing.make_quote(
            book.fair, self.half_spread, self.size, book.position, self.max_position
        )
        book.bid_id = await self._ensure(symbol, Side.BUY, book.bid_id, quote.bid, quote.size)
        book.ask_id = await self._ensure(symbol, Side.SELL, book.ask_id, quote.ask, quote.size)

    async def _ensure(self, symbol: str, side: Side, order_id: int, ticks: int, size: int) -> int:
        """Have one order resting at ``ticks`` for ``size``; returns its id (0: none)."""
        tick = self.tick_size(symbol)
        if tick is None:
            return 0
        current = self.client.open_orders().get(order_id) if order_id else None
        if current is not None:
            if pricing.to_ticks(current.price, tick) == ticks and current.remaining == size:
                return order_id
            if await self.amend(symbol, order_id, ticks, size):
                return order_id if order_id in self.client.orders else 0
            self.client.orders.forget(order_id)
        result = await self.place(symbol, side, ticks, size, TimeInForce.GTC)
        return result.order_id if result is not None and result.resting else 0

    def on_fill_seen(self, symbol: str, side: Side, ticks: int, quantity: int) -> None:
        book = self.books.get(symbol) if hasattr(self, "books") else None
        if book is None:
            return
        bought = side is Side.BUY
        book.position += quantity if bought else -quantity
        book.fair = pricing.after_fill(book.fair, ticks, bought)
        book.dirty = True


class NoiseTrader(Bot):
    """Sends random orders: some marketable (IOC at the opposite best price),
    most passive near the fair value; keeps a bounded number resting and
    cancels the oldest beyond that."""

    name = "noise"
    max_resting = 10

    async def setup(self) -> None:
        self.fair: dict[str, int] = {}
        try:
            quotes = await self.client.quotes()
        except (SdkError, TimeoutError):
            quotes = {}
        for symbol in self.symbols:
            tick = self.tick_size(symbol) or 0.01
            quote = quotes.get(symbol)
            start = (
                quote.last_price if quote and quote.last_price > 0 else pricing.DEFAULT_FAIR_VALUE
            )
            self.fair[symbol] = pricing.to_ticks(start, tick)

    async def step(self) -> None:
        symbol = self.rng.choice(self.symbols)
        tick = self.tick_size(symbol)
        if tick is None:
            return
        bid, ask = self.best_ticks(symbol, tick)
        fair = self.fair.get(symbol) or pricing.to_ticks(pricing.DEFAULT_FAIR_VALUE, tick)
        if bid is not None and ask is not None:
            fair = (bid + ask) // 2
        else:
            fair = pricing.walk(fair, self.rng)
        self.fair[symbol] = fair
        order = pricing.noise_order(self.rng, fair, bid, ask)
        side = Side.BUY if order.buy else Side.SELL
        tif = TimeInForce.IOC if order.marketable else TimeInForce.GTC
        await self.place(symbol, side, order.ticks, order.quantity, tif)
        resting = self.client.open_orders()
        if len(resting) > self.max_resting:
            oldest = min(resting)
            await self.cancel(resting[oldest].symbol, oldest)


STRATEGIES: dict[str, type[Bot]] = {"market-maker": MarketMaker, "noise": NoiseTrader}
