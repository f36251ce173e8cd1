"""Execution through the Risk Gateway (PROTOCOL.md section 5, "execution"): fills to
owners, unrequested cancels, ownership, client_order_id idempotency."""

from __future__ import annotations

import pytest

from system_tests.harness.checks import BUY, IOC, SELL, eq, has, ok, price_eq, refused
from system_tests.harness.world import World, amend, cancel, insert
from system_tests.pb import execution_pb2


async def test_fills_reach_every_connection_of_each_owner_and_nobody_else(world: World) -> None:
    """OnFill is sent to the owner of each side of every trade, on every connection that user has logged in on, and to nobody else."""
    instrument = await world.create_instrument()
    alice1 = await world.gateway(0)
    maker = ok(await insert(alice1, instrument.symbol, SELL, 10.00, 5), "alice's order").order_id
    alice2 = await world.gateway(0)  # logged in after the order was placed
    bob1, bob2 = await world.gateway(1), await world.gateway(1)
    carol = await world.gateway(2)
    taker = ok(await insert(bob1, instrument.symbol, BUY, 10.00, 5), "bob's order").order_id
    for conn, order_id in ((alice1, maker), (alice2, maker), (bob1, taker), (bob2, taker)):
        fill = await conn.expect(
            44,
            has(order_id=order_id),
            f"OnFill of order {order_id} on {conn.label} #{world.conns.index(conn)}",
        )
        eq(fill.quantity, 5, "OnFill.quantity")
    await world.gateway_barrier(carol)
    stray = [m for m in carol.received(44) if m.instrument_symbol == instrument.symbol]
    assert not stray, f"expected no OnFill for carol (not an owner), received {len(stray)}"
    for conn, own in ((alice1, maker), (bob1, taker)):
        foreign = [
            m
            for m in conn.received(44)
            if m.instrument_symbol == instrument.symbol and m.order_id != own
        ]
        assert not foreign, (
            f"{conn.label}: expected fills of its own orders only, received {foreign[0]}"
        )


async def test_aggressor_fill_follows_its_response(world: World) -> None:
    """OnFill goes to the aggressor after its InsertOrderResponse (on that connection)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    for i in range(3):
        ok(await insert(alice, instrument.symbol, SELL, 10.00 + i / 100, 2), "maker")
    request = execution_pb2.InsertOrderRequest(
        instrument_symbol=instrument.symbol, side=BUY, price=10.02, quantity=6
    )
    response = await bob.request_frame(request)
    ok(response.msg, "taker")
    fills = [f for f in bob.frames if f.type == 44 and f.msg.order_id == response.msg.order_id]
    early = [f for f in fills if f.index < response.index]
    assert not early, (
        f"aggressor: expected InsertOrderResponse before its OnFills, received {len(early)} OnFill first"
    )
    for trade_id in response.msg.trade_ids:
        await bob.expect(44, has(trade_id=trade_id), f"the aggressor's OnFill of trade {trade_id}")


async def test_fill_fields(world: World) -> None:
    """OnFill: order_id, instrument_symbol, trade_id, side, price (this user's price), quantity, remaining_quantity (open quantity right after the fill), timestamp."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    maker = ok(await insert(alice, instrument.symbol, BUY, 10.00, 10), "maker").order_id
    taker = ok(await insert(bob, instrument.symbol, SELL, 9.95, 4), "taker")
    fill = await alice.expect(44, lambda m: m.order_id == maker, "maker's OnFill")
    eq(
        (fill.instrument_symbol, fill.trade_id, fill.side, fill.quantity, fill.remaining_quantity),
        (instrument.symbol, taker.trade_ids[0], BUY, 4, 6),
        "maker OnFill (symbol, trade_id, side, quantity, remaining)",
    )
    price_eq(fill.price, 10.00, "maker OnFill.price")
    assert fill.timestamp > 1.5e18, (
        f"OnFill.timestamp: expected ns since the epoch, received {fill.timestamp}"
    )


async def test_ioc_fill_remaining_is_before_the_remainder_cancel(world: World) -> None:
    """remaining_quantity is the open quantity right after the fill (before an IOC remainder is cancelled); the remainder is reported by the response, not by EXECUTION_ON_ORDER_CANCELLED."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 10, IOC), "IOC 10")
    fill = await bob.expect(44, lambda m: m.order_id == taker.order_id, "the IOC's fill")
    eq(fill.remaining_quantity, 6, "IOC OnFill.remaining_quantity")
    await world.gateway_barrier(bob)
    unrequested = [m for m in bob.received(45) if m.order_id == taker.order_id]
    assert not unrequested, (
        f"IOC remainder: expected no EXECUTION_ON_ORDER_CANCELLED, received {unrequested[0]}"
    )


async def test_own_cancel_is_reported_by_its_response_only(world: World) -> None:
    """EXECUTION_ON_ORDER_CANCELLED is sent only for cancels the owner did not ask for; the owner's own cancels are reported by their responses."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 8), "order").order_id
    eq(
        ok(await cancel(alice, instrument.symbol, order), "cancel").cancelled_quantity,
        8,
        "CancelOrderResponse.cancelled_quantity",
    )
    await world.gateway_barrier(alice)
    unrequested = [m for m in alice.received(45) if m.order_id == order]
    assert not unrequested, (
        f"own cancel: expected no EXECUTION_ON_ORDER_CANCELLED, received {unrequested[0]}"
    )


@pytest.mark.parametrize("operation", ["cancel", "amend"])
async def test_someone_elses_order_looks_exactly_like_an_unknown_one(
    world: World, operation: str
) -> None:
    """A participant may cancel or amend only its own orders; someone else's order id gets exactly the same error_message as an unknown one (the text does not echo the id)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "alice's order").order_id
    unknown = order + 7_654_321

    async def attempt(order_id: int) -> str:
        if operation == "cancel":
            response = await cancel(bob, instrument.symbol, order_id)
        else:
            response = await amend(bob, instrument.symbol, order_id, 10.00, 1)
        return str(refused(response, f"bob's {operation} of order {order_id}").error_message)

    foreign, missing = await attempt(order), await attempt(unknown)
    eq(foreign, missing, f"error_message for {operation} of someone else's order vs an unknown one")
    assert str(order) not in foreign, (
        f"error text: expected it not to echo the order id, received {foreign!r}"
    )
    taken = ok(
        await insert(bob, instrument.symbol, BUY, 10.00, 10, IOC), "IOC against alice's order"
    )
    eq(taken.traded_quantity, 5, "alice's order after the refused attempt (unchanged)")


async def test_an_admin_on_the_gateway_trades_as_itself(world: World) -> None:
    """The Risk Gateway admits participants and admins and accepts 40/42/46 without restricting them to a role (section 3): an admin inserts, amends and cancels its own orders and gets its fills, but cannot touch someone else's order."""
    instrument = await world.create_instrument()
    admin = await world.admin_conn(world.target.gateway)
    alice = await world.gateway(0)
    theirs = ok(await insert(alice, instrument.symbol, BUY, 9.00, 5), "alice's order").order_id
    mine = ok(await insert(admin, instrument.symbol, SELL, 10.00, 4), "the admin's insert")
    eq(mine.resting_quantity, 4, "the admin's order rests")
    refused(await cancel(admin, instrument.symbol, theirs), "the admin's cancel of alice's order")
    eq(
        ok(
            await amend(admin, instrument.symbol, mine.order_id, 10.00, 3), "amend"
        ).resting_quantity,
        3,
        "AmendOrderResponse.resting_quantity",
    )
    ok(await insert(alice, instrument.symbol, BUY, 10.00, 1), "alice hits the admin's order")
    fill = await admin.expect(44, has(order_id=mine.order_id), "the admin's OnFill")
    eq((fill.side, fill.quantity, fill.remaining_quantity), (SELL, 1, 2), "OnFill fields")
    eq(
        ok(await cancel(admin, instrument.symbol, mine.order_id), "cancel").cancelled_quantity,
        2,
        "CancelOrderResponse.cancelled_quantity",
    )


async def test_client_order_id_resend_returns_the_original_outcome(world: World) -> None:
    """Resending an insert with a client_order_id the user has used before returns the original outcome (same order_id, trades and quantities, whatever the resend says) and inserts nothing; also on another connection."""
    instrument = await world.create_instrument()
    alice, bob, carol = await world.gateway(0), await world.gateway(1), await world.gateway(2)
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 2), "bob's bid")
    first = ok(
        await insert(
            alice, instrument.symbol, SELL, 10.00, 5, client_order_id=f"coid-1-{instrument.symbol}"
        ),
        "first insert",
    )
    eq((first.traded_quantity, first.resting_quantity), (2, 3), "first insert (traded, resting)")
    other = await world.gateway(0)
    for conn, name in ((alice, "same connection"), (other, "another connection")):
        again = ok(
            await insert(
                conn,
                instrument.symbol,
                BUY,
                11.00,
                9,
                client_order_id=f"coid-1-{instrument.symbol}",
            ),
            f"resend on the {name}",
        )
        eq(
            (again.order_id, list(again.trade_ids), again.traded_quantity, again.resting_quantity),
            (first.order_id, list(first.trade_ids), first.traded_quantity, first.resting_quantity),
            f"resend on the {name}: (order_id, trade_ids, traded, resting)",
        )
    probe = ok(
        await insert(carol, instrument.symbol, SELL, 0.01, 20, IOC), "IOC sell probing for bids"
    )
    eq(probe.traded_quantity, 0, "bids resting after the resends (a resend inserts nothing)")
    probe = ok(
        await insert(carol, instrument.symbol, BUY, 11.00, 20, IOC), "IOC buy probing for asks"
    )
    eq(probe.traded_quantity, 3, "asks resting after the resends (the original order only)")


async def test_client_order_id_is_per_user(world: World) -> None:
    """client_order_id makes an insert idempotent per user: another user's equal client_order_id is a new order."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    first = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            5,
            client_order_id=f"shared-id-{instrument.symbol}",
        ),
        "alice",
    )
    second = ok(
        await insert(
            bob, instrument.symbol, SELL, 10.00, 5, client_order_id=f"shared-id-{instrument.symbol}"
        ),
        "bob",
    )
    assert second.order_id != first.order_id, (
        f"equal client_order_id of two users: expected two orders, received order {first.order_id} twice"
    )


async def test_refused_insert_does_not_use_up_its_client_order_id(world: World) -> None:
    """A refused insert does not use up its client_order_id."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    refused(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.005,
            5,
            client_order_id=f"retry-me-{instrument.symbol}",
        ),
        "insert off the grid",
    )
    accepted = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            5,
            client_order_id=f"retry-me-{instrument.symbol}",
        ),
        "corrected insert",
    )
    again = ok(
        await insert(
            alice,
            instrument.symbol,
            SELL,
            10.00,
            5,
            client_order_id=f"retry-me-{instrument.symbol}",
        ),
        "resend",
    )
    eq(
        again.order_id,
        accepted.order_id,
        "resend after a refused first attempt returns the accepted order",
    )


@pytest.mark.parametrize(
    ("filler", "size", "accepted"),
    [("x", 64, True), ("é", 64, True), ("x", 65, False), ("é", 66, False)],
    ids=["64-ascii", "64-bytes-utf8", "65-ascii", "66-bytes-utf8"],
)
async def test_client_order_id_is_at_most_64_bytes(
    world: World, filler: str, size: int, accepted: bool
) -> None:
    """client_order_id is optional, at most 64 bytes of UTF-8."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    # Unique per run (the symbol is), padded to exactly `size` bytes with `filler`.
    text = instrument.symbol + filler * ((size - len(instrument.symbol)) // len(filler.encode()))
    text += "x" * (size - len(text.encode()))
    assert len(text.encode()) == size
    response = await insert(alice, instrument.symbol, SELL, 10.00, 1, client_order_id=text)
    if accepted:
        ok(response, f"insert with a {size}-byte client_order_id")
    else:
        refused(response, f"insert with a {size}-byte client_order_id")


async def test_resend_of_a_filled_ioc_returns_its_trades(world: World) -> None:
    """A resend returns the original outcome also when the order is long gone (its trades and quantities)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 3), "maker")
    first = ok(
        await insert(
            bob, instrument.symbol, BUY, 10.00, 5, IOC, client_order_id=f"ioc-1-{instrument.symbol}"
        ),
        "IOC",
    )
    again = ok(
        await insert(
            bob, instrument.symbol, BUY, 10.00, 5, IOC, client_order_id=f"ioc-1-{instrument.symbol}"
        ),
        "resend",
    )
    eq(
        (again.order_id, list(again.trade_ids), again.traded_quantity, again.resting_quantity),
        (first.order_id, list(first.trade_ids), 3, 0),
        "resend of a finished IOC: (order_id, trade_ids, traded, resting)",
    )
