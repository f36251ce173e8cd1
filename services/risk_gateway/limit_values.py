"""Risk-limit values: the two layers, limit types, validation and exact amounts.

The values PROTOCOL.md's ``risk_limits`` messages carry, as plain frozen
dataclasses (``translate.py`` converts them from and to protobuf), plus the
fixed-point amount arithmetic the checks use. Amounts are integers in units of
``10**-12`` of a price unit (:data:`AMOUNT_SCALE`): ``price_ticks * quantity *
amount_unit(tick_size)``. Integer arithmetic makes "exactly at the limit" exact
(0.1 * 3 is not 0.3 in floating point) and lets a symbol keep its windows when
it is re-created with another tick size.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

__all__ = [
    "ADMIN",
    "AMOUNT_SCALE",
    "LAYERS",
    "NO_WINDOW",
    "OWN",
    "ZERO_INSTRUMENT_LIMITS",
    "ZERO_USER_LIMITS",
    "InstrumentLimits",
    "RollingLimit",
    "UserLimits",
    "amount_limit_units",
    "amount_unit",
    "format_amount",
    "validate_instrument_limits",
    "validate_user_limits",
]

OWN: Final = "own"
ADMIN: Final = "admin"
LAYERS: Final = (OWN, ADMIN)

#: Amounts are integers in 10**-12 price units.
AMOUNT_SCALE: Final = 10**12


# ---------------------------------------------------------------------- limit values


@dataclass(frozen=True, slots=True)
class RollingLimit:
    """At most ``limit`` within the last ``window_s`` seconds; 0 in either means none."""

    limit: int = 0
    window_s: int = 0

    @property
    def active(self) -> bool:
        return self.limit > 0 and self.window_s > 0


NO_WINDOW: Final = RollingLimit()


@dataclass(frozen=True, slots=True)
class UserLimits:
    """One layer of a user's account-wide limits (protobuf ``UserRiskLimits``)."""

    max_outstanding_quantity: int = 0
    message_rate_rolling_limit: RollingLimit = NO_WINDOW


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """One layer of a user's limits in one instrument (``InstrumentRiskLimits``)."""

    max_outstanding_quantity: int = 0
    max_outstanding_amount: float = 0.0
    order_quantity_rolling_limit: RollingLimit = NO_WINDOW
    order_amount_rolling_limit: RollingLimit = NO_WINDOW

    @property
    def is_zero(self) -> bool:
        """All-zero: PROTOCOL.md says such an entry is removed, not stored."""
        return self == ZERO_INSTRUMENT_LIMITS


ZERO_USER_LIMITS: Final = UserLimits()
ZERO_INSTRUMENT_LIMITS: Final = InstrumentLimits()


def amount_unit(tick_size: float) -> int:
    """Amount units (10**-12) per tick; rounded *up* if the tick is finer than that,
    so amounts are never under-counted."""
    exact = Decimal(repr(float(tick_size))) * AMOUNT_SCALE
    unit = int(exact)
    if unit != exact:
        unit += 1
    return max(unit, 1)


def amount_limit_units(limit: float) -> int:
    """A limit in price units as amount units (exact for the decimal the user wrote)."""
    return int(Decimal(repr(float(limit))) * AMOUNT_SCALE)


def format_amount(units: int) -> str:
    """Amount units back as a short decimal for error texts."""
    text = format(Decimal(units) / AMOUNT_SCALE, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def validate_rolling(name: str, value: RollingLimit, max_window_s: int) -> str | None:
    if value.limit < 0 or value.window_s < 0:
        return f"{name} must not be negative"
    if value.window_s > max_window_s:
        return f"{name}.window_in_seconds must be at most {max_window_s}"
    return None


def validate_user_limits(limits: UserLimits, max_window_s: int) -> str | None:
    """Why ``limits`` cannot be stored, or None."""
    if limits.max_outstanding_quantity < 0:
        return "max_outstanding_quantity must not be negative"
    return validate_rolling(
        "message_rate_rolling_limit", limits.message_rate_rolling_limit, max_window_s
    )


def validate_instrument_limits(limits: InstrumentLimits, max_window_s: int) -> str | None:
    """Why ``limits`` cannot be stored, or None."""
    if limits.max_outstanding_quantity < 0:
        return "max_outstanding_quantity must not be negative"
    amount = limits.max_outstanding_amount
    if not math.isfinite(amount):
        return "max_outstanding_amount must be a finite number"
    if amount < 0:
        return "max_outstanding_amount must not be negative"
    return validate_rolling(
        "order_quantity_rolling_limit", limits.order_quantity_rolling_limit, max_window_s
    ) or validate_rolling(
        "order_amount_rolling_limit", limits.order_amount_rolling_limit, max_window_s
    )
