"""What the load generator sends: a seeded, pure order-flow planner.

No asyncio and no protobuf here (a test checks the imports), so the flow can be
property-tested on its own and replayed exactly from ``--seed``.

The flow keeps a realistic, bounded book around a fixed mid price per
instrument:

* **passive**: a GTC limit order 1..``levels`` ticks away from the mid on its
  own side, so it rests;
* **cross**: an IOC order priced ``levels + 1`` ticks through the mid, so it
  trades against whatever rests on the other side and never rests itself (a
  resting aggressor would cross the passive levels and turn later passive
  orders into aggressors);
* **amend**: one of this connection's resting orders gets a new passive price
  and quantity (it loses time priority, as any real re-quote does);
* **cancel**: this connection's oldest resting order is cancelled.

Amend and cancel need a resting order of the same connection; without one the
planner sends a passive order instead.  Past ``max_resting`` resting orders per
connection, passive orders turn into cancels, which keeps the book (and the
exchange's memory) bounded however long the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

BUY: Final = 0
SELL: Final = 1
GTC: Final = 0
IOC: Final = 1


class Kind(IntEnum):
    """The four kinds of request in the mix (also the index of their statistics)."""

    PASSIVE = 0
    CROSS = 1
    AMEND = 2
    CANCEL = 3


KIND_NAMES: Final = tuple(kind.name.lower() for kind in Kind)

# The members as plain module globals: ``Kind.CANCEL`` goes through the enum
# class's attribute lookup each time (measured ~65 ns against ~6 ns), and
# the planner names a kind several times per order.
PASSIVE: Final = Kind.PASSIVE
CROSS: Final = Kind.CROSS
AMEND: Final = Kind.AMEND
CANCEL: Final = Kind.CANCEL


@dataclass(frozen=True, slots=True)
class Mix:
    """Relative weights of the four kinds (any non-negative numbers, not all zero)."""

    passive: float = 45.0
    cross: float = 20.0
    amend: float = 15.0
    cancel: float = 20.0

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``passive=45,cross=20,amend=15,cancel=20`` (missing kinds weigh 0)."""
        weights = dict.fromkeys(KIND_NAMES, 0.0)
        for part in text.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in weights:
                raise ValueError(
                    f"bad mix entry {part.strip()!r} (expected NAME=WEIGHT, NAME in "
                    f"{', '.join(KIND_NAMES)})"
                )
            try:
                weight = float(value)
            except ValueError:
                raise ValueError(f"bad weight in mix entry {part.strip()!r}") from None
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"weights must be finite and >= 0, got {part.strip()!r}")
            weights[name] = weight
        mix = cls(**weights)
        if mix.total() <= 0:
            raise ValueError("the mix needs at least one positive weight")
        return mix

    def total(self) -> float:
        return self.passive + self.cross + self.amend + self.cancel

    def cumulative(self) -> tuple[float, float, float]:
        """Upper bounds (fractions of 1) of passive, cross and amend; cancel is the rest."""
        total = self.total()
        a = self.passive / total
        b = a + self.cross / total
        return a, b, b + self.amend / total

    def text(self) -> str:
        return ",".join(f"{name}={getattr(self, name):g}" for name in KIND_NAMES)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One traded instrument: prices are ``ticks * tick_size`` around ``mid_ticks``."""

    symbol: str
    tick_size: float
    mid_ticks: int

    @classmethod
    def around(cls, symbol: str, tick_size: float, mid_price: float = 100.0) -> Instrument:
        if not tick_size > 0:
            raise ValueError(f"tick size of {symbol} must be > 0, got {tick_size!r}")
        return cls(symbol, tick_size, max(1, round(mid_price / tick_size)))

    def price(self, ticks: int) -> float:
        """The double that goes on the wire for ``ticks`` (rounded to kill 0.1+0.2 noise)."""
        return round(ticks * self.tick_size, 10)


@dataclass(slots=True)
class Resting:
    """One of our orders believed to rest in the book."""

    instrument: int
    side: int
    ticks: int
    quantity: int


class Intent(NamedTuple):
    """One request to send.  ``order_id`` is 0 for inserts.

    A named tuple rather than a frozen dataclass: one is made per order, and a
    frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (measured: the planner's largest single cost).
    """

    kind: Kind
    instrument: int
    side: int
    ticks: int
    quantity: int
    order_id: int = 0

    @property
    def time_in_force(self) -> int:
        return IOC if self.kind is CROSS else GTC


class RestingOrders:
    """The orders one connection believes rest, oldest first (dicts keep insertion order)."""

    __slots__ = ("orders",)

    def __init__(self) -> None:
        self.orders: dict[int, Resting] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def rested(self, order_id: int, intent: Intent, resting_quantity: int) -> None:
        """An insert was accepted with ``resting_quantity`` left in the book."""
        if resting_quantity > 0:
            self.orders[order_id] = Resting(
                intent.instrument, intent.side, intent.ticks, resting_quantity
            )

    def filled(self, order_id: int, remaining_quantity: int) -> None:
        """A fill left ``remaining_quantity`` (0 means the order is gone)."""
        if remaining_quantity <= 0:
            self.orders.pop(order_id, None)
        else:
            order = self.orders.get(order_id)
            if order is not None:
                order.quantity = remaining_quantity

    def gone(self, order_id: int) -> None:
        """Cancelled (by us or by the exchange) or otherwise no longer resting."""
        self.orders.pop(order_id, None)


class Planner:
    """Draws the next :class:`Intent` for a connection from a seeded RNG."""

    def __init__(
        self,
        instruments: list[Instrument],
        mix: Mix,
        seed: int,
        *,
        levels: int = 10,
        max_quantity: int = 10,
        max_resting: int = 1000,
    ) -> None:
        if not instruments:
            raise ValueError("no instruments to trade")
        if levels < 1 or max_quantity < 1 or max_resting < 1:
            raise ValueError("levels, max_quantity and max_resting must be >= 1")
        self.instruments = instruments
        self.mix = mix
        self.rng = random.Random(seed)
        self.levels = levels
        self.max_quantity = max_quantity
        self.max_resting = max_resting
        self._bounds = mix.cumulative()
        self._instrument_bits = len(instruments).bit_length()
        self._quantity_bits = max_quantity.bit_length()
        self._level_bits = levels.bit_length()

    def _below(self, n: int, bits: int) -> int:
        """``rng.randrange(n)`` (``bits`` = ``n.bit_length()``), the same draws, cheaper.

        ``Random.randrange`` and ``randint`` end in ``_randbelow``: draw
        ``n.bit_length()`` bits until the value is below ``n``.  Doing that
        here skips their argument checks (a third of the planner's time) and
        consumes the generator identically, so a seed gives the same flow as
        with ``randint`` (a test checks it).
        """
        getrandbits = self.rng.getrandbits
        r = getrandbits(bits)
        while r >= n:
            r = getrandbits(bits)
        return r

    def next(self, book: RestingOrders) -> Intent:
        """The next request for the connection whose resting orders are ``book``.

        Amends and cancels update ``book`` at once (optimistically), so two
        requests in flight never target the same order.
        """
        rng = self.rng
        draw = rng.random()
        a, b, c = self._bounds
        if draw < a:
            kind = CANCEL if len(book.orders) >= self.max_resting else PASSIVE
        elif draw < b:
            kind = CROSS
        elif draw < c:
            kind = AMEND
        else:
            kind = CANCEL
        if kind is AMEND or kind is CANCEL:
            orders = book.orders
            if not orders:
                kind = PASSIVE
            else:
                order_id = next(iter(orders))
                order = orders.pop(order_id)
                if kind is CANCEL:
                    return Intent(CANCEL, order.instrument, order.side, order.ticks, 0, order_id)
                ticks = self._passive_ticks(order.instrument, order.side)
                quantity = 1 + self._below(self.max_quantity, self._quantity_bits)
                # Re-queued at the back: it lost priority, and amending the
                # oldest order next time spreads amends over the book.
                orders[order_id] = Resting(order.instrument, order.side, ticks, quantity)
                return Intent(AMEND, order.instrument, order.side, ticks, quantity, order_id)
        instrument = self._below(len(self.instruments), self._instrument_bits)
        side = BUY if rng.random() < 0.5 else SELL
        quantity = 1 + self._below(self.max_quantity, self._quantity_bits)
        if kind is CROSS:
            mid = self.instruments[instrument].mid_ticks
            through = self.levels + 1
            ticks = mid + through if side == BUY else max(1, mid - through)
            return Intent(CROSS, instrument, side, ticks, quantity)
        return Intent(PASSIVE, instrument, side, self._passive_ticks(instrument, side), quantity)

    def _passive_ticks(self, instrument: int, side: int) -> int:
        mid = self.instruments[instrument].mid_ticks
        offset = 1 + self._below(self.levels, self._level_bits)
        return max(1, mid - offset) if side == BUY else mid + offset
