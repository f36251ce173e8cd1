"""Restart and durability (local exchange only): what PROTOCOL.md says survives a restart.

State is prepared, the whole exchange is stopped cleanly (SIGTERM) and started
again on the same data directory, then each rule is checked by its own test.
These tests run after all others (conftest reorders them) because the restart
changes every port.  Against ``--target`` they are skipped: the grader cannot
restart someone else's exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from system_tests.harness import conn as conn_module
from system_tests.harness.checks import BUY, IOC, PRICE_DEPTH_BOOK, SELL, eq, ok, price_eq, refused
from system_tests.harness.exchange import Target, restart_local
from system_tests.harness.world import Instrument, World, insert, new_symbol, subscribe
from system_tests.pb import admin_pb2, info_pb2, order_book_pb2
from system_tests.pb import risk_limits_pb2 as rl

pytestmark = pytest.mark.restart


@dataclass
class Before:
    """What the exchange looked like just before the restart."""

    book: Instrument
    window: Instrument
    order: Any
    coid: str
    last_sequence: int
    stats: Any
    order_ids: set[int]
    trade_ids: set[int]


def _window(limit: int, seconds: int) -> rl.RollingWindowLimit:
    return rl.RollingWindowLimit(limit=limit, window_in_seconds=seconds)


async def _prepare(target: Target) -> Before:
    world = World(target, "restart-prepare")
    try:
        book = await world.create_instrument()
        window = await world.create_instrument()
        alice, bob = await world.gateway(0), await world.gateway(1)
        admin_gw = await world.admin_conn(target.gateway)
        limits = rl.InstrumentRiskLimits(max_outstanding_quantity=8)
        ok(
            await alice.request(
                rl.SetInstrumentRiskLimitsRequest(
                    instrument_symbol=book.symbol, instrument_risk_limits=limits
                )
            ),
            "own limit",
        )
        ceiling = rl.InstrumentRiskLimits(max_outstanding_amount=1e6)
        ok(
            await admin_gw.request(
                rl.SetInstrumentRiskLimitsRequest(
                    instrument_symbol=book.symbol,
                    instrument_risk_limits=ceiling,
                    username=world.user(0),
                )
            ),
            "admin limit",
        )
        coid = new_symbol("C")
        order = ok(
            await insert(alice, book.symbol, SELL, 10.00, 5, client_order_id=coid),
            "order with a client_order_id",
        )
        ok(await insert(bob, book.symbol, BUY, 10.00, 2), "partial fill")
        await alice.expect(44, lambda m: m.order_id == order.order_id, "alice's fill")
        window_limits = rl.InstrumentRiskLimits(order_quantity_rolling_limit=_window(20, 600))
        ok(
            await alice.request(
                rl.SetInstrumentRiskLimitsRequest(
                    instrument_symbol=window.symbol, instrument_risk_limits=window_limits
                )
            ),
            "window limit",
        )
        ok(await insert(alice, window.symbol, BUY, 10.00, 12, IOC), "12 into the window")
        ob = await world.order_book()
        marker = ok(
            await ob.request(
                order_book_pb2.InsertOrderRequest(
                    order_book_id=book.book_id,
                    side=BUY,
                    price=1.00,
                    quantity=1,
                    on_behalf_of_username="sys-marker",
                )
            ),
            "marker",
        )
        event = await ob.expect(
            15,
            lambda m: m.order_id == marker.order_id and m.sequence_number > 0,
            "the marker's event",
        )
        admin = await world.admin()
        stats = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats")
        return Before(
            book,
            window,
            order,
            coid,
            event.sequence_number,
            stats,
            set(conn_module.ISSUED_ORDER_IDS),
            set(conn_module.ISSUED_TRADE_IDS),
        )
    finally:
        for conn in world.conns:
            await conn.close()


async def _delete(target: Target, symbols: list[str]) -> None:
    world = World(target, "restart-cleanup")
    world.created = symbols
    await world.cleanup()


@pytest.fixture(scope="module")
def before(target: Target) -> Iterator[Before]:
    if target.local is None:
        pytest.skip("restart tests need an exchange the grader started (not --target)")
    state = asyncio.run(_prepare(target))
    restart_local(target)
    yield state
    asyncio.run(_delete(target, [state.book.symbol, state.window.symbol]))


async def test_instruments_survive_a_restart(world: World, before: Before) -> None:
    """Instruments, their books and their trade history survive a restart (nothing accepted is ever lost)."""
    admin = await world.admin()
    listed = {
        i.instrument.symbol: i
        for i in ok(await admin.request(admin_pb2.ListInstrumentsRequest()), "list").instruments
    }
    for instrument in (before.book, before.window):
        assert instrument.symbol in listed, (
            f"after restart: expected {instrument.symbol} listed, received it missing"
        )
        eq(
            listed[instrument.symbol].order_book_id,
            instrument.book_id,
            "order_book_id after restart",
        )
    info = await world.info(2)
    quotes = {
        q.instrument_symbol: q
        for q in ok(await info.request(info_pb2.QuotesRequest()), "quotes").quotes
    }
    assert before.book.symbol in quotes, (
        f"after restart: expected Info to list {before.book.symbol}, received it missing"
    )
    price_eq(quotes[before.book.symbol].last_trade_price, 10.00, "last trade price after restart")
    eq(quotes[before.book.symbol].traded_volume, 2, "traded_volume after restart")


async def test_resting_orders_survive_a_restart(world: World, before: Before) -> None:
    """Resting orders survive with their remaining quantity (Order Book snapshot and Info depth)."""
    ob = await world.order_book()
    mine = await ob.expect(
        15, lambda m: m.order_id == before.order.order_id, "the resting order in the snapshot"
    )
    eq(
        (mine.quantity, mine.sequence_number),
        (3, 0),
        "snapshot (remaining quantity, sequence_number) after restart",
    )
    info = await world.info(2)
    ok(await subscribe(info, before.book.symbol, PRICE_DEPTH_BOOK), "subscribe depth")
    await info.expect(
        24,
        lambda m: (
            m.instrument_symbol == before.book.symbol
            and [(round(lv.price, 9), lv.quantity) for lv in m.asks] == [(10.0, 3)]
        ),
        "Info depth with the resting ask (10.00 x 3) after restart",
    )


async def test_sequence_numbers_continue_after_a_restart(world: World, before: Before) -> None:
    """sequence_number starts at 1 and increases by exactly 1 per event, and continues after a restart."""
    ob = await world.order_book()
    response = ok(
        await ob.request(
            order_book_pb2.InsertOrderRequest(
                order_book_id=before.book.book_id,
                side=BUY,
                price=1.00,
                quantity=1,
                on_behalf_of_username="sys-marker",
            )
        ),
        "insert after restart",
    )
    event = await ob.expect(15, lambda m: m.order_id == response.order_id, "its event")
    assert event.sequence_number > before.last_sequence, (
        f"after restart: expected sequence numbers to continue after {before.last_sequence}, received {event.sequence_number}"
    )


async def test_ids_are_never_reused_after_a_restart(world: World, before: Before) -> None:
    """Order ids and trade ids are unique across the whole exchange and never reused (also not after a restart)."""
    instrument = await world.create_instrument()
    alice, bob = await world.gateway(0), await world.gateway(1)
    order_ids, trade_ids = [], []
    for _ in range(20):
        maker = ok(await insert(alice, instrument.symbol, SELL, 10.00, 1), "maker")
        taker = ok(await insert(bob, instrument.symbol, BUY, 10.00, 1), "taker")
        order_ids += [maker.order_id, taker.order_id]
        trade_ids += list(taker.trade_ids)
    reused = sorted(set(order_ids) & before.order_ids)
    assert not reused, (
        f"after restart: expected new order ids, received {len(reused)} issued before the restart (e.g. {reused[:3]})"
    )
    reused = sorted(set(trade_ids) & before.trade_ids)
    assert not reused, (
        f"after restart: expected new trade ids, received {len(reused)} issued before the restart (e.g. {reused[:3]})"
    )


async def test_client_order_id_survives_a_restart(world: World, before: Before) -> None:
    """A client_order_id resend returns the original outcome also after a restart of any service."""
    alice = await world.gateway(0)
    again = ok(
        await insert(alice, before.book.symbol, BUY, 9.00, 1, client_order_id=before.coid),
        "resend after restart",
    )
    eq(
        (again.order_id, list(again.trade_ids), again.traded_quantity, again.resting_quantity),
        (
            before.order.order_id,
            list(before.order.trade_ids),
            before.order.traded_quantity,
            before.order.resting_quantity,
        ),
        "resend after restart: (order_id, trade_ids, traded, resting)",
    )


async def test_limits_and_outstanding_survive_a_restart(world: World, before: Before) -> None:
    """Limits and outstanding amounts survive a Risk Gateway restart (or it behaves as if they had: it never lets a user exceed a limit)."""
    alice = await world.gateway(0)
    got = ok(await alice.request(rl.GetInstrumentRiskLimitsRequest()), "get limits")
    eq(
        got.risk_limits_by_instrument[before.book.symbol].max_outstanding_quantity,
        8,
        "own max_outstanding_quantity after restart",
    )
    eq(
        got.admin_risk_limits_by_instrument[before.book.symbol].max_outstanding_amount,
        1e6,
        "admin max_outstanding_amount after restart",
    )
    refused(
        await insert(alice, before.book.symbol, SELL, 11.00, 6),
        "6 more with 3 outstanding and a limit of 8",
        contains="max_outstanding_quantity",
    )
    ok(await insert(alice, before.book.symbol, SELL, 11.00, 5), "5 more (= 8)")


async def test_rolling_windows_survive_a_restart(world: World, before: Before) -> None:
    """Windows survive a Risk Gateway restart: quantity accepted before it still counts."""
    alice = await world.gateway(0)
    refused(
        await insert(alice, before.window.symbol, BUY, 10.00, 9, IOC),
        "9 with 12 of 20 used before the restart",
        contains="order_quantity_rolling_limit",
    )
    ok(await insert(alice, before.window.symbol, BUY, 10.00, 8, IOC), "8 (= 20)")


async def test_exchange_stats_survive_a_restart(world: World, before: Before) -> None:
    """Exchange statistics count every trade, also those made before a restart."""
    admin = await world.admin()
    stats = ok(await admin.request(admin_pb2.GetExchangeStatsRequest()), "stats after restart")
    assert (
        stats.trade_count >= before.stats.trade_count
        and stats.traded_volume >= before.stats.traded_volume
    ), (
        f"after restart: expected trade_count/traded_volume >= {before.stats.trade_count}/{before.stats.traded_volume}, "
        f"received {stats.trade_count}/{stats.traded_volume}"
    )
