"""Which of this user's orders are resting, as far as this client has seen.

Why in the SDK: nearly every strategy needs "my open orders" (to cancel them,
to avoid quoting twice, to know inventory at risk), and getting it right from
responses, fills and unsolicited cancels is easy to get subtly wrong.  Pure:
fed :mod:`clients.sdk.types` values, no I/O.

Fill messages carry the order's remaining quantity after the fill, so the
tracker takes the smallest remaining it has seen rather than subtracting (an
aggressor's fills arrive after its response, which already reports the final
resting quantity).  Orders filled or cancelled while the client was
disconnected cannot be seen; :meth:`OrderTracker.forget_all` is for that case.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.sdk.types import AmendResult, Cancel, CancelResult, Fill, OrderResult, Side


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """One resting order of this user."""

    order_id: int
    symbol: str
    side: Side
    price: float
    remaining: int


class OrderTracker:
    """This user's resting orders, from the outcomes this client has seen."""

    def __init__(self) -> None:
        self._orders: dict[int, OpenOrder] = {}
        self._done: set[int] = set()

    def inserted(self, result: OrderResult) -> None:
        if result.resting_quantity > 0 and result.order_id not in self._done:
            self._orders[result.order_id] = OpenOrder(
                result.order_id, result.symbol, result.side, result.price, result.resting_quantity
            )

    def amended(self, result: AmendResult) -> None:
        order = self._orders.get(result.order_id)
        if order is None:
            return
        if result.resting_quantity <= 0:
            self._finish(result.order_id)
        else:
            self._orders[result.order_id] = OpenOrder(
                order.order_id, order.symbol, order.side, result.price, result.resting_quantity
            )

    def cancelled(self, result: CancelResult | Cancel) -> None:
        self._finish(result.order_id)

    def filled(self, fill: Fill) -> None:
        order = self._orders.get(fill.order_id)
        if order is None:
            return
        if fill.remaining_quantity <= 0:
            self._finish(fill.order_id)
        elif fill.remaining_quantity < order.remaining:
            self._orders[fill.order_id] = OpenOrder(
                order.order_id, order.symbol, order.side, order.price, fill.remaining_quantity
            )

    def _finish(self, order_id: int) -> None:
        self._orders.pop(order_id, None)
        self._done.add(order_id)
        if len(self._done) > 100_000:  # only guards against a fill overtaking a response
            self._done.clear()

    def forget(self, order_id: int) -> None:
        """Stop tracking one order (for example a cancel refused because it is gone)."""
        self._finish(order_id)

    def forget_all(self) -> list[OpenOrder]:
        """Drop everything (after a reconnect the picture may be stale); returns it."""
        orders = list(self._orders.values())
        self._orders.clear()
        return orders

    def open_orders(self, symbol: str | None = None) -> dict[int, OpenOrder]:
        return {
            order_id: order
            for order_id, order in self._orders.items()
            if symbol is None or order.symbol == symbol
        }

    def outstanding_quantity(self, symbol: str | None = None) -> int:
        return sum(o.remaining for o in self._orders.values() if symbol in (None, o.symbol))

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders
