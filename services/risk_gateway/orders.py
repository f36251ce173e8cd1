"""The Gateway's mirror of every order: who owns it, where it rests, what is left.

Built from the Order Book's event stream (login snapshot, then live events), the
table answers three questions for the Gateway:

* **Ownership.** May this user cancel or amend order 42? (Only its own; someone
  else's order looks exactly like an unknown one.)
* **Exposure.** Resting quantity and amount per user and book feed the
  outstanding limits: the table updates the :class:`~services.risk_gateway.limits.Exposure`
  of each resting order as it is inserted, filled, amended and cancelled.
* **Notifications.** Every trade becomes an :class:`Fill` for the owner of each
  side (at *that side's* price), and every cancel the owner did not ask for
  becomes an :class:`Cancelled` (book cleared or deleted).

Which cancels were asked for: the wire's ``OnOrderCancelled`` carries no reason,
so the table decides. An IOC/FOK order never rests, so any cancel of one is its
unfilled remainder (reported by the insert's response). A cancel of an order
whose cancel request is in flight through this Gateway is *deferred*: the
request's outcome decides (success: it was ours; failure: someone else, e.g. a
clear, got there first, and the owner must hear of it). Everything else is
unsolicited.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, NamedTuple

from services.common.prices import PriceError, to_ticks
from services.risk_gateway.limits import Exposure, amount_unit

__all__ = ["Cancelled", "Fill", "OrderEntry", "OrderTable"]

BUY: Final = 0
GTC: Final = 0
RECENT_INSERTS: Final = 65536
"""How many live-inserted order ids are remembered (see :meth:`OrderTable.saw_insert`)."""


class Fill(NamedTuple):
    """One side of one trade, for that order's owner."""

    owner: str
    order_id: int
    order_book_id: int
    trade_id: int
    side: int
    price: float
    quantity: int
    remaining: int
    timestamp: int


class Cancelled(NamedTuple):
    """An order cancelled without its owner asking (book cleared or deleted)."""

    owner: str
    order_id: int
    order_book_id: int
    quantity: int
    timestamp: int


class OrderEntry:
    """One order the table follows (resting, or an IOC/FOK during its own events)."""

    __slots__ = (
        "exposure",
        "order_book_id",
        "order_id",
        "owner",
        "price_ticks",
        "remaining",
        "side",
        "unit_price",
    )

    def __init__(
        self,
        order_id: int,
        owner: str,
        order_book_id: int,
        side: int,
        price_ticks: int,
        unit_price: int,
        remaining: int,
        exposure: Exposure | None,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        self.order_book_id = order_book_id
        self.side = side
        self.price_ticks = price_ticks
        self.unit_price = unit_price
        self.remaining = remaining
        self.exposure = exposure
        """The owner's exposure in this book; None for IOC/FOK (they never rest)."""


class _Book:
    __slots__ = ("prices", "tick_size", "unit")

    def __init__(self, tick_size: float) -> None:
        self.tick_size = tick_size
        self.unit = amount_unit(tick_size)
        self.prices: dict[float, tuple[int, int]] = {}
        """price -> (ticks, amount units per lot): a book's orders sit at a few
        levels, and converting a price costs several times a lookup."""


PRICE_MEMO: Final = 65536
"""Prices remembered per book (the memo starts afresh beyond)."""


class OrderTable:
    """Orders by id, from the event stream (see the module docstring)."""

    def __init__(self, exposure_of: Callable[[str, int], Exposure]) -> None:
        self._exposure_of = exposure_of
        self.orders: dict[int, OrderEntry] = {}
        self._books: dict[int, _Book] = {}
        self.deleted_books: set[int] = set()
        self.last_sequence = 0
        self.max_order_id = 0
        """Highest order id seen (snapshot or live): a new order's id is higher."""
        self.max_trade_id = 0
        """Highest trade id seen (trade ids grow in stream order)."""
        self._exposures: dict[tuple[str, int], Exposure] = {}
        """(owner, book) -> ``exposure_of(owner, book)``, which hands out one
        object per pair for good (the engine updates it in place)."""
        self._own_cancels: dict[int, list[Any]] = {}
        """order id -> [cancels in flight, whether one succeeded]."""
        self._deferred: dict[int, Cancelled] = {}
        self._recent: OrderedDict[int, None] = OrderedDict()

    # ------------------------------------------------------------------ stream

    def reset(self) -> None:
        """Forget everything (a new connection's snapshot follows)."""
        self.orders.clear()
        self._books.clear()
        self.last_sequence = 0
        self.max_order_id = 0
        self.max_trade_id = 0
        self._deferred.clear()
        self._recent.clear()

    def sequence(self, number: int) -> bool:
        """Check an event's sequence number; False means a gap (resynchronise)."""
        if number == 0:
            return self.last_sequence == 0  # snapshot messages come before live ones
        last = self.last_sequence
        if last and number != last + 1:
            return False
        self.last_sequence = number
        return True

    def book_created(self, order_book_id: int, tick_size: float) -> None:
        self._books[order_book_id] = _Book(tick_size)

    def book_deleted(self, order_book_id: int) -> None:
        self._books.pop(order_book_id, None)
        self.deleted_books.add(order_book_id)

    def tick_size(self, order_book_id: int) -> float | None:
        book = self._books.get(order_book_id)
        return None if book is None else book.tick_size

    def _ticks(self, book: _Book | None, price: float) -> tuple[int, int]:
        if book is None:
            return 0, 0
        prices = book.prices
        known = prices.get(price)
        if known is not None:
            return known
        ticks = to_ticks(price, book.tick_size)
        if isinstance(ticks, PriceError):  # cannot happen for the Order Book's own prices
            ticks = max(1, round(price / book.tick_size))
        if len(prices) >= PRICE_MEMO:
            prices.clear()
        known = prices[price] = (ticks, ticks * book.unit)
        return known

    def inserted(
        self,
        order_id: int,
        order_book_id: int,
        side: int,
        price: float,
        quantity: int,
        owner: str,
        time_in_force: int,
        snapshot: bool,
    ) -> None:
        """``OnOrderInserted``: live (full quantity; trades follow) or snapshot
        (remaining quantity of a resting order)."""
        ticks, unit_price = self._ticks(self._books.get(order_book_id), price)
        exposure = None
        if time_in_force == GTC:
            exposure = self._exposures.get((owner, order_book_id))
            if exposure is None:
                exposure = self._exposures[owner, order_book_id] = self._exposure_of(
                    owner, order_book_id
                )
            exposure.add(quantity, quantity * unit_price)
        self.orders[order_id] = OrderEntry(
            order_id, owner, order_book_id, side, ticks, unit_price, quantity, exposure
        )
        if order_id > self.max_order_id:
            self.max_order_id = order_id
        if not snapshot:
            recent = self._recent
            recent[order_id] = None
            if len(recent) > RECENT_INSERTS:
                recent.popitem(last=False)

    def saw_insert(self, order_id: int) -> bool:
        """Whether a live ``OnOrderInserted`` for ``order_id`` arrived recently."""
        return order_id in self._recent

    def is_new_order(self, order_id: int, max_order_id_before: int) -> bool:
        """Whether ``order_id`` was created by a request forwarded when
        :attr:`max_order_id` was ``max_order_id_before`` (call once its events are in).

        A ``client_order_id`` resend is answered with an old order's id and
        causes no events; a new order has a higher id than any seen before it
        was sent, and its live ``OnOrderInserted`` has arrived.
        """
        return order_id > max_order_id_before and order_id in self._recent

    # A request's events follow its answer in the stream, usually in the same
    # read. These tell from the answer whether they have all been processed, so
    # the Gateway needs no barrier round trip; False means "not sure" (it then
    # falls back to one), never a false "yes".

    def insert_settled(
        self,
        order_id: int,
        trade_ids: Sequence[int],
        time_in_force: int,
        traded_quantity: int,
        quantity: int,
    ) -> bool:
        """Whether the events of a successful insert are all in: its
        ``OnOrderInserted``, its trades, and the cancel of an IOC/FOK remainder."""
        if self.max_order_id < order_id:
            return False  # ids grow in stream order: a later one implies ours
        if trade_ids and self.max_trade_id < trade_ids[-1]:
            return False
        # An IOC/FOK remainder's cancel removes the order from the table.
        return time_in_force == GTC or traded_quantity >= quantity or order_id not in self.orders

    def cancel_settled(self, order_id: int) -> bool:
        """Whether the event of a successful cancel is in (the order is gone)."""
        return order_id not in self.orders

    def amend_settled(
        self, order_id: int, price_ticks: int, resting_quantity: int, trade_ids: Sequence[int]
    ) -> bool:
        """Whether the events of a successful amend are all in.

        Before its ``OnOrderAmended`` the order still shows its old price or
        quantity (an amend to the same price and quantity has no event), and it
        was resting when the amend was applied, so it is in the table.
        """
        if trade_ids and self.max_trade_id < trade_ids[-1]:
            return False
        entry = self.orders.get(order_id)
        if entry is None:
            return True  # fully traded by the amend
        return entry.price_ticks == price_ticks and entry.remaining == resting_quantity

    def trade(
        self,
        trade_id: int,
        buy_order_id: int,
        sell_order_id: int,
        price: float,
        aggressor_price: float,
        quantity: int,
        aggressor_side: int,
        timestamp: int,
    ) -> list[Fill]:
        """``OnTrade``: fill both sides; a fill for the owner of each side we know."""
        fills: list[Fill] = []
        orders = self.orders
        if trade_id > self.max_trade_id:
            self.max_trade_id = trade_id
        buy_aggressor = aggressor_side == BUY
        for order_id, aggressor in (
            (buy_order_id, buy_aggressor),
            (sell_order_id, not buy_aggressor),
        ):
            entry = orders.get(order_id)
            if entry is None:
                continue
            remaining = entry.remaining - quantity
            if remaining <= 0:
                remaining = 0
                del orders[order_id]
            entry.remaining = remaining
            exposure = entry.exposure
            if exposure is not None:
                exposure.add(-quantity, -quantity * entry.unit_price)
            fills.append(
                Fill(
                    entry.owner,
                    order_id,
                    entry.order_book_id,
                    trade_id,
                    entry.side,
                    aggressor_price if aggressor else price,
                    quantity,
                    remaining,
                    timestamp,
                )
            )
        return fills

    def cancelled(self, order_id: int, quantity: int, timestamp: int) -> Cancelled | None:
        """``OnOrderCancelled``: returns the notification if the owner must be told now."""
        entry = self.orders.pop(order_id, None)
        if entry is None:
            return None
        exposure = entry.exposure
        if exposure is None:
            return None  # IOC/FOK remainder: the insert's response says it
        exposure.add(-entry.remaining, -entry.remaining * entry.unit_price)
        notice = Cancelled(entry.owner, order_id, entry.order_book_id, quantity, timestamp)
        if order_id in self._own_cancels:
            self._deferred[order_id] = notice
            return None
        return notice

    def amended(self, order_id: int, price: float, quantity: int) -> None:
        """``OnOrderAmended``: new price and remaining quantity (trades follow)."""
        entry = self.orders.get(order_id)
        if entry is None:
            return
        ticks, unit_price = self._ticks(self._books.get(entry.order_book_id), price)
        exposure = entry.exposure
        if exposure is not None:
            exposure.add(
                quantity - entry.remaining,
                quantity * unit_price - entry.remaining * entry.unit_price,
            )
        entry.price_ticks = ticks
        entry.unit_price = unit_price
        entry.remaining = quantity

    # ------------------------------------------------------------------ own cancels

    def expect_cancel(self, order_id: int) -> None:
        """A cancel of ``order_id`` is being forwarded by this Gateway."""
        state = self._own_cancels.get(order_id)
        if state is None:
            self._own_cancels[order_id] = [1, False]
        else:
            state[0] += 1

    def cancel_done(self, order_id: int, succeeded: bool | None) -> Cancelled | None:
        """A forwarded cancel finished (``None``: outcome unknown, connection lost).

        Returns a deferred notification the owner must now be sent: the order
        was cancelled by someone else (a clear) while our cancel was in flight,
        and none of our cancels of it succeeded.
        """
        state = self._own_cancels.get(order_id)
        if state is None:
            return None
        state[0] -= 1
        if succeeded:
            state[1] = True
        if state[0] > 0:
            return None
        del self._own_cancels[order_id]
        notice = self._deferred.pop(order_id, None)
        if notice is None or state[1] or succeeded is None:
            return None
        return notice

    # ------------------------------------------------------------------ reading

    def get(self, order_id: int) -> OrderEntry | None:
        return self.orders.get(order_id)

    def __len__(self) -> int:
        return len(self.orders)

    def resting(self) -> Iterator[OrderEntry]:
        return (entry for entry in self.orders.values() if entry.exposure is not None)
