"""What the market-data viewer shows, computed without any UI.

Why separate: the Textual app (:mod:`clients.watch`) only paints; deciding
what the ladder, the tape and the summary line say -- formatting prices to
the instrument's tick, aligning bids and asks, keeping the tape bounded --
is plain logic with plain tests.  No asyncio, no Textual, no protobuf.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from clients.sdk.types import Depth, Instrument, Quote, Side, Trade

TAPE_LENGTH = 200
LADDER_LEVELS = 10


def decimals_for(tick_size: float) -> int:
    """Decimals needed to show prices on a grid of ``tick_size`` (0.01 -> 2, 0.5 -> 1)."""
    if not tick_size > 0 or not math.isfinite(tick_size):
        return 2
    exponent = Decimal(repr(float(tick_size))).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def format_price(price: float | None, tick_size: float) -> str:
    if price is None or price == 0:
        return "-"
    return f"{price:,.{decimals_for(tick_size)}f}"


def format_quantity(quantity: int | None) -> str:
    return "-" if not quantity else f"{quantity:,}"


def format_time(timestamp_ns: int) -> str:
    if timestamp_ns <= 0:
        return "--:--:--"
    seconds = timestamp_ns / 1e9
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(seconds % 1 * 1000):03d}"


def ladder_rows(
    depth: Depth | None, tick_size: float, levels: int = LADDER_LEVELS
) -> list[tuple[str, str, str, str]]:
    """Rows of (bid qty, bid, ask, ask qty), best prices on the first row."""
    if depth is None:
        return []
    rows = []
    for i in range(max(len(depth.bids), len(depth.asks))):
        if i >= levels:
            break
        bid = depth.bids[i] if i < len(depth.bids) else None
        ask = depth.asks[i] if i < len(depth.asks) else None
        rows.append(
            (
                format_quantity(bid.quantity) if bid else "",
                format_price(bid.price, tick_size) if bid else "",
                format_price(ask.price, tick_size) if ask else "",
                format_quantity(ask.quantity) if ask else "",
            )
        )
    return rows


@dataclass
class SymbolState:
    """Everything the viewer knows about one instrument."""

    instrument: Instrument
    depth: Depth | None = None
    last_price: float = 0.0
    last_quantity: int = 0
    volume: int = 0
    tape: deque[Trade] = field(default_factory=lambda: deque(maxlen=TAPE_LENGTH))

    def on_quote(self, quote: Quote) -> None:
        if quote.volume >= self.volume:
            self.last_price = quote.last_price
            self.last_quantity = quote.last_quantity
            self.volume = quote.volume

    def on_trade(self, trade: Trade) -> None:
        self.tape.appendleft(trade)
        self.last_price = trade.price
        self.last_quantity = trade.quantity
        self.volume += trade.quantity

    def tape_rows(self, limit: int = 50) -> list[tuple[str, str, str, str]]:
        tick = self.instrument.tick_size
        rows = []
        for trade in list(self.tape)[:limit]:
            side = "BUY" if trade.aggressor_side is Side.BUY else "SELL"
            rows.append(
                (
                    format_time(trade.timestamp),
                    format_price(trade.price, tick),
                    format_quantity(trade.quantity),
                    side,
                )
            )
        return rows

    def summary(self) -> str:
        tick = self.instrument.tick_size
        parts = [f"{self.instrument.symbol}"]
        if self.instrument.description:
            parts.append(self.instrument.description)
        last = format_price(self.last_price, tick)
        parts.append(f"last {last} x {format_quantity(self.last_quantity)}")
        parts.append(f"volume {self.volume:,}")
        if self.depth is not None:
            top = self.depth.top
            bid = f"{format_price(top.bid.price, tick)} x {top.bid.quantity}" if top.bid else "-"
            ask = f"{format_price(top.ask.price, tick)} x {top.ask.quantity}" if top.ask else "-"
            parts.append(f"bid {bid}  ask {ask}")
        parts.append(f"tick {format_price(tick, tick)}")
        return "  |  ".join(parts)
