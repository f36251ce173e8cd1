"""Admin lifecycle (PROTOCOL.md section 5, "admin" and "Instrument lifecycle")."""

from __future__ import annotations

import math
from typing import Any

import pytest

from system_tests.harness.checks import (
    BUY,
    RESTING_ORDER_PRICE,
    SELL,
    SPREAD_CAPTURE,
    TOP_OF_BOOK,
    PriceRule,
    eq,
    has,
    ok,
    price_eq,
    refused,
    top,
)
from system_tests.harness.conn import Conn
from system_tests.harness.world import World, insert, new_symbol, subscribe
from system_tests.pb import admin_pb2, common_pb2, execution_pb2


def _create(
    symbol: str, tick: float = 0.01, price_rule: PriceRule = RESTING_ORDER_PRICE
) -> admin_pb2.CreateInstrumentRequest:
    return admin_pb2.CreateInstrumentRequest(
        instrument=common_pb2.Instrument(
            symbol=symbol, description="d", currency="EUR", multiplier=10.0
        ),
        tick_size=tick,
        price_rule=price_rule,
    )


async def _listed(admin: Conn) -> dict[str, Any]:
    response = ok(await admin.request(admin_pb2.ListInstrumentsRequest()), "ListInstruments")
    return {i.instrument.symbol: i for i in response.instruments}


async def test_create_answers_and_lists_the_instrument(world: World) -> None:
    """CreateInstrumentResponse carries created_timestamp and order_book_id; ListInstrumentsResponse lists the instrument with its fields."""
    admin = await world.admin()
    symbol = new_symbol()
    response = ok(
        await admin.request(_create(symbol, tick=0.05, price_rule=SPREAD_CAPTURE)), "create"
    )
    world.created.append(symbol)
    assert response.order_book_id > 0 and response.created_timestamp > 1.5e18, (
        f"CreateInstrumentResponse: expected an order_book_id and a ns timestamp, received {response}"
    )
    listed = (await _listed(admin)).get(symbol)
    assert listed is not None, f"ListInstruments: expected {symbol} listed, received it missing"
    eq(
        (
            listed.order_book_id,
            listed.price_rule,
            listed.instrument.currency,
            listed.instrument.multiplier,
        ),
        (response.order_book_id, SPREAD_CAPTURE, "EUR", 10.0),
        "listed (order_book_id, price_rule, currency, multiplier)",
    )
    price_eq(listed.tick_size, 0.05, "listed tick_size")


async def test_instrument_is_in_info_once_admin_has_answered(world: World) -> None:
    """Two-phase create: the instrument exists in Info before Admin answers, so subscribing right after the answer works."""
    info = await world.info(0)
    admin = await world.admin()
    for _ in range(5):
        symbol = new_symbol()
        ok(await admin.request(_create(symbol)), "create")
        world.created.append(symbol)
        ok(
            await subscribe(info, symbol, TOP_OF_BOOK),
            f"subscribe to {symbol} right after its creation was answered",
        )


async def test_instrument_is_tradable_as_soon_as_admin_answered(world: World) -> None:
    """An insert sent to the Risk Gateway after Admin has answered the creation must not be refused as unknown."""
    admin = await world.admin()
    alice = await world.gateway(0)
    for i in range(20):
        symbol = new_symbol()
        ok(await admin.request(_create(symbol)), "create")
        world.created.append(symbol)
        response = await alice.request(
            execution_pb2.InsertOrderRequest(
                instrument_symbol=symbol, side=BUY, price=1.0, quantity=1
            )
        )
        ok(response, f"insert right after the creation of {symbol} was answered (attempt {i + 1})")


async def test_duplicate_symbol_is_refused(world: World) -> None:
    """Symbol must be unique among live instruments: a duplicate create is an error and changes nothing."""
    instrument = await world.create_instrument()
    admin = await world.admin()
    refused(await admin.request(_create(instrument.symbol, tick=0.5)), "create of a live symbol")
    listed = await _listed(admin)
    eq(
        listed[instrument.symbol].order_book_id,
        instrument.book_id,
        "order_book_id of the original after a refused duplicate",
    )
    price_eq(
        listed[instrument.symbol].tick_size,
        instrument.tick,
        "tick_size of the original after a refused duplicate",
    )


@pytest.mark.parametrize(
    "tick", [0.0, -0.01, math.nan, math.inf], ids=["zero", "negative", "nan", "inf"]
)
async def test_bad_tick_size_is_refused(world: World, tick: float) -> None:
    """tick_size must be finite and > 0; a refused create leaves no instrument anywhere."""
    admin = await world.admin()
    symbol = new_symbol()
    refused(await admin.request(_create(symbol, tick=tick)), f"create with tick_size {tick}")
    assert symbol not in await _listed(admin), (
        f"after a refused create: expected {symbol} not listed, received it listed"
    )
    alice = await world.gateway(0)
    refused(await insert(alice, symbol, BUY, 1.0, 1), "insert for a refused instrument")


@pytest.mark.parametrize(
    "symbol",
    ["", "abc", "ABCDEFGHIJKLMNOPQ", "AB_C", "AB C", "ÄB"],
    ids=["empty", "lowercase", "17-chars", "underscore", "space", "non-ascii"],
)
async def test_bad_symbol_is_refused(world: World, symbol: str) -> None:
    """Instrument symbols are 1-16 characters from A-Z, 0-9, '.' and '-'."""
    admin = await world.admin()
    response = await admin.request(_create(symbol))
    if not response.error_message:
        world.created.append(symbol)
    refused(response, f"create with symbol {symbol!r}")


@pytest.mark.parametrize("shape", ["dot", "dash", "sixteen-chars"])
async def test_symbols_of_the_allowed_alphabet_are_accepted(world: World, shape: str) -> None:
    """Symbols of 1-16 characters from A-Z, 0-9, '.' and '-' are accepted."""
    base = new_symbol("S")
    symbol = {"dot": base + ".B", "dash": base + "-1", "sixteen-chars": (base + "Q9" * 8)[:16]}[
        shape
    ]
    instrument = await world.create_instrument(symbol=symbol)
    eq(instrument.symbol, symbol, "created symbol")


async def test_delete_cancels_resting_orders_and_tells_their_owners(world: World) -> None:
    """Delete removes the instrument from Info, then deletes the book: resting orders are cancelled and their owners told (EXECUTION_ON_ORDER_CANCELLED); nobody else is."""
    instrument = await world.create_instrument()
    alice, bob, carol = await world.gateway(0), await world.gateway(1), await world.gateway(2)
    info = await world.info(2)
    a1 = ok(await insert(alice, instrument.symbol, SELL, 10.00, 5), "alice ask").order_id
    a2 = ok(await insert(alice, instrument.symbol, BUY, 9.00, 4), "alice bid").order_id
    b1 = ok(await insert(bob, instrument.symbol, SELL, 10.50, 3), "bob ask").order_id
    ok(await insert(bob, instrument.symbol, BUY, 10.00, 2), "bob partly fills a1")
    ok(await world.delete_instrument(instrument.symbol), "delete")
    expected = {(alice, a1): 3, (alice, a2): 4, (bob, b1): 3}
    for (conn, order_id), quantity in expected.items():
        msg = await conn.expect(
            45,
            has(order_id=order_id),
            f"EXECUTION_ON_ORDER_CANCELLED of order {order_id} on {conn.label}",
        )
        eq(
            (msg.instrument_symbol, msg.cancelled_quantity),
            (instrument.symbol, quantity),
            f"OnOrderCancelled of order {order_id} (symbol, cancelled_quantity)",
        )
        assert msg.timestamp > 1.5e18, (
            f"OnOrderCancelled.timestamp: expected ns, received {msg.timestamp}"
        )
    await info.expect(
        28, lambda m: m.instrument_symbol == instrument.symbol, "OnInstrumentDeleted on Info"
    )
    await world.gateway_barrier(carol)
    stray = [m for m in carol.received(45) if m.instrument_symbol == instrument.symbol]
    assert not stray, (
        f"delete: expected no EXECUTION_ON_ORDER_CANCELLED for carol (no orders), received {len(stray)}"
    )
    assert instrument.symbol not in await _listed(await world.admin()), (
        "after delete: expected the symbol not listed, received it listed"
    )
    refused(await insert(alice, instrument.symbol, BUY, 9.00, 1), "insert for a deleted instrument")


async def test_deleted_symbol_can_be_created_again_with_a_new_book(world: World) -> None:
    """A deleted symbol may be created again; it gets a new order_book_id (ids are never reused)."""
    instrument = await world.create_instrument()
    ok(await world.delete_instrument(instrument.symbol), "delete")
    again = await world.create_instrument(symbol=instrument.symbol)
    assert again.book_id != instrument.book_id, (
        f"recreated symbol: expected a new order_book_id, received {again.book_id} again"
    )
    alice = await world.gateway(0)
    ok(await insert(alice, again.symbol, BUY, 1.0, 1), "insert for the recreated symbol")


async def test_delete_of_unknown_symbol_is_refused(world: World) -> None:
    """Deleting a symbol that is not a live instrument is an error."""
    admin = await world.admin()
    refused(
        await admin.request(admin_pb2.DeleteInstrumentRequest(instrument_symbol=new_symbol())),
        "delete of an unknown symbol",
    )


async def test_clear_cancels_resting_orders_and_keeps_the_instrument(world: World) -> None:
    """ClearOrderBook cancels every resting order (owners told), answers how many, and the instrument stays live and tradable."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    ids = [
        ok(await insert(alice, instrument.symbol, SELL, 10.00 + i / 100, 1), "alice ask").order_id
        for i in range(3)
    ]
    bob_id = ok(await insert(bob, instrument.symbol, BUY, 9.00, 2), "bob bid").order_id
    info = await world.info(2 if len(world.target.participants) > 2 else 0)
    await world.info_barrier(info)  # Info has applied the orders: its first state has them
    ok(await subscribe(info, instrument.symbol, TOP_OF_BOOK), "subscribe")
    await info.expect(
        23,
        lambda m: m.instrument_symbol == instrument.symbol and top(m)[1] is not None,
        "the first top of book, with the asks",
    )
    admin = await world.admin()
    response = ok(
        await admin.request(admin_pb2.ClearOrderBookRequest(instrument_symbol=instrument.symbol)),
        "clear",
    )
    eq(response.cancelled_orders, 4, "ClearOrderBookResponse.cancelled_orders")
    for conn, order_id in [*((alice, i) for i in ids), (bob, bob_id)]:
        await conn.expect(
            45,
            has(order_id=order_id),
            f"EXECUTION_ON_ORDER_CANCELLED of order {order_id}",
        )
    await info.expect(
        23,
        lambda m: m.instrument_symbol == instrument.symbol and top(m) == (None, None),
        "an empty top of book after the clear",
    )
    assert instrument.symbol in await _listed(admin), (
        "after clear: expected the instrument still listed, received it gone"
    )
    ok(await insert(bob, instrument.symbol, BUY, 9.00, 1), "insert after the clear")


async def test_clear_of_unknown_symbol_is_refused(world: World) -> None:
    """Clearing a symbol that is not a live instrument is an error."""
    admin = await world.admin()
    refused(
        await admin.request(admin_pb2.ClearOrderBookRequest(instrument_symbol=new_symbol())),
        "clear of an unknown symbol",
    )


async def test_exchange_stats_count_trades_volume_and_resting_orders(world: World) -> None:
    """GetExchangeStatsResponse: trade_count, traded_volume (total quantity traded), resting_orders (in all books now), exchange_profit (0 for trades at the resting price)."""
    instrument = await world.create_instrument()
    admin = await world.admin()
    before = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats before")
    alice, bob = await world.gateway(0), await world.gateway(1)
    ok(await insert(alice, instrument.symbol, SELL, 10.00, 3), "ask 1")
    ok(await insert(alice, instrument.symbol, SELL, 10.01, 4), "ask 2")
    ok(await insert(alice, instrument.symbol, BUY, 9.00, 1), "bid")
    ok(await insert(bob, instrument.symbol, BUY, 10.05, 5), "taker: 3 + 2")
    await alice.expect(44, lambda m: m.quantity == 2, "the maker's second fill")
    after = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats after")
    eq(
        (
            after.trade_count - before.trade_count,
            after.traded_volume - before.traded_volume,
            after.resting_orders - before.resting_orders,
        ),
        (2, 5, 2),
        "changes of (trade_count, traded_volume, resting_orders)",
    )
    assert abs(after.exchange_profit - before.exchange_profit) < 1e-9, (
        f"exchange_profit change in a RESTING_ORDER_PRICE book: expected 0, received {after.exchange_profit - before.exchange_profit}"
    )


async def test_pipelined_creates_get_distinct_books(world: World) -> None:
    """Creates sent without waiting are each answered (in order) with a distinct order_book_id."""
    admin = await world.admin()
    requests = [_create(new_symbol()) for _ in range(10)]
    ids = [admin.send_request(r) for r in requests]
    books = []
    for request, request_id in zip(requests, ids, strict=True):
        response = ok((await admin.response_to(request, request_id)).msg, "pipelined create")
        world.created.append(request.instrument.symbol)
        books.append(response.order_book_id)
    eq(len(set(books)), 10, "distinct order_book_ids of 10 creates")
