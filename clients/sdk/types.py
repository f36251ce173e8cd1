"""The SDK's vocabulary: plain, frozen values that user code handles.

Why separate from protobuf: a trading script should not need to know field
numbers, ``request_id`` bookkeeping or that ``BUY`` is the integer 0.  Every
wire message a user sees is turned into one of these values in
:mod:`clients.sdk.translate` (the one place that knows both worlds), so this
module imports neither asyncio nor protobuf and is trivially testable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Side(enum.StrEnum):
    """Order side.  A ``StrEnum``, so ``"buy"`` and ``Side.BUY`` compare equal."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def parse(cls, value: Side | str) -> Side:
        """Accept ``Side.BUY``, ``"buy"``, ``"BUY"`` or ``"b"``; reject anything else."""
        if isinstance(value, Side):
            return value
        text = str(value).strip().lower()
        for side in cls:
            if text in (side.value, side.value[0]):
                return side
        raise ValueError(f"side must be 'buy' or 'sell', not {value!r}")


class TimeInForce(enum.StrEnum):
    """How long an order may rest: GTC rests, IOC and FOK never do."""

    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"

    @classmethod
    def parse(cls, value: TimeInForce | str) -> TimeInForce:
        """Accept the enum, its short name in any case, or the protocol's long name."""
        if isinstance(value, TimeInForce):
            return value
        text = str(value).strip().lower()
        aliases = {
            "good_till_cancel": cls.GTC,
            "immediate_or_cancel": cls.IOC,
            "fill_or_kill": cls.FOK,
        }
        if text in aliases:
            return aliases[text]
        for tif in cls:
            if text == tif.value:
                return tif
        raise ValueError(f"time in force must be one of gtc, ioc, fok, not {value!r}")


class PriceRule(enum.StrEnum):
    """Which price a trade happens at (see PROTOCOL.md, order_book)."""

    RESTING_ORDER_PRICE = "resting_order_price"
    SPREAD_CAPTURE = "spread_capture"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable instrument as Info announced it."""

    symbol: str
    tick_size: float
    order_book_id: int
    description: str = ""
    currency: str = ""
    multiplier: float = 0.0
    price_rule: PriceRule = PriceRule.RESTING_ORDER_PRICE
    created_timestamp: int = 0


@dataclass(frozen=True, slots=True)
class InstrumentEvent:
    """An instrument appeared (``added``) or was deleted (``deleted``)."""

    kind: str
    symbol: str
    instrument: Instrument | None = None


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The exchange's answer to an accepted insert.

    ``resting_quantity`` is what is left on the book; for IOC/FOK orders it is
    always 0 (the rest was cancelled).
    """

    order_id: int
    symbol: str
    side: Side
    price: float
    quantity: int
    traded_quantity: int
    resting_quantity: int
    trade_ids: tuple[int, ...] = ()
    timestamp: int = 0
    client_order_id: str = ""

    @property
    def filled(self) -> bool:
        """True when the whole order traded at once."""
        return self.traded_quantity == self.quantity

    @property
    def resting(self) -> bool:
        return self.resting_quantity > 0


@dataclass(frozen=True, slots=True)
class AmendResult:
    """The exchange's answer to an accepted amend (same order id, new terms)."""

    order_id: int
    symbol: str
    price: float
    quantity: int
    traded_quantity: int
    resting_quantity: int
    trade_ids: tuple[int, ...] = ()
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The exchange's answer to an accepted cancel."""

    order_id: int
    symbol: str
    cancelled_quantity: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One of this user's orders traded (``price`` is what this user got)."""

    order_id: int
    symbol: str
    trade_id: int
    side: Side
    price: float
    quantity: int
    remaining_quantity: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """One of this user's orders was cancelled by the exchange, not by the user
    (its book was cleared or deleted)."""

    order_id: int
    symbol: str
    cancelled_quantity: int
    reason: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class Level:
    """One price level: the total quantity resting at ``price``."""

    price: float
    quantity: int


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best bid and ask (``None`` when that side is empty)."""

    symbol: str
    bid: Level | None
    ask: Level | None
    timestamp: int = 0
    sequence_number: int = 0

    @property
    def mid(self) -> float | None:
        """Midpoint of best bid and ask, when both exist."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid.price + self.ask.price) / 2

    @property
    def spread(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return self.ask.price - self.bid.price


@dataclass(frozen=True, slots=True)
class Depth:
    """Price levels, best first on each side (bids high to low, asks low to high)."""

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    timestamp: int = 0
    sequence_number: int = 0

    def truncated(self, levels: int) -> Depth:
        """The same book cut to ``levels`` per side (0 keeps everything)."""
        if levels <= 0 or (len(self.bids) <= levels and len(self.asks) <= levels):
            return self
        return Depth(
            self.symbol,
            self.bids[:levels],
            self.asks[:levels],
            self.timestamp,
            self.sequence_number,
        )

    def same_levels(self, other: Depth | None) -> bool:
        """True when ``other`` shows exactly the same levels (ignores time and numbering)."""
        return other is not None and self.bids == other.bids and self.asks == other.asks

    @property
    def top(self) -> TopOfBook:
        return TopOfBook(
            self.symbol,
            self.bids[0] if self.bids else None,
            self.asks[0] if self.asks else None,
            self.timestamp,
        )


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade in an instrument (``price`` is the resting order's price)."""

    trade_id: int
    symbol: str
    price: float
    quantity: int
    aggressor_side: Side
    timestamp: int = 0
    sequence_number: int = 0


@dataclass(frozen=True, slots=True)
class Quote:
    """Last trade and traded volume of an instrument (zeros when it never traded)."""

    symbol: str
    last_price: float
    last_quantity: int
    last_timestamp: int
    volume: int


@dataclass(frozen=True, slots=True)
class RollingWindow:
    """At most ``limit`` within the last ``window_s`` seconds; 0 in either means no limit."""

    limit: int = 0
    window_s: int = 0

    @property
    def unlimited(self) -> bool:
        return self.limit == 0 or self.window_s == 0


@dataclass(frozen=True, slots=True)
class UserLimits:
    """Per-user limits (0 means no limit)."""

    max_outstanding_quantity: int = 0
    message_rate: RollingWindow = field(default_factory=RollingWindow)


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """Per-user, per-instrument limits (0 means no limit)."""

    max_outstanding_quantity: int = 0
    max_outstanding_amount: float = 0.0
    order_quantity: RollingWindow = field(default_factory=RollingWindow)
    order_amount: RollingWindow = field(default_factory=RollingWindow)


@dataclass(frozen=True, slots=True)
class UserLimitLayers:
    """A user's own limits and the ones an admin set for it; both apply."""

    own: UserLimits
    admin: UserLimits


@dataclass(frozen=True, slots=True)
class InstrumentLimitLayers:
    """Per-instrument limits by symbol: the user's own layer and the admin layer."""

    own: dict[str, InstrumentLimits]
    admin: dict[str, InstrumentLimits]
