"""Order book matching through the Risk Gateway (PROTOCOL.md section 5, event rules and
price rules; edge cases of the flash1 conformance gate).

Alice makes, Bob takes, on a fresh instrument per test.  Which resting order a
trade hit is read from the makers' own ``OnFill`` (trade_id -> order_id), so
fill order is checked end to end as participants see it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from system_tests.harness.checks import (
    BUY,
    IOC,
    RESTING_ORDER_PRICE,
    SELL,
    SPREAD_CAPTURE,
    PriceRule,
    eq,
    has,
    ok,
    price_eq,
    refused,
)
from system_tests.harness.conn import Conn
from system_tests.harness.world import Instrument, World, cancel, insert
from system_tests.pb import admin_pb2


async def _setup(
    world: World, tick: float = 0.01, price_rule: PriceRule = RESTING_ORDER_PRICE
) -> tuple[Instrument, Conn, Conn]:
    instrument = await world.create_instrument(tick=tick, price_rule=price_rule)
    return instrument, await world.gateway(0), await world.gateway(1)


async def _maker_orders(maker: Conn, trade_ids: list[int]) -> list[int]:
    """The maker's order id behind each trade, in the given (fill) order."""
    orders = []
    for trade_id in trade_ids:
        fill = await maker.expect(
            44, has(trade_id=trade_id), f"the maker's OnFill for trade {trade_id}"
        )
        orders.append(fill.order_id)
    return orders


async def _fill(conn: Conn, order_id: int, what: str) -> Any:
    return await conn.expect(44, lambda m: m.order_id == order_id, what)


async def test_resting_order_response(world: World) -> None:
    """A GTC order that crosses nothing is accepted: order_id, timestamp (ns since epoch), no trades, all of it resting."""
    instrument, alice, _ = await _setup(world)
    response = ok(await insert(alice, instrument.symbol, BUY, 10.00, 10), "resting buy")
    assert response.order_id > 0, (
        f"InsertOrderResponse.order_id: expected > 0, received {response.order_id}"
    )
    assert 1.5e18 < response.timestamp < 4e18, (
        f"InsertOrderResponse.timestamp: expected nanoseconds since the epoch, received {response.timestamp}"
    )
    eq(list(response.trade_ids), [], "trade_ids of a non-crossing order")
    eq(response.traded_quantity, 0, "traded_quantity of a non-crossing order")
    eq(response.resting_quantity, 10, "resting_quantity of a non-crossing order")


@pytest.mark.parametrize("aggressor", ["buy", "sell"])
async def test_trade_prints_at_the_resting_price(world: World, aggressor: str) -> None:
    """In RESTING_ORDER_PRICE books the trade happens at the resting order's price, whichever side aggresses."""
    instrument, alice, bob = await _setup(world)
    maker_side, taker_side = (SELL, BUY) if aggressor == "buy" else (BUY, SELL)
    taker_price = 10.05 if aggressor == "buy" else 9.95
    maker = ok(await insert(alice, instrument.symbol, maker_side, 10.00, 10), "maker")
    taker = ok(await insert(bob, instrument.symbol, taker_side, taker_price, 10), "taker")
    eq(taker.traded_quantity, 10, "taker traded_quantity")
    eq(taker.resting_quantity, 0, "taker resting_quantity")
    eq(len(taker.trade_ids), 1, "number of trade_ids")
    bob_fill = await _fill(bob, taker.order_id, "the taker's OnFill")
    alice_fill = await _fill(alice, maker.order_id, "the maker's OnFill")
    price_eq(bob_fill.price, 10.00, "the taker's fill price (the resting order's price)")
    price_eq(alice_fill.price, 10.00, "the maker's fill price")
    eq(bob_fill.trade_id, taker.trade_ids[0], "OnFill.trade_id")
    eq((bob_fill.side, alice_fill.side), (taker_side, maker_side), "OnFill.side of taker and maker")


async def test_sweep_fills_best_price_first_then_time(world: World) -> None:
    """Matching is price-time priority: a marketable order fills across levels best price first, FIFO within a level."""
    instrument, alice, bob = await _setup(world)
    o1 = ok(await insert(alice, instrument.symbol, SELL, 10.02, 5), "o1").order_id
    o2 = ok(await insert(alice, instrument.symbol, SELL, 10.01, 5), "o2").order_id
    o3 = ok(await insert(alice, instrument.symbol, SELL, 10.01, 5), "o3").order_id
    o4 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "o4").order_id
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.02, 18), "sweeping buy")
    eq(taker.traded_quantity, 18, "traded_quantity of the sweep")
    eq(len(taker.trade_ids), 4, "number of trades of the sweep")
    makers = await _maker_orders(alice, list(taker.trade_ids))
    eq(makers, [o4, o2, o3, o1], "resting orders hit, in fill order (best price, then time)")
    prices = []
    for trade_id in taker.trade_ids:
        fill = await bob.expect(44, has(trade_id=trade_id), f"taker fill of trade {trade_id}")
        prices.append(round(fill.price, 9))
    eq(prices, [10.00, 10.01, 10.01, 10.02], "trade prices in fill order")
    rest = ok(await insert(bob, instrument.symbol, BUY, 10.02, 10, IOC), "IOC for the rest")
    eq(rest.traded_quantity, 2, "quantity left of the partly filled last level")


async def test_marketable_limit_stops_at_its_price_and_rests_the_rest(world: World) -> None:
    """A marketable limit stops at its own price and rests the rest, which becomes the new best price."""
    instrument, alice, bob = await _setup(world)
    for price in (10.00, 10.01, 10.03):
        ok(await insert(alice, instrument.symbol, SELL, price, 5), f"ask {price}")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.01, 12), "buy 12 @ 10.01")
    eq((taker.traded_quantity, taker.resting_quantity), (10, 2), "(traded, resting) of the buy")
    hit = ok(
        await insert(alice, instrument.symbol, SELL, 9.50, 5, IOC), "IOC sell into the new best bid"
    )
    eq(hit.traded_quantity, 2, "quantity traded against the rested remainder")
    fill = await _fill(alice, hit.order_id, "the IOC's fill")
    price_eq(fill.price, 10.01, "the rested remainder is the best bid at its own price")


async def test_exact_fill_leaves_nothing_resting(world: World) -> None:
    """An exact fill leaves nothing resting on either side."""
    instrument, alice, bob = await _setup(world)
    maker = ok(await insert(alice, instrument.symbol, SELL, 10.00, 7), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 7), "exact taker")
    eq((taker.traded_quantity, taker.resting_quantity), (7, 0), "(traded, resting)")
    probe = ok(await insert(bob, instrument.symbol, BUY, 10.00, 1, IOC), "IOC after the exact fill")
    eq(probe.traded_quantity, 0, "quantity still resting after an exact fill")
    refused(await cancel(alice, instrument.symbol, maker.order_id), "cancel of the filled maker")


@pytest.mark.parametrize("cancelled", [[0], [4], [0, 4, 7, 9]], ids=["head", "middle", "scattered"])
async def test_fifo_holds_after_cancels_in_a_queue(world: World, cancelled: list[int]) -> None:
    """Cancelling the head or a middle order of a same-price queue loses none behind it; FIFO holds after scattered cancels."""
    instrument, alice, bob = await _setup(world)
    ids = [
        ok(await insert(alice, instrument.symbol, SELL, 10.00, 1), f"queue order {i}").order_id
        for i in range(10)
    ]
    for index in cancelled:
        eq(
            ok(
                await cancel(alice, instrument.symbol, ids[index]), f"cancel #{index}"
            ).cancelled_quantity,
            1,
            "cancelled_quantity",
        )
    left = [order_id for i, order_id in enumerate(ids) if i not in cancelled]
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 20, IOC), "sweep of the queue")
    eq(taker.traded_quantity, len(left), "quantity left in the queue")
    eq(await _maker_orders(alice, list(taker.trade_ids)), left, "queue order after cancels")


async def test_partial_fill_residual_is_conserved_and_cancellable(world: World) -> None:
    """A partial-fill residual is conserved (OnFill remaining_quantity) and can still be cancelled."""
    instrument, alice, bob = await _setup(world)
    maker = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "maker")
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 4), "partial taker")
    fill = await _fill(alice, maker.order_id, "the maker's partial fill")
    eq(
        (fill.quantity, fill.remaining_quantity),
        (4, 6),
        "maker OnFill (quantity, remaining_quantity)",
    )
    eq(
        ok(
            await cancel(alice, instrument.symbol, maker.order_id), "cancel residual"
        ).cancelled_quantity,
        6,
        "cancelled_quantity of the residual",
    )


@pytest.mark.parametrize("state", ["filled", "cancelled", "never-issued"])
async def test_cancel_of_non_resting_order_is_rejected(world: World, state: str) -> None:
    """Cancel of a filled, cancelled or never-issued order is rejected and changes nothing."""
    instrument, alice, bob = await _setup(world)
    other = ok(await insert(alice, instrument.symbol, SELL, 11.00, 3), "bystander order")
    order_id = 0
    if state == "never-issued":
        order_id = other.order_id + 10_000_000
    else:
        order_id = ok(
            await insert(alice, instrument.symbol, SELL, 10.00, 2), "target order"
        ).order_id
        if state == "filled":
            ok(await insert(bob, instrument.symbol, BUY, 10.00, 2), "filling buy")
        else:
            ok(await cancel(alice, instrument.symbol, order_id), "first cancel")
    refused(await cancel(alice, instrument.symbol, order_id), f"cancel of a {state} order")
    take = ok(await insert(bob, instrument.symbol, BUY, 11.00, 5, IOC), "IOC to count what rests")
    eq(take.traded_quantity, 3, "resting quantity after the refused cancel (unchanged)")


async def test_cancelling_best_level_leaves_no_phantom(world: World) -> None:
    """Cancelling the best level leaves no phantom best price."""
    instrument, alice, bob = await _setup(world)
    best = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "best ask")
    ok(await insert(alice, instrument.symbol, SELL, 10.05, 5), "second ask")
    ok(await cancel(alice, instrument.symbol, best.order_id), "cancel best")
    miss = ok(await insert(bob, instrument.symbol, BUY, 10.04, 5, IOC), "IOC at the old best")
    eq(miss.traded_quantity, 0, "quantity traded at a cancelled level")
    hit = ok(await insert(bob, instrument.symbol, BUY, 10.05, 5, IOC), "IOC at the next level")
    eq(hit.traded_quantity, 5, "quantity traded at the next level")


async def test_partly_consumed_maker_keeps_its_place(world: World) -> None:
    """A partly consumed maker keeps its place at the front between separate aggressors."""
    instrument, alice, bob = await _setup(world)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a1").order_id
    a2 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "a2").order_id
    trades: list[int] = []
    for quantity in (3, 3, 5):
        trades += ok(
            await insert(bob, instrument.symbol, BUY, 10.00, quantity), f"buy {quantity}"
        ).trade_ids
    eq(
        await _maker_orders(alice, trades),
        [a1, a1, a1, a2],
        "makers hit by three separate aggressors",
    )


async def test_prices_near_the_top_of_the_range(world: World) -> None:
    """Prices are whole multiples n of tick_size with 1 <= n <= 2**53: n = 2**53 works, n above it is rejected."""
    instrument, alice, bob = await _setup(world, tick=1.0)
    top = float(2**53)
    maker = ok(await insert(alice, instrument.symbol, BUY, top, 1), "buy at n = 2**53")
    taker = ok(await insert(bob, instrument.symbol, SELL, top, 1, IOC), "sell at n = 2**53")
    eq(taker.traded_quantity, 1, "traded at n = 2**53")
    fill = await _fill(alice, maker.order_id, "the fill at n = 2**53")
    eq(fill.price, top, "fill price at n = 2**53 (exact)")
    refused(
        await insert(alice, instrument.symbol, BUY, float(2**53 + 2), 1),
        "a price with n = 2**53 + 2",
    )


async def test_single_price_sweep_of_5000_fills(world: World) -> None:
    """A single-price sweep of 5,000 fills is correct: one trade per resting order, in time order."""
    instrument, alice, bob = await _setup(world)
    from system_tests.pb import execution_pb2

    makers: list[int] = []
    for start in range(0, 5000, 1000):
        pending = []
        for _ in range(1000):
            msg = execution_pb2.InsertOrderRequest(
                instrument_symbol=instrument.symbol, side=SELL, price=10.0, quantity=1
            )
            pending.append((msg, alice.send_request(msg)))
        for msg, request_id in pending:
            response = (await alice.response_to(msg, request_id, timeout=30)).msg
            makers.append(ok(response, f"maker insert #{start}").order_id)
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.0, 5000), "the 5,000-fill sweep")
    eq(taker.traded_quantity, 5000, "traded_quantity of the sweep")
    eq(len(set(taker.trade_ids)), 5000, "distinct trade_ids of the sweep")
    filled = await _maker_orders(alice, list(taker.trade_ids))
    assert filled == makers, (
        f"sweep fill order: expected the 5,000 makers in time order, received a different order "
        f"(first difference at index {next(i for i, (a, b) in enumerate(zip(filled, makers, strict=True)) if a != b)})"
    )


BAD_PRICES = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "zero": 0.0,
    "negative": -10.0,
    "off-grid": 10.005,
    "above-2**53-ticks": 2**53 * 0.01 * 4,
}


@pytest.mark.parametrize("name", list(BAD_PRICES))
async def test_invalid_price_is_rejected(world: World, name: str) -> None:
    """price must be a positive whole multiple of tick_size (1 <= n <= 2**53); NaN, infinities, zero, negative, off-grid, out of range are rejected and change nothing."""
    instrument, alice, bob = await _setup(world)
    refused(
        await insert(alice, instrument.symbol, BUY, BAD_PRICES[name], 5), f"buy at a {name} price"
    )
    probe = ok(
        await insert(bob, instrument.symbol, SELL, 0.01, 5, IOC), "IOC sell at the lowest price"
    )
    eq(probe.traded_quantity, 0, f"quantity resting after a refused {name} price")


@pytest.mark.parametrize("quantity", [0, -5])
async def test_non_positive_quantity_is_rejected(world: World, quantity: int) -> None:
    """quantity is int32 and must be > 0 in requests."""
    instrument, alice, bob = await _setup(world)
    refused(
        await insert(alice, instrument.symbol, SELL, 10.0, quantity),
        f"insert of quantity {quantity}",
    )
    probe = ok(await insert(bob, instrument.symbol, BUY, 10.0, 5, IOC), "IOC buy")
    eq(probe.traded_quantity, 0, "quantity resting after a refused quantity")


async def test_grid_tolerance_accepts_rounding_noise(world: World) -> None:
    """With n = round(price / tick_size), abs(n * tick_size - price) <= 1e-9 * price is on the grid (0.1 + 0.2 with tick 0.1)."""
    instrument, alice, _ = await _setup(world, tick=0.1)
    ok(await insert(alice, instrument.symbol, BUY, 0.1 + 0.2, 1), "buy at 0.30000000000000004")
    refused(await insert(alice, instrument.symbol, BUY, 0.35, 1), "buy at 0.35 on a 0.1 grid")


async def test_unknown_symbol_is_rejected(world: World) -> None:
    """An insert for a symbol that is not a live instrument is an error."""
    alice = await world.gateway(0)
    refused(await insert(alice, "NO.SUCH-SYMBOL", BUY, 1.0, 1), "insert for an unknown symbol")


async def test_orders_of_one_user_match_each_other(world: World) -> None:
    """Orders of the same user match each other like any others (no self-trade prevention)."""
    instrument, alice, _ = await _setup(world)
    ok(await insert(alice, instrument.symbol, SELL, 10.0, 5), "alice sell")
    taker = ok(await insert(alice, instrument.symbol, BUY, 10.0, 5), "alice buy")
    eq(taker.traded_quantity, 5, "quantity of a self-trade")


async def test_spread_capture_gives_each_side_its_own_price(world: World) -> None:
    """In SPREAD_CAPTURE books the resting order gets its own limit price and the aggressor pays its own limit price; the exchange keeps the difference."""
    instrument, alice, bob = await _setup(world, price_rule=SPREAD_CAPTURE)
    admin = await world.admin()
    before = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats before")
    maker = ok(await insert(alice, instrument.symbol, SELL, 10.00, 10), "maker")
    taker = ok(await insert(bob, instrument.symbol, BUY, 10.05, 10), "taker")
    price_eq(
        (await _fill(bob, taker.order_id, "taker fill")).price, 10.05, "aggressor's fill price"
    )
    price_eq(
        (await _fill(alice, maker.order_id, "maker fill")).price,
        10.00,
        "resting order's fill price",
    )
    after = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats after")
    gained = after.exchange_profit - before.exchange_profit
    assert abs(gained - 0.5) < 1e-6, (
        f"exchange_profit increase: expected 0.05 x 10 = 0.5, received {gained!r}"
    )


async def test_order_and_trade_ids_are_unique(world: World) -> None:
    """Order ids and trade ids are int64, unique across the whole exchange, and never reused."""
    first, alice, bob = await _setup(world)
    second = await world.create_instrument()
    order_ids: list[int] = []
    trade_ids: list[int] = []
    for instrument in (first, second):
        for _ in range(5):
            maker = ok(await insert(alice, instrument.symbol, SELL, 10.0, 2), "maker")
            taker = ok(await insert(bob, instrument.symbol, BUY, 10.0, 1), "taker")
            cancelled = ok(await insert(alice, instrument.symbol, BUY, 5.0, 1), "to cancel")
            ok(await cancel(alice, instrument.symbol, cancelled.order_id), "cancel")
            order_ids += [maker.order_id, taker.order_id, cancelled.order_id]
            trade_ids += list(taker.trade_ids)
    eq(len(set(order_ids)), len(order_ids), "distinct order ids among 30 orders on two instruments")
    eq(len(set(trade_ids)), len(trade_ids), "distinct trade ids among 10 trades on two instruments")
