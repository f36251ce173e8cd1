"""Per-user risk state: exposures, window checks, accounts and tickets.

The data the :class:`~services.risk_gateway.limits.RiskEngine` keeps and hands
out. Plain slotted classes: they are created per user, per (user, symbol), per
(user, book) and per request (:class:`Ticket`), and read on every check.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

from typing import Final

from services.risk_gateway.windows import Series, View

__all__ = ["UNLIMITED", "Account", "Exposure", "OrderCheck", "RateCheck", "Ticket", "UserState"]

UNLIMITED: Final = 1 << 200
"""Stands in for "no limit" in checks: larger than any sum of quantities or amounts."""


class Exposure:
    """Outstanding quantity and amount of one user's resting orders in one book.

    ``reserved_*`` holds what requests in flight may add; checks count both.
    """

    __slots__ = ("amount", "quantity", "reserved_amount", "reserved_quantity", "user")

    def __init__(self, user: UserState) -> None:
        self.user = user
        self.quantity = 0
        self.amount = 0
        self.reserved_quantity = 0
        self.reserved_amount = 0

    def add(self, quantity: int, amount: int) -> None:
        """Resting orders changed by ``quantity`` lots and ``amount`` units."""
        self.quantity += quantity
        self.amount += amount
        self.user.outstanding += quantity


RateCheck = tuple[Series, View, int, str]
"""(series, view, limit, layer): at most ``limit`` messages in the view's window."""
OrderCheck = tuple[Series, View, int, str, int, str]
"""(series, view, quantity limit, its layer, amount limit, its layer) for one window
length; a limit nobody set is :data:`_UNLIMITED`."""


class UserState:
    """Everything the engine keeps for one username."""

    __slots__ = (
        "accounts",
        "exposures",
        "max_outstanding",
        "max_outstanding_layer",
        "messages",
        "name",
        "outstanding",
        "rate_checks",
        "reserved",
    )

    def __init__(self, name: str, keep_s: float) -> None:
        self.name = name
        self.messages = Series(("m", name), keep_s)
        self.outstanding = 0
        self.reserved = 0
        self.max_outstanding = UNLIMITED
        """The tightest account-wide max_outstanding_quantity of both layers."""
        self.max_outstanding_layer = ""
        self.rate_checks: tuple[RateCheck, ...] = ()
        self.accounts: dict[str, Account] = {}
        self.exposures: dict[int, Exposure] = {}


class Account:
    """One user's order windows and effective limits in one instrument symbol.

    ``orders`` records each order's quantity (``v``) and amount (``w``) together.
    """

    __slots__ = (
        "max_amount",
        "max_amount_layer",
        "max_outstanding",
        "max_outstanding_layer",
        "order_checks",
        "orders",
        "symbol",
    )

    def __init__(self, user: str, symbol: str, keep_s: float) -> None:
        self.symbol = symbol
        self.orders = Series(("o", user, symbol), keep_s)
        self.max_outstanding = UNLIMITED
        self.max_outstanding_layer = ""
        self.max_amount = UNLIMITED
        """In amount units; the tightest of both layers."""
        self.max_amount_layer = ""
        self.order_checks: tuple[OrderCheck, ...] = ()


class Ticket:
    """A request that passed its checks and was recorded.

    :meth:`RiskEngine.refund` takes its window records out again and
    :meth:`RiskEngine.release` drops its reservations (both idempotent).
    """

    __slots__ = (
        "amount",
        "exposure",
        "message_seq",
        "order_seq",
        "orders",
        "quantity",
        "refunded",
        "reserved_amount",
        "reserved_quantity",
        "time",
        "user",
    )

    def __init__(
        self,
        user: UserState,
        time: float,
        message_seq: int,
        orders: Series | None = None,
        order_seq: int = 0,
        quantity: int = 0,
        amount: int = 0,
        exposure: Exposure | None = None,
        reserved_quantity: int = 0,
        reserved_amount: int = 0,
    ) -> None:
        self.user = user
        self.time = time
        self.message_seq = message_seq
        self.orders = orders
        """The order series this request was recorded in (None: a message only)."""
        self.order_seq = order_seq
        self.quantity = quantity
        self.amount = amount
        self.exposure = exposure
        self.reserved_quantity = reserved_quantity
        self.reserved_amount = reserved_amount
        self.refunded = False

    @property
    def counted_as_order(self) -> bool:
        return self.orders is not None
