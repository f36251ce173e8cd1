"""Risk limits: the two layers of limits, the windows and exposures, check-then-record.

This is the pure core of the Risk Gateway's limit checking (PROTOCOL.md,
"Limit semantics"). It knows nothing of sockets, asyncio or protobuf: requests
arrive as plain numbers, outcomes leave as values (a :class:`Ticket` for a
request that passed and was recorded, or the error text of the limit it broke).

What it keeps, per user:

* both **layers** of limits (``own``, set by the participant; ``admin``, set by
  an admin naming the user). A request must pass every limit of both;
* the **windows**: one :class:`~services.risk_gateway.windows.Series` for the
  user's messages and, per instrument symbol, one for order quantities and one
  for order amounts. They record from the start (limit or not);
* the **exposures**: outstanding quantity and amount of the user's resting
  orders per order book, maintained from the Order Book's event stream by the
  order table, plus *reservations* for requests in flight (forwarded, not yet
  reflected in that stream), so pipelined requests cannot jointly overshoot.

Amounts are integers in units of ``10**-12`` of a price unit (:data:`AMOUNT_SCALE`):
``price_ticks * quantity * amount_unit(tick_size)``. Integer arithmetic makes
"exactly at the limit" exact (0.1 * 3 is not 0.3 in floating point) and lets a
symbol keep its windows when it is re-created with another tick size.

Outcomes are values: a refused request gets a string naming the limit exactly
as spelled in the messages (``max_outstanding_quantity``, ...), and nothing is
recorded. A passed request is recorded at once (check, then record) and the
caller gets a :class:`Ticket` to :meth:`RiskEngine.release` its reservations
when the Order Book's events have caught up, or to :meth:`RiskEngine.refund`
its window entries when the Order Book refused it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from services.risk_gateway.windows import Series, View

__all__ = [
    "ADMIN",
    "AMOUNT_SCALE",
    "LAYERS",
    "OWN",
    "Exposure",
    "InstrumentLimits",
    "RiskEngine",
    "RollingLimit",
    "Ticket",
    "UserLimits",
    "amount_limit_units",
    "amount_unit",
    "format_amount",
]

OWN: Final = "own"
ADMIN: Final = "admin"
LAYERS: Final = (OWN, ADMIN)

#: Amounts are integers in 10**-12 price units.
AMOUNT_SCALE: Final = 10**12

JournalHook = Callable[[Hashable, float, int], None]
"""Called with (series key, time, value) for every record (and, negated, un-record)."""


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


# ------------------------------------------------------------------------ state


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


# A check: (series, view, limit, layer). Limit names are fixed per check list.
WindowCheck = tuple[Series, View, int, str]


class UserState:
    """Everything the engine keeps for one username."""

    __slots__ = (
        "accounts",
        "exposures",
        "max_outstanding",
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
        self.max_outstanding: tuple[tuple[int, str], ...] = ()
        self.rate_checks: tuple[WindowCheck, ...] = ()
        self.accounts: dict[str, Account] = {}
        self.exposures: dict[int, Exposure] = {}


class Account:
    """One user's windows and effective limits in one instrument symbol."""

    __slots__ = (
        "amount_checks",
        "amounts",
        "max_amount",
        "max_outstanding",
        "quantities",
        "quantity_checks",
        "symbol",
    )

    def __init__(self, user: str, symbol: str, keep_s: float) -> None:
        self.symbol = symbol
        self.quantities = Series(("q", user, symbol), keep_s)
        self.amounts = Series(("a", user, symbol), keep_s)
        self.max_outstanding: tuple[tuple[int, str], ...] = ()
        self.max_amount: tuple[tuple[int, str], ...] = ()
        self.quantity_checks: tuple[WindowCheck, ...] = ()
        self.amount_checks: tuple[WindowCheck, ...] = ()


@dataclass(slots=True)
class Ticket:
    """A request that passed its checks and was recorded.

    ``entries`` are the window records (series, sequence number, value) that
    :meth:`RiskEngine.refund` takes out again; the reservations are released by
    :meth:`RiskEngine.release` (both are idempotent).
    """

    user: UserState
    time: float
    message_seq: int
    entries: list[tuple[Series, int, int]] = field(default_factory=list)
    exposure: Exposure | None = None
    reserved_quantity: int = 0
    reserved_amount: int = 0
    refunded: bool = False


# ------------------------------------------------------------------------ engine


class RiskEngine:
    """Limits, windows and exposures of every user (see the module docstring).

    ``keep_s`` is how much window history is kept even without a limit in force
    (a longer window in force keeps its own length); ``max_window_s`` bounds
    the windows that may be configured. ``journal`` sees every window record.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        keep_s: float = 3600.0,
        max_window_s: int = 86400,
        journal: JournalHook | None = None,
    ) -> None:
        self._now = clock
        self.keep_s = float(keep_s)
        self.max_window_s = int(max_window_s)
        self.journal = journal
        self._users: dict[str, UserState] = {}
        self.user_limits: dict[str, dict[str, UserLimits]] = {OWN: {}, ADMIN: {}}
        """layer -> username -> limits (zero limits are not stored)."""
        self.instrument_limits: dict[str, dict[str, dict[str, InstrumentLimits]]] = {
            OWN: {},
            ADMIN: {},
        }
        """layer -> username -> symbol -> limits (all-zero entries are removed)."""

    # ------------------------------------------------------------------ users

    def user(self, name: str) -> UserState:
        state = self._users.get(name)
        if state is None:
            state = self._users[name] = UserState(name, self.keep_s)
        return state

    def users(self) -> Iterator[UserState]:
        return iter(list(self._users.values()))

    def account(self, user: UserState, symbol: str) -> Account:
        account = user.accounts.get(symbol)
        if account is None:
            account = user.accounts[symbol] = Account(user.name, symbol, self.keep_s)
            self._refresh_account(user.name, account)
        return account

    def exposure(self, username: str, order_book_id: int) -> Exposure:
        """The exposure object the order table updates for this user's orders in a book."""
        user = self.user(username)
        exposure = user.exposures.get(order_book_id)
        if exposure is None:
            exposure = user.exposures[order_book_id] = Exposure(user)
        return exposure

    def reset_exposures(self) -> None:
        """Forget resting orders (the order table is rebuilt from a fresh snapshot).

        Reservations of requests still in flight are kept.
        """
        for user in self._users.values():
            user.outstanding = 0
            for exposure in user.exposures.values():
                exposure.quantity = 0
                exposure.amount = 0

    # ------------------------------------------------------------------ limits

    def get_user_limits(self, username: str, layer: str) -> UserLimits:
        return self.user_limits[layer].get(username, ZERO_USER_LIMITS)

    def get_instrument_limits(self, username: str, layer: str) -> dict[str, InstrumentLimits]:
        return dict(self.instrument_limits[layer].get(username, {}))

    def set_user_limits(self, username: str, layer: str, limits: UserLimits) -> None:
        """Replace a layer of a user's account-wide limits (validated by the caller)."""
        table = self.user_limits[layer]
        if limits == ZERO_USER_LIMITS:
            table.pop(username, None)
        else:
            table[username] = limits
        self._refresh_user(self.user(username))

    def set_instrument_limits(
        self, username: str, layer: str, symbol: str, limits: InstrumentLimits
    ) -> None:
        """Replace one instrument entry of a layer; all-zero removes it."""
        table = self.instrument_limits[layer]
        entries = table.setdefault(username, {})
        if limits.is_zero:
            entries.pop(symbol, None)
            if not entries:
                del table[username]
        else:
            entries[symbol] = limits
        user = self.user(username)
        account = user.accounts.get(symbol)
        if account is None:
            self.account(user, symbol)
        else:
            self._refresh_account(username, account)

    def _layers(self, username: str) -> list[tuple[str, UserLimits]]:
        return [(layer, self.get_user_limits(username, layer)) for layer in LAYERS]

    def _refresh_user(self, user: UserState) -> None:
        now = self._now()
        layers = self._layers(user.name)
        user.max_outstanding = tuple(
            (limits.max_outstanding_quantity, layer)
            for layer, limits in layers
            if limits.max_outstanding_quantity > 0
        )
        user.rate_checks = _window_checks(
            user.messages, [(layer, lim.message_rate_rolling_limit) for layer, lim in layers], now
        )

    def _refresh_account(self, username: str, account: Account) -> None:
        now = self._now()
        layers = [
            (layer, self.instrument_limits[layer].get(username, {}).get(account.symbol))
            for layer in LAYERS
        ]
        present = [(layer, lim) for layer, lim in layers if lim is not None]
        account.max_outstanding = tuple(
            (lim.max_outstanding_quantity, layer)
            for layer, lim in present
            if lim.max_outstanding_quantity > 0
        )
        account.max_amount = tuple(
            (amount_limit_units(lim.max_outstanding_amount), layer)
            for layer, lim in present
            if lim.max_outstanding_amount > 0
        )
        account.quantity_checks = _window_checks(
            account.quantities,
            [(layer, lim.order_quantity_rolling_limit) for layer, lim in present],
            now,
        )
        # Amount windows compare amount units: scale the limits once, here.
        account.amount_checks = _window_checks(
            account.amounts,
            [
                (layer, _scaled(lim.order_amount_rolling_limit, AMOUNT_SCALE))
                for layer, lim in present
            ],
            now,
        )

    # ------------------------------------------------------------------ checks

    def check_message(self, username: str) -> Ticket | str:
        """A request that counts only as a message (cancel, or a client_order_id resend)."""
        now = self._now()
        user = self._users.get(username) or self.user(username)
        for series, view, limit, layer in user.rate_checks:
            if series.total(view, now) >= limit:
                return _rate_breach(limit, view.window_s, layer)
        return Ticket(user, now, self._record(user.messages, now, 1))

    def check_insert(
        self, username: str, symbol: str, order_book_id: int, quantity: int, unit_price: int
    ) -> Ticket | str:
        """Check a new order of ``quantity`` lots at ``unit_price`` amount units per lot.

        Every limit of both layers; on success the message, quantity and amount
        are recorded and the order's quantity and amount are reserved in the
        book's exposure until :meth:`release`.
        """
        now = self._now()
        user = self._users.get(username) or self.user(username)
        for series, view, limit, layer in user.rate_checks:
            if series.total(view, now) >= limit:
                return _rate_breach(limit, view.window_s, layer)
        outstanding = user.outstanding + user.reserved
        for limit, layer in user.max_outstanding:
            if outstanding + quantity > limit:
                return _outstanding_breach("", limit, layer, outstanding, quantity)
        account = user.accounts.get(symbol) or self.account(user, symbol)
        exposure = user.exposures.get(order_book_id) or self.exposure(username, order_book_id)
        amount = quantity * unit_price
        if account.max_outstanding:
            held = exposure.quantity + exposure.reserved_quantity
            for limit, layer in account.max_outstanding:
                if held + quantity > limit:
                    return _outstanding_breach(symbol, limit, layer, held, quantity)
        if account.max_amount:
            held = exposure.amount + exposure.reserved_amount
            for limit, layer in account.max_amount:
                if held + amount > limit:
                    return _amount_breach(symbol, limit, layer, held, amount)
        for series, view, limit, layer in account.quantity_checks:
            total = series.total(view, now)
            if total + quantity > limit:
                return _window_breach(
                    "order_quantity_rolling_limit", symbol, view, limit, layer, total, quantity
                )
        for series, view, limit, layer in account.amount_checks:
            total = series.total(view, now)
            if total + amount > limit:
                return _window_breach(
                    "order_amount_rolling_limit", symbol, view, limit, layer, total, amount
                )
        record = self._record
        ticket = Ticket(
            user,
            now,
            record(user.messages, now, 1),
            [
                (account.quantities, record(account.quantities, now, quantity), quantity),
                (account.amounts, record(account.amounts, now, amount), amount),
            ],
            exposure,
            quantity,
            amount,
        )
        user.reserved += quantity
        exposure.reserved_quantity += quantity
        exposure.reserved_amount += amount
        return ticket

    def check_amend(
        self,
        username: str,
        symbol: str,
        exposure: Exposure,
        old_quantity: int,
        old_unit_price: int,
        new_quantity: int,
        new_unit_price: int,
    ) -> Ticket | str:
        """Check an amend of a resting order to ``new_quantity`` at ``new_unit_price``.

        Outstanding limits see the new quantity in place of the old one and only
        bind when the amend increases the figure (a pure reduction always reduces
        risk). An amend that changes the price or raises the quantity counts as a
        new order of its new quantity in the rolling windows; a reduction counts
        only as a message.
        """
        now = self._now()
        user = self._users.get(username) or self.user(username)
        for series, view, limit, layer in user.rate_checks:
            if series.total(view, now) >= limit:
                return _rate_breach(limit, view.window_s, layer)
        account = user.accounts.get(symbol) or self.account(user, symbol)
        extra = new_quantity - old_quantity
        new_amount = new_quantity * new_unit_price
        extra_amount = new_amount - old_quantity * old_unit_price
        if extra > 0:
            outstanding = user.outstanding + user.reserved
            for limit, layer in user.max_outstanding:
                if outstanding + extra > limit:
                    return _outstanding_breach(
                        "", limit, layer, outstanding - old_quantity, new_quantity
                    )
            held = exposure.quantity + exposure.reserved_quantity
            for limit, layer in account.max_outstanding:
                if held + extra > limit:
                    return _outstanding_breach(
                        symbol, limit, layer, held - old_quantity, new_quantity
                    )
        if extra_amount > 0:
            held = exposure.amount + exposure.reserved_amount
            for limit, layer in account.max_amount:
                if held + extra_amount > limit:
                    return _amount_breach(
                        symbol, limit, layer, held - old_quantity * old_unit_price, new_amount
                    )
        counts_as_new = new_unit_price != old_unit_price or extra > 0
        if counts_as_new:
            for series, view, limit, layer in account.quantity_checks:
                total = series.total(view, now)
                if total + new_quantity > limit:
                    return _window_breach(
                        "order_quantity_rolling_limit",
                        symbol,
                        view,
                        limit,
                        layer,
                        total,
                        new_quantity,
                    )
            for series, view, limit, layer in account.amount_checks:
                total = series.total(view, now)
                if total + new_amount > limit:
                    return _window_breach(
                        "order_amount_rolling_limit", symbol, view, limit, layer, total, new_amount
                    )
        ticket = Ticket(user, now, self._record(user.messages, now, 1), [], exposure)
        if counts_as_new:
            ticket.entries.append(
                (
                    account.quantities,
                    self._record(account.quantities, now, new_quantity),
                    new_quantity,
                )
            )
            ticket.entries.append(
                (account.amounts, self._record(account.amounts, now, new_amount), new_amount)
            )
        if extra > 0:
            ticket.reserved_quantity = extra
            user.reserved += extra
            exposure.reserved_quantity += extra
        if extra_amount > 0:
            ticket.reserved_amount = extra_amount
            exposure.reserved_amount += extra_amount
        return ticket

    def _record(self, series: Series, now: float, value: int) -> int:
        seq = series.add(now, value)
        journal = self.journal
        if journal is not None:
            journal(series.key, now, value)
        return seq

    # ------------------------------------------------------------------ afterwards

    def release(self, ticket: Ticket) -> None:
        """Drop the ticket's reservations (its effect is now in the exposures, or
        it never happened)."""
        quantity = ticket.reserved_quantity
        amount = ticket.reserved_amount
        if quantity or amount:
            ticket.user.reserved -= quantity
            exposure = ticket.exposure
            assert exposure is not None
            exposure.reserved_quantity -= quantity
            exposure.reserved_amount -= amount
            ticket.reserved_quantity = 0
            ticket.reserved_amount = 0

    def refund(self, ticket: Ticket, *, message: bool) -> None:
        """Take the ticket's order quantity and amount out of the windows again (the
        Order Book refused it), and its message too if nothing was forwarded."""
        self.release(ticket)
        if ticket.refunded:
            return
        ticket.refunded = True
        journal = self.journal
        for series, seq, value in ticket.entries:
            series.sub(seq, value)
            if journal is not None:
                journal(series.key, ticket.time, -value)
        if message:
            ticket.user.messages.sub(ticket.message_seq, 1)
            if journal is not None:
                journal(ticket.user.messages.key, ticket.time, -1)

    # ------------------------------------------------------------------ persistence

    def series(self) -> Iterator[Series]:
        """Every series (for snapshots)."""
        for user in list(self._users.values()):
            yield user.messages
            for account in list(user.accounts.values()):
                yield account.quantities
                yield account.amounts

    def series_for(self, key: Hashable) -> Series | None:
        """The series a journal key names (created on demand); None if malformed."""
        if not isinstance(key, tuple) or not key or not all(isinstance(k, str) for k in key):
            return None
        if key[0] == "m" and len(key) == 2:
            return self.user(key[1]).messages
        if key[0] in ("q", "a") and len(key) == 3:
            account = self.account(self.user(key[1]), key[2])
            return account.quantities if key[0] == "q" else account.amounts
        return None

    def trim(self) -> None:
        """Drop history older than what is kept (call now and then)."""
        now = self._now()
        for series in self.series():
            series.trim(now)


def _scaled(limit: RollingLimit, factor: int) -> RollingLimit:
    return RollingLimit(limit.limit * factor, limit.window_s)


def _window_checks(
    series: Series, limits: list[tuple[str, RollingLimit]], now: float
) -> tuple[WindowCheck, ...]:
    active = [(layer, lim) for layer, lim in limits if lim.active]
    views = series.set_windows([lim.window_s for _, lim in active], now)
    return tuple((series, views[float(lim.window_s)], lim.limit, layer) for layer, lim in active)


# ------------------------------------------------------------------------ error texts


def _rate_breach(limit: int, window_s: float, layer: str) -> str:
    return (
        f"risk limit breached: message_rate_rolling_limit ({layer} limit: at most {limit} "
        f"messages in {window_s:g} s)"
    )


def _where(symbol: str) -> str:
    return f" for {symbol}" if symbol else ""


def _outstanding_breach(symbol: str, limit: int, layer: str, held: int, quantity: int) -> str:
    return (
        f"risk limit breached: max_outstanding_quantity{_where(symbol)} ({layer} limit {limit}; "
        f"outstanding {held} + order {quantity})"
    )


def _amount_breach(symbol: str, limit: int, layer: str, held: int, amount: int) -> str:
    return (
        f"risk limit breached: max_outstanding_amount{_where(symbol)} ({layer} limit "
        f"{format_amount(limit)}; outstanding {format_amount(held)} + order {format_amount(amount)})"
    )


def _window_breach(
    name: str, symbol: str, view: View, limit: int, layer: str, total: int, value: int
) -> str:
    if name == "order_amount_rolling_limit":
        shown = f"{format_amount(limit)}; {format_amount(total)} + order {format_amount(value)}"
    else:
        shown = f"{limit}; {total} + order {value}"
    return (
        f"risk limit breached: {name}{_where(symbol)} ({layer} limit {shown} "
        f"within {view.window_s:g} s)"
    )
