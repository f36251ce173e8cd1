"""Risk limits: the two layers of limits, the windows and exposures, check-then-record.

This is the pure core of the Risk Gateway's limit checking (PROTOCOL.md,
"Limit semantics"). It knows nothing of sockets, asyncio or protobuf: requests
arrive as plain numbers, outcomes leave as values (a :class:`Ticket` for a
request that passed and was recorded, or the error text of the limit it broke).

What it keeps, per user:

* both **layers** of limits (``own``, set by the participant; ``admin``, set by
  an admin naming the user). A request must pass every limit of both;
* the **windows**: one :class:`~services.risk_gateway.windows.Series` for the
  user's messages and, per instrument symbol, one for orders (quantity and
  amount of each). They record from the start (limit or not);
* the **exposures**: outstanding quantity and amount of the user's resting
  orders per order book, maintained from the Order Book's event stream by the
  order table, plus *reservations* for requests in flight (forwarded, not yet
  reflected in that stream), so pipelined requests cannot jointly overshoot.

Limit values and exact (fixed-point) amounts live in :mod:`.limit_values`, the
per-user state classes in :mod:`.accounts`; both are re-exported here.

Outcomes are values: a refused request gets a string naming the limit exactly
as spelled in the messages (``max_outstanding_quantity``, ...), and nothing is
recorded. A passed request is recorded at once (check, then record) and the
caller gets a :class:`Ticket` to :meth:`RiskEngine.release` its reservations
when the Order Book's events have caught up, or to :meth:`RiskEngine.refund`
its window entries when the Order Book refused it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Final

from services.risk_gateway.accounts import UNLIMITED, Account, Exposure, Ticket, UserState
from services.risk_gateway.limit_values import (
    ADMIN,
    AMOUNT_SCALE,
    LAYERS,
    OWN,
    ZERO_USER_LIMITS,
    InstrumentLimits,
    RollingLimit,
    UserLimits,
    amount_limit_units,
    amount_unit,
    format_amount,
    validate_instrument_limits,
    validate_user_limits,
)
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
    "validate_instrument_limits",
    "validate_user_limits",
]

_UNLIMITED: Final = UNLIMITED

JournalHook = Callable[[Hashable, float, int, int], None]
"""Called with (series key, time, v, w) for every record (and, negated, un-record)."""


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

    def _refresh_user(self, user: UserState) -> None:
        layers = [(layer, self.get_user_limits(user.name, layer)) for layer in LAYERS]
        user.max_outstanding, user.max_outstanding_layer = _tightest(
            (limits.max_outstanding_quantity, layer) for layer, limits in layers
        )
        by_window: dict[int, tuple[int, str]] = {}
        for layer, lim in layers:
            rate = lim.message_rate_rolling_limit
            if rate.active and rate.limit < by_window.get(rate.window_s, (_UNLIMITED, ""))[0]:
                by_window[rate.window_s] = (rate.limit, layer)
        views = user.messages.set_windows(list(by_window), self._now())
        user.rate_checks = tuple(
            (user.messages, views[float(window)], limit, layer)
            for window, (limit, layer) in sorted(by_window.items())
        )

    def _refresh_account(self, username: str, account: Account) -> None:
        present = [
            (layer, lim)
            for layer in LAYERS
            if (lim := self.instrument_limits[layer].get(username, {}).get(account.symbol))
        ]
        account.max_outstanding, account.max_outstanding_layer = _tightest(
            (lim.max_outstanding_quantity, layer) for layer, lim in present
        )
        account.max_amount, account.max_amount_layer = _tightest(
            (amount_limit_units(lim.max_outstanding_amount), layer) for layer, lim in present
        )
        # One check per window length: the tightest quantity and amount limits of
        # that length (either layer); amounts scaled to amount units once, here.
        by_window: dict[int, list[Any]] = {}
        for layer, lim in present:
            for is_amount, rolling in (
                (False, lim.order_quantity_rolling_limit),
                (True, lim.order_amount_rolling_limit),
            ):
                if not rolling.active:
                    continue
                limit = rolling.limit * AMOUNT_SCALE if is_amount else rolling.limit
                entry = by_window.setdefault(rolling.window_s, [_UNLIMITED, "", _UNLIMITED, ""])
                slot = 2 if is_amount else 0
                if limit < entry[slot]:
                    entry[slot : slot + 2] = [limit, layer]
        series = account.orders
        views = series.set_windows(list(by_window), self._now())
        account.order_checks = tuple(
            (series, views[float(window)], q, q_layer, a, a_layer)
            for window, (q, q_layer, a, a_layer) in sorted(by_window.items())
        )

    # ------------------------------------------------------------------ checks

    def check_message(self, username: str) -> Ticket | str:
        """A request that counts only as a message (cancel, or a client_order_id resend)."""
        now = self._now()
        user = self._users.get(username) or self.user(username)
        for series, view, limit, layer in user.rate_checks:
            if now >= view.expires:
                series.expire(view, now)
            if view.total >= limit:
                return _rate_breach(limit, view.window_s, layer)
        seq = user.messages.add(now, 1)
        if self.journal is not None:
            self.journal(user.messages.key, now, 1, 0)
        return Ticket(user, now, seq)

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
            if now >= view.expires:
                series.expire(view, now)
            if view.total >= limit:
                return _rate_breach(limit, view.window_s, layer)
        # Each outstanding limit is the tightest of both layers (_UNLIMITED if none).
        held = user.outstanding + user.reserved
        if held + quantity > user.max_outstanding:
            return _outstanding_breach(
                "", user.max_outstanding, user.max_outstanding_layer, held, quantity
            )
        account = user.accounts.get(symbol) or self.account(user, symbol)
        exposure = user.exposures.get(order_book_id) or self.exposure(username, order_book_id)
        held = exposure.quantity + exposure.reserved_quantity
        if held + quantity > account.max_outstanding:
            return _outstanding_breach(
                symbol, account.max_outstanding, account.max_outstanding_layer, held, quantity
            )
        amount = quantity * unit_price
        held = exposure.amount + exposure.reserved_amount
        if held + amount > account.max_amount:
            return _amount_breach(
                symbol, account.max_amount, account.max_amount_layer, held, amount
            )
        for series, view, q_limit, q_layer, a_limit, a_layer in account.order_checks:
            if now >= view.expires:
                series.expire(view, now)
            if view.total + quantity > q_limit:
                return _window_breach(symbol, view, False, q_limit, q_layer, view.total, quantity)
            if view.total2 + amount > a_limit:
                return _window_breach(symbol, view, True, a_limit, a_layer, view.total2, amount)
        orders = account.orders
        ticket = Ticket(
            user,
            now,
            user.messages.add(now, 1),
            orders,
            orders.add(now, quantity, amount),
            quantity,
            amount,
            exposure,
            quantity,
            amount,
        )
        journal = self.journal
        if journal is not None:
            journal(user.messages.key, now, 1, 0)
            journal(orders.key, now, quantity, amount)
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
            if now >= view.expires:
                series.expire(view, now)
            if view.total >= limit:
                return _rate_breach(limit, view.window_s, layer)
        account = user.accounts.get(symbol) or self.account(user, symbol)
        extra = new_quantity - old_quantity
        new_amount = new_quantity * new_unit_price
        old_amount = old_quantity * old_unit_price
        extra_amount = new_amount - old_amount
        if extra > 0:
            held = user.outstanding + user.reserved
            if held + extra > user.max_outstanding:
                return _outstanding_breach(
                    "",
                    user.max_outstanding,
                    user.max_outstanding_layer,
                    held - old_quantity,
                    new_quantity,
                )
            held = exposure.quantity + exposure.reserved_quantity
            if held + extra > account.max_outstanding:
                return _outstanding_breach(
                    symbol,
                    account.max_outstanding,
                    account.max_outstanding_layer,
                    held - old_quantity,
                    new_quantity,
                )
        if extra_amount > 0:
            held = exposure.amount + exposure.reserved_amount
            if held + extra_amount > account.max_amount:
                return _amount_breach(
                    symbol,
                    account.max_amount,
                    account.max_amount_layer,
                    held - old_amount,
                    new_amount,
                )
        counts_as_new = new_unit_price != old_unit_price or extra > 0
        if counts_as_new:
            for series, view, q_limit, q_layer, a_limit, a_layer in account.order_checks:
                if now >= view.expires:
                    series.expire(view, now)
                if view.total + new_quantity > q_limit:
                    return _window_breach(
                        symbol, view, False, q_limit, q_layer, view.total, new_quantity
                    )
                if view.total2 + new_amount > a_limit:
                    return _window_breach(
                        symbol, view, True, a_limit, a_layer, view.total2, new_amount
                    )
        journal = self.journal
        ticket = Ticket(user, now, user.messages.add(now, 1), exposure=exposure)
        if journal is not None:
            journal(user.messages.key, now, 1, 0)
        if counts_as_new:
            orders = account.orders
            ticket.orders = orders
            ticket.order_seq = orders.add(now, new_quantity, new_amount)
            ticket.quantity = new_quantity
            ticket.amount = new_amount
            if journal is not None:
                journal(orders.key, now, new_quantity, new_amount)
        if extra > 0:
            ticket.reserved_quantity = extra
            user.reserved += extra
            exposure.reserved_quantity += extra
        if extra_amount > 0:
            ticket.reserved_amount = extra_amount
            exposure.reserved_amount += extra_amount
        return ticket

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
        orders = ticket.orders
        if orders is not None:
            orders.sub(ticket.order_seq, ticket.quantity, ticket.amount)
            if journal is not None:
                journal(orders.key, ticket.time, -ticket.quantity, -ticket.amount)
        if message:
            messages = ticket.user.messages
            messages.sub(ticket.message_seq, 1)
            if journal is not None:
                journal(messages.key, ticket.time, -1, 0)

    # ------------------------------------------------------------------ persistence

    def series(self) -> Iterator[Series]:
        """Every series (for snapshots)."""
        for user in list(self._users.values()):
            yield user.messages
            for account in list(user.accounts.values()):
                yield account.orders

    def series_for(self, key: Hashable) -> Series | None:
        """The series a journal key names (created on demand); None if malformed."""
        if not isinstance(key, tuple) or not key or not all(isinstance(k, str) for k in key):
            return None
        if key[0] == "m" and len(key) == 2:
            return self.user(key[1]).messages
        if key[0] == "o" and len(key) == 3:
            return self.account(self.user(key[1]), key[2]).orders
        return None

    def trim(self) -> None:
        """Drop history older than what is kept (call now and then)."""
        now = self._now()
        for series in self.series():
            series.trim(now)


def _tightest(limits: Iterable[tuple[int, str]]) -> tuple[int, str]:
    """The smallest positive limit and its layer; (_UNLIMITED, "") if none is set."""
    best = (_UNLIMITED, "")
    for limit, layer in limits:
        if 0 < limit < best[0]:
            best = (limit, layer)
    return best


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
    symbol: str, view: View, is_amount: bool, limit: int, layer: str, total: int, value: int
) -> str:
    if is_amount:
        name = "order_amount_rolling_limit"
        shown = f"{format_amount(limit)}; {format_amount(total)} + order {format_amount(value)}"
    else:
        name = "order_quantity_rolling_limit"
        shown = f"{limit}; {total} + order {value}"
    return (
        f"risk limit breached: {name}{_where(symbol)} ({layer} limit {shown} "
        f"within {view.window_s:g} s)"
    )
