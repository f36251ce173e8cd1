"""Risk limits at the Risk Gateway (PROTOCOL.md section 5, "risk_limits" and "Limit semantics").

Instrument limits are per user and instrument, so each test uses a fresh
instrument and needs no clean-up; user-level limits (outstanding quantity over
all instruments, message rate) are set on the fourth participant only and both
of its layers are reset after each test.  Windows are 60 s where a test only
needs them to stay full, and 1 s only where time passing is the rule under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from system_tests.harness.checks import BUY, IOC, SELL, eq, ok, refused
from system_tests.harness.conn import Conn
from system_tests.harness.world import World, amend, cancel, insert
from system_tests.pb import risk_limits_pb2 as rl

RATE_USER = 3
"""Index of the participant whose user-level limits these tests change."""


def window(limit: int, seconds: int) -> rl.RollingWindowLimit:
    return rl.RollingWindowLimit(limit=limit, window_in_seconds=seconds)


def ilimits(**fields: Any) -> rl.InstrumentRiskLimits:
    return rl.InstrumentRiskLimits(**fields)


def _window_value(w: rl.RollingWindowLimit) -> tuple[int, int] | None:
    """A window as (limit, seconds), or None for "no limit" (unset, or a 0 in it)."""
    return (w.limit, w.window_in_seconds) if w.limit and w.window_in_seconds else None


def meaning(limits: Any) -> tuple[Any, ...] | None:
    """What a limits message means (0 or an unset window is "no limit"), for comparisons."""
    if limits is None:
        return None
    if isinstance(limits, rl.UserRiskLimits):
        return (limits.max_outstanding_quantity, _window_value(limits.message_rate_rolling_limit))
    return (
        limits.max_outstanding_quantity,
        limits.max_outstanding_amount,
        _window_value(limits.order_quantity_rolling_limit),
        _window_value(limits.order_amount_rolling_limit),
    )


async def set_instrument(
    conn: Conn, symbol: str, limits: rl.InstrumentRiskLimits, user: str = ""
) -> Any:
    return await conn.request(
        rl.SetInstrumentRiskLimitsRequest(
            instrument_symbol=symbol, instrument_risk_limits=limits, username=user
        )
    )


async def set_user(conn: Conn, limits: rl.UserRiskLimits, user: str = "") -> Any:
    return await conn.request(rl.SetUserRiskLimitsRequest(user_risk_limits=limits, username=user))


@pytest_asyncio.fixture
async def rate_user(world: World) -> AsyncIterator[tuple[str, Conn, Conn]]:
    """(name, gateway connection, admin gateway connection) of the user-level test user; both its layers are reset afterwards."""
    user = world.user(RATE_USER)
    conn = await world.gateway(RATE_USER)
    admin = await world.admin_conn(world.target.gateway)
    try:
        yield user, conn, admin
    finally:
        with contextlib.suppress(Exception):
            await set_user(conn, rl.UserRiskLimits())
            await set_user(admin, rl.UserRiskLimits(), user)


async def test_get_returns_the_own_layer_and_the_admin_layer(world: World) -> None:
    """Get returns the own layer in field 3 and the admin layer in field 4; a participant writes its own layer, an admin the admin layer of the user it names."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    admin = await world.admin_conn(world.target.gateway)
    own, ceiling = (
        ilimits(max_outstanding_quantity=100),
        ilimits(max_outstanding_quantity=50, order_quantity_rolling_limit=window(500, 60)),
    )
    ok(await set_instrument(alice, instrument.symbol, own), "alice sets her own layer")
    ok(
        await set_instrument(admin, instrument.symbol, ceiling, world.user(0)),
        "admin sets alice's admin layer",
    )
    for name, conn, user in (("alice", alice, ""), ("admin", admin, world.user(0))):
        got = ok(
            await conn.request(rl.GetInstrumentRiskLimitsRequest(username=user)),
            f"{name} reads alice's instrument limits",
        )
        eq(
            meaning(got.risk_limits_by_instrument.get(instrument.symbol)),
            meaning(own),
            f"{name}'s read of the own layer (field 3)",
        )
        eq(
            meaning(got.admin_risk_limits_by_instrument.get(instrument.symbol)),
            meaning(ceiling),
            f"{name}'s read of the admin layer (field 4)",
        )


async def test_user_limits_round_trip_both_layers(
    world: World, rate_user: tuple[str, Conn, Conn]
) -> None:
    """User limits: the participant's Set writes its own layer, the admin's Set (naming the user) the admin layer; Get shows both."""
    user, conn, admin = rate_user
    own = rl.UserRiskLimits(
        max_outstanding_quantity=1000, message_rate_rolling_limit=window(500, 60)
    )
    ceiling = rl.UserRiskLimits(max_outstanding_quantity=2000)
    ok(await set_user(conn, own), "own layer")
    ok(await set_user(admin, ceiling, user), "admin layer")
    got = ok(await conn.request(rl.GetUserRiskLimitsRequest()), "get")
    eq(
        (meaning(got.user_risk_limits), meaning(got.admin_user_risk_limits)),
        (meaning(own), meaning(ceiling)),
        "(own layer, admin layer)",
    )


async def test_participant_may_name_only_itself(world: World) -> None:
    """A participant may name only itself: reading or writing another user's limits is an error and changes nothing."""
    alice = await world.gateway(0)
    other = world.user(1)
    refused(
        await alice.request(rl.GetUserRiskLimitsRequest(username=other)),
        "alice reads bob's user limits",
    )
    refused(
        await alice.request(rl.GetInstrumentRiskLimitsRequest(username=other)),
        "alice reads bob's instrument limits",
    )
    refused(
        await set_user(alice, rl.UserRiskLimits(max_outstanding_quantity=1), other),
        "alice writes bob's user limits",
    )
    instrument = await world.create_instrument()
    refused(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=1), other),
        "alice writes bob's instrument limits",
    )
    bob = await world.gateway(1)
    ok(
        await insert(bob, instrument.symbol, BUY, 10.0, 5),
        "bob's insert (no limit was set for him)",
    )


async def test_max_outstanding_quantity_counts_both_sides(world: World) -> None:
    """outstanding quantity = remaining quantities of the user's resting orders (both sides); an insert is refused if outstanding + its quantity would exceed the limit, with an error naming max_outstanding_quantity, and nothing is forwarded."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=10)),
        "set limit 10",
    )
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 6), "sell 6")
    refused(
        await insert(alice, instrument.symbol, BUY, 9.00, 5),
        "buy 5 (6 + 5 > 10)",
        contains="max_outstanding_quantity",
    )
    ok(await insert(alice, instrument.symbol, BUY, 9.00, 4), "buy 4 (6 + 4 = 10)")
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 1),
        "sell 1 (10 + 1 > 10)",
        contains="max_outstanding_quantity",
    )
    sweep = ok(
        await insert(bob, instrument.symbol, BUY, 10.00, 20, IOC), "IOC against alice's asks"
    )
    eq(sweep.traded_quantity, 6, "alice's asks (refused inserts forwarded nothing)")


async def test_fills_and_cancels_reduce_outstanding_quantity(world: World) -> None:
    """Fills and cancels reduce outstanding quantity as they happen."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=10)),
        "set limit 10",
    )
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "sell 10").order_id
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 1),
        "one more",
        contains="max_outstanding_quantity",
    )
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 4), "bob takes 4")
    await alice.expect(44, lambda m: m.order_id == order, "alice's fill")
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "sell 4 after a fill of 4")
    ok(await cancel(alice, instrument.symbol, order), "cancel the 6 left")
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 6), "sell 6 after cancelling 6")


async def test_amend_is_checked_with_its_new_quantity(world: World) -> None:
    """An amend is checked with its new quantity in place of the old."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=10)),
        "set limit 10",
    )
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 8), "sell 8").order_id
    ok(await amend(alice, instrument.symbol, order, 10.00, 10), "amend to 10 (10 <= 10)")
    refused(
        await amend(alice, instrument.symbol, order, 10.00, 11),
        "amend to 11",
        contains="max_outstanding_quantity",
    )
    sweep = ok(await insert(bob, instrument.symbol, BUY, 10.00, 20, IOC), "IOC")
    eq(sweep.traded_quantity, 10, "the order after a refused amend")


async def test_max_outstanding_amount(world: World) -> None:
    """outstanding amount = sum of price x remaining quantity over resting orders (per instrument, both sides), checked with price x quantity; the error names max_outstanding_amount."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_amount=1000.0)),
        "set amount limit 1000",
    )
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 50), "500")
    refused(
        await insert(alice, instrument.symbol, SELL, 12.00, 42),
        "504 more",
        contains="max_outstanding_amount",
    )
    ok(await insert(alice, instrument.symbol, SELL, 12.50, 40), "500 more (= 1000)")


async def test_order_quantity_rolling_limit(world: World) -> None:
    """order_quantity_rolling_limit: the sum of quantity of the user's orders accepted in that instrument in the window (a cancel does not give it back)."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "set 10 per 60 s",
    )
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 6), "6").order_id
    ok(await cancel(alice, instrument.symbol, order), "cancel it")
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 5),
        "5 more (6 + 5 > 10)",
        contains="order_quantity_rolling_limit",
    )
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "4 more (= 10)")


async def test_order_amount_rolling_limit(world: World) -> None:
    """order_amount_rolling_limit: the sum of price x quantity of the user's accepted orders in the instrument in the window."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_amount_rolling_limit=window(1000, 60))
        ),
        "set 1000 per 60 s",
    )
    order = ok(await insert(alice, instrument.symbol, BUY, 10.00, 50), "500").order_id
    ok(await cancel(alice, instrument.symbol, order), "cancel")
    refused(
        await insert(alice, instrument.symbol, BUY, 10.00, 51),
        "510 more",
        contains="order_amount_rolling_limit",
    )
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 50), "500 more (= 1000)")


async def test_refused_requests_are_not_counted(world: World) -> None:
    """Check, then record: a request the Gateway refuses is not counted in any window."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "set 10 per 60 s",
    )
    for _ in range(3):
        refused(
            await insert(alice, instrument.symbol, SELL, 10.00, 11),
            "11 (over the limit)",
            contains="order_quantity_rolling_limit",
        )
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "10 after three refusals")


async def test_ioc_that_trades_nothing_still_counts(world: World) -> None:
    """Every insert the Order Book accepts counts in the quantity window, whatever its outcome (an IOC that trades nothing included)."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "set 10 per 60 s",
    )
    eq(
        ok(
            await insert(alice, instrument.symbol, BUY, 10.00, 6, IOC), "IOC 6 into an empty book"
        ).traded_quantity,
        0,
        "IOC traded",
    )
    refused(
        await insert(alice, instrument.symbol, BUY, 10.00, 5),
        "5 more",
        contains="order_quantity_rolling_limit",
    )


async def test_amends_count_as_new_orders_unless_pure_reductions(world: World) -> None:
    """An amend that changes the price or raises the quantity counts as a new order of its new quantity; a pure reduction counts nothing."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "set 10 per 60 s",
    )
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "4 (window 4)").order_id
    ok(await amend(alice, instrument.symbol, order, 10.00, 2), "reduce to 2 (window still 4)")
    ok(await amend(alice, instrument.symbol, order, 10.01, 2), "new price, 2 (window 6)")
    refused(
        await amend(alice, instrument.symbol, order, 10.01, 5),
        "raise to 5 (would be 11)",
        contains="order_quantity_rolling_limit",
    )
    ok(await amend(alice, instrument.symbol, order, 10.01, 4), "raise to 4 (window 10)")
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 1),
        "1 more",
        contains="order_quantity_rolling_limit",
    )


async def test_a_limit_set_later_applies_to_the_trailing_window(world: World) -> None:
    """Windows record from the start, so a limit set later applies to the trailing window at once."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 8), "8 with no limit set")
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "set 10 per 60 s",
    )
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 3),
        "3 more",
        contains="order_quantity_rolling_limit",
    )
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 2), "2 more (= 10)")


async def test_window_frees_up_after_its_length(world: World) -> None:
    """Rolling windows count only the last window_in_seconds."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(5, 1))
        ),
        "set 5 per 1 s",
    )
    started = time.monotonic()
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "5")
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 1),
        "1 more within the second",
        contains="order_quantity_rolling_limit",
    )
    await asyncio.sleep(
        max(0.0, started + 1.3 - time.monotonic())
    )  # the rule is about time passing
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "5 after the window passed")


async def test_message_rate_limit(world: World, rate_user: tuple[str, Conn, Conn]) -> None:
    """message rate: every execution request (insert, amend or cancel) counts; more than `limit` within the last window_in_seconds is refused, naming message_rate_rolling_limit (a client_order_id resend too); a refused request is not counted."""
    user, conn, _ = rate_user
    instrument = await world.create_instrument()
    await world.quiet_period(user, 1.0)
    ok(
        await set_user(conn, rl.UserRiskLimits(message_rate_rolling_limit=window(3, 1))),
        "set 3 per 1 s",
    )
    started = time.monotonic()
    coid = f"rate-{instrument.symbol}"
    first = ok(
        await insert(conn, instrument.symbol, SELL, 10.00, 5, client_order_id=coid),
        "request 1 (insert)",
    ).order_id
    ok(await amend(conn, instrument.symbol, first, 10.00, 4), "request 2 (amend)")
    second = ok(
        await insert(conn, instrument.symbol, SELL, 10.01, 5), "request 3 (insert)"
    ).order_id
    refused(
        await cancel(conn, instrument.symbol, first),
        "request 4 (cancel)",
        contains="message_rate_rolling_limit",
    )
    refused(
        await amend(conn, instrument.symbol, second, 10.01, 3),
        "request 5 (amend)",
        contains="message_rate_rolling_limit",
    )
    refused(
        await insert(conn, instrument.symbol, SELL, 10.00, 5, client_order_id=coid),
        "request 6 (a client_order_id resend is subject to the message rate)",
        contains="message_rate_rolling_limit",
    )
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, (
        f"message-rate test: expected six requests within the 1 s window, received them over {elapsed:.2f} s (machine too slow to judge)"
    )
    await asyncio.sleep(
        max(0.0, started + 1.3 - time.monotonic())
    )  # the rule is about time passing
    eq(
        ok(
            await cancel(conn, instrument.symbol, first), "cancel after the window passed"
        ).cancelled_quantity,
        4,
        "cancelled_quantity (the refused amend changed nothing)",
    )


@pytest.mark.parametrize("stricter", ["admin", "own"])
async def test_both_layers_apply(world: World, stricter: str) -> None:
    """Each user has its own layer and the admin layer; a request must pass every limit of both layers, and a participant cannot change the admin layer."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    admin = await world.admin_conn(world.target.gateway)
    own, ceiling = (100, 5) if stricter == "admin" else (5, 100)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=own)),
        "own layer",
    )
    ok(
        await set_instrument(
            admin, instrument.symbol, ilimits(max_outstanding_quantity=ceiling), world.user(0)
        ),
        "admin layer",
    )
    refused(
        await insert(alice, instrument.symbol, SELL, 10.00, 6),
        f"6 with own {own} / admin {ceiling}",
        contains="max_outstanding_quantity",
    )
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "5")
    if stricter == "admin":
        ok(
            await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=1000)),
            "alice raises her own layer",
        )
        refused(
            await insert(alice, instrument.symbol, SELL, 10.00, 1),
            "1 more under the admin ceiling",
            contains="max_outstanding_quantity",
        )
        got = ok(await alice.request(rl.GetInstrumentRiskLimitsRequest()), "get")
        eq(
            meaning(got.admin_risk_limits_by_instrument.get(instrument.symbol)),
            meaning(ilimits(max_outstanding_quantity=5)),
            "admin layer after alice's own set",
        )


async def test_user_max_outstanding_quantity_spans_instruments(
    world: World, rate_user: tuple[str, Conn, Conn]
) -> None:
    """UserRiskLimits.max_outstanding_quantity counts the user's resting orders over all instruments."""
    user, conn, admin = rate_user
    first, second = await world.create_instrument(), await world.create_instrument()
    ok(await set_user(admin, rl.UserRiskLimits(max_outstanding_quantity=10), user), "admin sets 10")
    ok(await insert(conn, first.symbol, BUY, 9.00, 6), "6 on the first instrument")
    refused(
        await insert(conn, second.symbol, SELL, 11.00, 5),
        "5 on the second",
        contains="max_outstanding_quantity",
    )
    ok(await insert(conn, second.symbol, SELL, 11.00, 4), "4 on the second (= 10)")


async def test_set_replaces_the_whole_layer_and_all_zero_removes_the_entry(world: World) -> None:
    """Set replaces the whole layer it writes (for instrument limits: that instrument's entry); an entry set to all-zero limits is removed."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_quantity=5)),
        "quantity 5",
    )
    ok(
        await set_instrument(alice, instrument.symbol, ilimits(max_outstanding_amount=1e9)),
        "amount only",
    )
    ok(
        await insert(alice, instrument.symbol, SELL, 10.00, 20),
        "20 (the quantity limit was replaced)",
    )
    ok(await set_instrument(alice, instrument.symbol, ilimits()), "all zero")
    got = ok(await alice.request(rl.GetInstrumentRiskLimitsRequest()), "get")
    assert instrument.symbol not in got.risk_limits_by_instrument, (
        f"all-zero entry: expected it removed, received {meaning(got.risk_limits_by_instrument[instrument.symbol])}"
    )


async def test_zero_limit_or_zero_window_means_no_limit(world: World) -> None:
    """A limit value of 0, or a RollingWindowLimit with limit or window_in_seconds equal to 0, means "no limit"."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    limits = ilimits(
        order_quantity_rolling_limit=window(0, 60), order_amount_rolling_limit=window(10, 0)
    )
    ok(await set_instrument(alice, instrument.symbol, limits), "windows with a 0 in them")
    ok(
        await insert(alice, instrument.symbol, SELL, 10.00, 1000),
        "1000 at 10.00 with no effective limit",
    )


async def test_client_order_id_resend_is_only_a_message(world: World) -> None:
    """A client_order_id resend that returns an earlier outcome counts only as a message and is subject to no other limit."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    ok(
        await set_instrument(
            alice, instrument.symbol, ilimits(order_quantity_rolling_limit=window(10, 60))
        ),
        "10 per 60 s",
    )
    first = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            6,
            client_order_id=f"risk-resend-{instrument.symbol}",
        ),
        "6",
    )
    again = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            6,
            client_order_id=f"risk-resend-{instrument.symbol}",
        ),
        "resend of the 6",
    )
    eq(again.order_id, first.order_id, "order_id of the resend")
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "4 (the resend did not count)")
    ok(
        await set_instrument(
            alice,
            instrument.symbol,
            ilimits(max_outstanding_quantity=1, order_quantity_rolling_limit=window(10, 60)),
        ),
        "outstanding limit below what rests",
    )
    again = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            6,
            client_order_id=f"risk-resend-{instrument.symbol}",
        ),
        "resend under tight limits",
    )
    eq(again.order_id, first.order_id, "order_id of the resend under tight limits")
