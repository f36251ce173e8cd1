"""Time in force and amend (PROTOCOL.md section 5, order_book rules on FOK/IOC and amend)."""

from __future__ import annotations

import pytest

from system_tests.harness.checks import BUY, FOK, IOC, SELL, eq, has, ok, price_eq, refused
from system_tests.harness.conn import Conn
from system_tests.harness.world import Instrument, World, amend, cancel, insert


async def _setup(world: World) -> tuple[Instrument, Conn, Conn]:
    instrument = await world.create_instrument(tick=0.01)
    return instrument, await world.gateway(0), await world.gateway(1)


async def _makers(maker: Conn, trade_ids: list[int]) -> list[tuple[int, int]]:
    """(maker order id, quantity) behind each trade, in fill order."""
    out = []
    for trade_id in trade_ids:
        fill = await maker.expect(44, has(trade_id=trade_id), f"maker OnFill of trade {trade_id}")
        out.append((fill.order_id, fill.quantity))
    return out


async def test_ioc_trades_what_crosses_and_cancels_the_rest(world: World) -> None:
    """IOC: trades what crosses; the remainder is cancelled, never rested."""
    instrument, alice, bob = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 4), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 10, IOC), "IOC buy 10")
    eq((taker.traded_quantity, taker.resting_quantity), (4, 0), "IOC (traded, resting)")
    probe = ok(
        await insert(alice, instrument.symbol, SELL, 10.00, 10, IOC),
        "IOC sell into the IOC's price",
    )
    eq(probe.traded_quantity, 0, "quantity of the IOC remainder left resting")


async def test_ioc_that_trades_nothing_is_a_successful_insert(world: World) -> None:
    """An IOC that trades nothing is still a successful insert (empty error_message, traded_quantity 0, resting_quantity 0)."""
    instrument, alice, _ = await _setup(world)
    response = ok(
        await insert(alice, instrument.symbol, BUY, 10.00, 5, IOC), "IOC into an empty book"
    )
    eq(
        (response.traded_quantity, response.resting_quantity, list(response.trade_ids)),
        (0, 0, []),
        "(traded, resting, trade_ids)",
    )


async def test_fok_fills_completely_across_levels(world: World) -> None:
    """FOK fills completely and at once when the quantity is there within its limit."""
    instrument, alice, bob = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "ask 1")
    ok(await insert(alice, instrument.symbol, SELL, 10.01, 5), "ask 2")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.01, 8, FOK), "FOK 8")
    eq(
        (taker.traded_quantity, taker.resting_quantity, len(taker.trade_ids)),
        (8, 0, 2),
        "FOK (traded, resting, trades)",
    )


async def test_fok_for_exactly_the_available_quantity_fills(world: World) -> None:
    """FOK for exactly what is available fills completely."""
    instrument, alice, bob = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "ask")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 5, FOK), "FOK 5")
    eq(taker.traded_quantity, 5, "FOK traded_quantity")


@pytest.mark.parametrize("short_by", ["quantity", "price"])
async def test_fok_that_cannot_fill_trades_nothing(world: World, short_by: str) -> None:
    """FOK: fills completely and at once, or trades nothing and is cancelled; a FOK that cannot fill is still a successful insert and leaves the book unchanged."""
    instrument, alice, bob = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "ask 1")
    ok(await insert(alice, instrument.symbol, SELL, 10.02, 5), "ask 2")
    quantity, limit = (11, 10.02) if short_by == "quantity" else (8, 10.01)
    taker = ok(
        await insert(bob, instrument.symbol, BUY, limit, quantity, FOK), f"FOK short by {short_by}"
    )
    eq(
        (taker.traded_quantity, taker.resting_quantity, list(taker.trade_ids)),
        (0, 0, []),
        "unfillable FOK (traded, resting, trade_ids)",
    )
    sweep = ok(await insert(bob, instrument.symbol, BUY, 10.02, 20, IOC), "IOC to count the book")
    eq(sweep.traded_quantity, 10, "quantity left in the book after the FOK")


async def test_reducing_quantity_keeps_time_priority(world: World) -> None:
    """Amend keeps the order id; reducing the quantity at the same price keeps the order's time priority."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a1").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a2").order_id
    response = ok(await amend(alice, instrument.symbol, a1, 10.00, 5), "reduce a1 to 5")
    eq((response.traded_quantity, response.resting_quantity), (0, 5), "amend (traded, resting)")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 6), "buy 6")
    eq(await _makers(alice, list(taker.trade_ids)), [(a1, 5), (a2, 1)], "fills after a reduction")


async def test_raising_quantity_loses_time_priority(world: World) -> None:
    """Any other amend (more quantity) moves the order to the back of its level."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a1").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a2").order_id
    ok(await amend(alice, instrument.symbol, a1, 10.00, 15), "raise a1 to 15")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 12), "buy 12")
    eq(await _makers(alice, list(taker.trade_ids)), [(a2, 10), (a1, 2)], "fills after raising a1")


async def test_new_price_goes_to_the_back_of_the_new_level(world: World) -> None:
    """An amend to a new price moves the order to the back of its new level."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.01, 10), "a1 @ 10.01").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a2 @ 10.00").order_id
    ok(await amend(alice, instrument.symbol, a1, 10.00, 10), "move a1 to 10.00")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 12), "buy 12 @ 10.00")
    eq(
        await _makers(alice, list(taker.trade_ids)),
        [(a2, 10), (a1, 2)],
        "fills at the shared level",
    )


async def test_crossing_amend_matches_at_resting_prices(world: World) -> None:
    """A new price that crosses matches at once, at the resting orders' prices, like an insert (also when the new limit is better than the maker's)."""
    instrument, alice, bob = await _setup(world)
    bid = ok(await insert(alice, instrument.symbol, BUY, 9.90, 10), "alice bid")
    ask = ok(await insert(bob, instrument.symbol, SELL, 10.00, 5), "bob ask")
    response = ok(
        await amend(alice, instrument.symbol, bid.order_id, 10.05, 10), "amend bid to 10.05"
    )
    eq(
        (response.traded_quantity, response.resting_quantity, len(response.trade_ids)),
        (5, 5, 1),
        "crossing amend (traded, resting, trades)",
    )
    alice_fill = await alice.expect(
        44, lambda m: m.order_id == bid.order_id, "alice's OnFill from the amend"
    )
    bob_fill = await bob.expect(
        44, lambda m: m.order_id == ask.order_id, "bob's OnFill from the amend"
    )
    price_eq(alice_fill.price, 10.00, "amending aggressor's fill price (the resting price)")
    price_eq(bob_fill.price, 10.00, "maker's fill price")
    eq(
        alice_fill.trade_id,
        response.trade_ids[0],
        "OnFill.trade_id vs AmendOrderResponse.trade_ids",
    )
    eq(alice_fill.remaining_quantity, 5, "amended order's remaining_quantity after the fill")


@pytest.mark.parametrize("state", ["filled", "cancelled", "never-issued"])
async def test_amend_of_non_resting_order_is_rejected(world: World, state: str) -> None:
    """Amending an order that is no longer resting (filled, cancelled, never existed) is an error and changes nothing."""
    instrument, alice, bob = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 11.00, 3), "bystander")
    target = ok(await insert(alice, instrument.symbol, SELL, 10.00, 2), "target")
    order_id = target.order_id
    if state == "filled":
        ok(await insert(bob, instrument.symbol, BUY, 10.00, 2), "fill it")
    elif state == "cancelled":
        ok(await cancel(alice, instrument.symbol, order_id), "cancel it")
    else:
        order_id += 10_000_000
    refused(await amend(alice, instrument.symbol, order_id, 10.50, 4), f"amend of a {state} order")
    sweep = ok(await insert(bob, instrument.symbol, BUY, 11.00, 20, IOC), "IOC to count the book")
    expected = 5 if state == "never-issued" else 3  # the untouched target still rests then
    eq(sweep.traded_quantity, expected, f"quantity resting after amending a {state} order")


async def test_amend_to_same_price_and_quantity_changes_nothing(world: World) -> None:
    """Amending to the same price and quantity succeeds and changes nothing (priority kept)."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "a1").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "a2").order_id
    response = ok(await amend(alice, instrument.symbol, a1, 10.00, 5), "no-op amend")
    eq(
        (response.traded_quantity, response.resting_quantity),
        (0, 5),
        "no-op amend (traded, resting)",
    )
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 6), "buy 6")
    eq(await _makers(alice, list(taker.trade_ids)), [(a1, 5), (a2, 1)], "fills after a no-op amend")


@pytest.mark.parametrize(
    ("price", "quantity"),
    [(10.005, 5), (0.0, 5), (10.00, 0), (10.00, -1)],
    ids=["off-grid", "zero-price", "zero-qty", "negative-qty"],
)
async def test_invalid_amend_is_rejected_and_changes_nothing(
    world: World, price: float, quantity: int
) -> None:
    """Bad input gets a clear error and changes nothing: an amend with an invalid price or quantity leaves the order as it was."""
    instrument, alice, bob = await _setup(world)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "order")
    refused(
        await amend(alice, instrument.symbol, order.order_id, price, quantity),
        f"amend to ({price}, {quantity})",
    )
    sweep = ok(await insert(bob, instrument.symbol, BUY, 10.00, 20, IOC), "IOC to count the book")
    eq(sweep.traded_quantity, 5, "quantity of the order after a refused amend")


async def test_repricing_one_of_two_orders_leaves_the_other(world: World) -> None:
    """Repricing one of two same-price orders leaves the other untouched."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "a1").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 7), "a2").order_id
    ok(await amend(alice, instrument.symbol, a1, 10.10, 5), "reprice a1")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 20, IOC), "IOC at 10.00")
    eq(await _makers(alice, list(taker.trade_ids)), [(a2, 7)], "fills at 10.00 after repricing a1")


async def test_partly_filled_order_can_be_amended(world: World) -> None:
    """A partial-fill residual can still be modified; the amend quantity is the new remaining quantity; the order id is kept."""
    instrument, alice, bob = await _setup(world)
    order = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "order").order_id
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 4), "partial fill")
    response = ok(await amend(alice, instrument.symbol, order, 10.00, 3), "amend residual to 3")
    eq(response.resting_quantity, 3, "resting_quantity after amending the residual")
    sweep = ok(await insert(bob, instrument.symbol, BUY, 10.00, 10, IOC), "IOC")
    eq(
        await _makers(alice, list(sweep.trade_ids)),
        [(order, 3)],
        "fills of the amended residual (same order id)",
    )
