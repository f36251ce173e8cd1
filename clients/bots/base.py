"""What every sample bot shares: pacing, limits, symbol choice, error handling.

Why a base: the interesting part of a bot is its ``step``; the parts that make
it a good citizen are the same for all of them and easy to get wrong -- never
crash on a refused order, back off when a risk limit says so, keep going
through a reconnect, stop on time, and leave no orders behind on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from clients.bots import pricing
from clients.sdk import (
    Client,
    Disconnected,
    EventStream,
    ExchangeError,
    OrderRejected,
    OrderResult,
    RiskLimitExceeded,
    Side,
    TimeInForce,
    TopOfBook,
)

MAX_SYMBOLS = 12
"""Without symbols on the command line, trade at most this many instruments."""


@dataclass
class Settings:
    symbols: list[str] = field(default_factory=list)
    rate: float = 5.0
    seed: int | None = None
    max_orders: int = 0
    duration: float = 0.0


@dataclass
class Counters:
    orders: int = 0
    amends: int = 0
    cancels: int = 0
    rejected: int = 0
    limit_breaches: int = 0
    fills: int = 0
    filled_quantity: int = 0


class Bot:
    """Runs ``step()`` at ``rate`` per second until stopped, out of orders or out of time."""

    name = "bot"

    def __init__(self, client: Client, settings: Settings, stop: asyncio.Event) -> None:
        self.client = client
        self.settings = settings
        self.stop = stop
        seed = settings.seed if settings.seed is not None else random.randrange(1 << 31)
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = logging.getLogger(f"optivex.bot.{self.name}")
        self.counters = Counters()
        self.symbols: list[str] = []
        self._tops: dict[str, EventStream[TopOfBook]] = {}
        self.top: dict[str, TopOfBook] = {}
        self._backoff = 0.0
        self._started = time.monotonic()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        self.log.info(
            "%s starting as %s (seed %d, %.1f orders/s)",
            self.name,
            self.client.username,
            self.seed,
            self.settings.rate,
        )
        fills = asyncio.ensure_future(self._follow_fills())
        try:
            await self._choose_symbols()
            await self.setup()
            interval = 1.0 / self.settings.rate if self.settings.rate > 0 else 0.0
            while not self._finished():
                self._refresh_tops()
                try:
                    await self.step()
                except (Disconnected, TimeoutError) as exc:
                    self.log.warning("exchange unreachable (%s); waiting", exc)
                    await self._pause(1.0)
                except ExchangeError as exc:
                    self.log.warning("refused: %s", exc)
                await self._pause(interval + self._backoff)
        finally:
            fills.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fills
            await self._cleanup()
            self.log.info("%s stopped: %s", self.name, self.counters)

    def _finished(self) -> bool:
        s = self.settings
        if self.stop.is_set():
            return True
        if s.max_orders and self.counters.orders >= s.max_orders:
            return True
        return bool(s.duration) and time.monotonic() - self._started >= s.duration

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)

    async def setup(self) -> None:
        """Called once the symbols are known."""

    async def step(self) -> None:
        raise NotImplementedError

    def on_fill_seen(self, symbol: str, side: Side, ticks: int, quantity: int) -> None:
        """Hook for subclasses (called for each of this user's fills)."""

    async def _follow_fills(self) -> None:
        async for fill in self.client.fills():
            self.counters.fills += 1
            self.counters.filled_quantity += fill.quantity
            instrument = self.client.instruments.get(fill.symbol)
            if instrument is not None:
                ticks = pricing.to_ticks(fill.price, instrument.tick_size)
                self.on_fill_seen(fill.symbol, fill.side, ticks, fill.quantity)

    async def _cleanup(self) -> None:
        """Leave nothing resting: cancel what this bot knows about (bounded in time)."""
        with contextlib.suppress(Exception):
            cancelled = await asyncio.wait_for(self.client.cancel_all(), 5)
            if cancelled:
                self.log.info("cancelled %d resting orders on exit", cancelled)

    # ------------------------------------------------------------------ symbols and books

    async def _choose_symbols(self) -> None:
        wanted = self.settings.symbols
        if not wanted:
            events = self.client.instrument_events()
            while not self.client.instruments and not self._finished():
                self.log.info("no instruments yet; waiting for one to be created")
                with contextlib.suppress(TimeoutError):
                    await events.get(timeout=5)
            events.close()
            available = sorted(self.client.instruments)
            wanted = available[:MAX_SYMBOLS]  # the same ones for every bot: they meet
        self.symbols = list(wanted)
        for symbol in self.symbols:
            if symbol not in self.client.instruments:
                self.log.warning("%s is not listed (yet); orders will be refused", symbol)
            self._tops[symbol] = self.client.top_of_book(symbol)
        self.log.info("trading %s", ", ".join(self.symbols))

    def _refresh_tops(self) -> None:
        for symbol, stream in list(self._tops.items()):
            if stream.ended:
                self._tops[symbol] = self.client.top_of_book(symbol)  # deleted or refused
                continue
            states = stream.drain()
            if states:
                self.top[symbol] = states[-1]

    def tick_size(self, symbol: str) -> float | None:
        instrument = self.client.instruments.get(symbol)
        return None if instrument is None else instrument.tick_size

    def best_ticks(self, symbol: str, tick: float) -> tuple[int | None, int | None]:
        top = self.top.get(symbol)
        if top is None:
            return None, None
        bid = pricing.to_ticks(top.bid.price, tick) if top.bid else None
        ask = pricing.to_ticks(top.ask.price, tick) if top.ask else None
        return bid, ask

    # ------------------------------------------------------------------ orders

    async def place(
        self, symbol: str, side: Side, ticks: int, quantity: int, tif: TimeInForce
    ) -> OrderResult | None:
        """Insert; a refusal is logged and counted, never raised."""
        tick = self.tick_size(symbol)
        if tick is None:
            return None
        self.counters.orders += 1
        try:
            result = await self.client.insert(
                symbol, side, pricing.price_of(ticks, tick), quantity, tif
            )
        except RiskLimitExceeded as exc:
            self._limit_hit(exc)
            return None
        except OrderRejected as exc:
            self.counters.rejected += 1
            self.log.debug("insert refused: %s", exc.message)
            return None
        self._backoff = 0.0
        return result

    async def amend(self, symbol: str, order_id: int, ticks: int, quantity: int) -> bool:
        """Amend; False if refused (the order is gone, or a limit said no)."""
        tick = self.tick_size(symbol)
        if tick is None:
            return False
        self.counters.amends += 1
        try:
            await self.client.amend(symbol, order_id, pricing.price_of(ticks, tick), quantity)
        except RiskLimitExceeded as exc:
            self._limit_hit(exc)
            return False
        except OrderRejected:
            return False
        return True

    async def cancel(self, symbol: str, order_id: int) -> None:
        self.counters.cancels += 1
        try:
            await self.client.cancel(symbol, order_id)
        except RiskLimitExceeded as exc:
            self._limit_hit(exc)
        except OrderRejected:
            # Already filled or gone: forget it all the same.
            self.client.orders.forget(order_id)

    def _limit_hit(self, exc: RiskLimitExceeded) -> None:
        self.counters.limit_breaches += 1
        self._backoff = min(5.0, max(0.25, self._backoff * 2))
        self.log.warning("risk limit %s hit; backing off %.2f s", exc.limit, self._backoff)
