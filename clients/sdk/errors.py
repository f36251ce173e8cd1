"""Typed errors: what went wrong, with the exchange's own words.

Why typed: a bot wants ``except RiskLimitExceeded`` (back off) to differ from
``except OrderRejected`` (fix the order) and from ``except Disconnected`` (wait);
string matching belongs in one place, here.  Every error the exchange sent
keeps its text in ``.message`` unchanged.
"""

from __future__ import annotations

from typing import Final

#: Limit names as PROTOCOL.md spells them; a refusal's text contains one of them.
LIMIT_NAMES: Final = (
    "message_rate_rolling_limit",
    "order_quantity_rolling_limit",
    "order_amount_rolling_limit",
    "max_outstanding_quantity",
    "max_outstanding_amount",
)


def limit_named_in(message: str) -> str | None:
    """The risk limit a refusal names, or None when it names none."""
    for name in LIMIT_NAMES:
        if name in message:
            return name
    return None


class SdkError(Exception):
    """Base of every error the SDK raises on purpose."""


class ExchangeError(SdkError):
    """The exchange refused a request; ``message`` is its ``error_message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LoginFailed(ExchangeError):
    """Wrong username or password, or a role this port does not admit."""


class OrderRejected(ExchangeError):
    """An insert, amend or cancel was refused; nothing changed on the exchange.

    ``operation`` is ``"insert"``, ``"amend"`` or ``"cancel"``; ``order_id`` is
    set for amends and cancels.
    """

    def __init__(self, message: str, operation: str = "insert", order_id: int = 0) -> None:
        super().__init__(message)
        self.operation = operation
        self.order_id = order_id

    @property
    def limit(self) -> str | None:
        """The risk limit the refusal names, if any."""
        return limit_named_in(self.message)


class RiskLimitExceeded(OrderRejected):
    """An order operation broke a risk limit (``limit`` names it): back off."""


class SubscriptionError(ExchangeError):
    """A market-data subscription was refused (for example an unknown symbol)."""


class LimitsError(ExchangeError):
    """A risk-limit get or set was refused."""


class Disconnected(SdkError, ConnectionError):
    """No connection to the service now, and it did not come back in time."""


class OutcomeUnknown(Disconnected):
    """The connection dropped while a cancel or amend was in flight: it may or may
    not have happened.  (Inserts with a ``client_order_id`` are resent instead.)"""


class NotAvailable(SdkError):
    """The client was connected without the service this call needs."""


def order_error(message: str, operation: str, order_id: int = 0) -> OrderRejected:
    """The right :class:`OrderRejected` subclass for a refusal's text."""
    if limit_named_in(message) is not None:
        return RiskLimitExceeded(message, operation, order_id)
    return OrderRejected(message, operation, order_id)
