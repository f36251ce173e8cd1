"""The SDK against the real exchange started with ``optivex up``: orders,
fills, typed errors, risk limits and market-data subscriptions end to end."""

from __future__ import annotations

from typing import Any

import pytest

from clients.sdk import (
    Client,
    InstrumentLimits,
    OrderRejected,
    RiskLimitExceeded,
    Side,
    SubscriptionError,
    SyncClient,
    TimeInForce,
)
from services.common.pb import admin_pb2
from tests.clients.conftest import MT, admin_request, new_instrument
from tests.launcher.harness import Exchange


def connect(exchange: Exchange, user: str) -> Any:
    return Client.connect(
        gateway_port=exchange.ports["risk-gateway"],
        info_port=exchange.ports["info"],
        username=user,
        password=f"{user}-demo",
    )


async def test_orders_fills_cancel_amend(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange)
    async with connect(exchange, "alice") as alice, connect(exchange, "bob") as bob:
        assert symbol in alice.instruments and alice.instruments[symbol].tick_size == 0.01
        alice_fills, bob_fills = alice.fills(symbol), bob.fills(symbol)
        bid = await alice.buy(symbol, 100.5, 10)
        assert (bid.traded_quantity, bid.resting_quantity) == (0, 10)
        hit = await bob.sell(symbol, 100.0, 4)  # trades at the resting price
        assert (hit.traded_quantity, hit.resting_quantity, len(hit.trade_ids)) == (4, 0, 1)
        passive, aggressive = await alice_fills.get(5), await bob_fills.get(5)
        assert (passive.order_id, passive.side, passive.price, passive.quantity) == (
            bid.order_id,
            Side.BUY,
            100.5,
            4,
        )
        assert passive.remaining_quantity == 6 and passive.trade_id == hit.trade_ids[0]
        assert (aggressive.side, aggressive.price, aggressive.remaining_quantity) == (
            Side.SELL,
            100.5,
            0,
        )
        assert alice.open_orders()[bid.order_id].remaining == 6

        amended = await alice.amend(symbol, bid.order_id, 100.25, 5)
        assert amended.resting_quantity == 5
        cancelled = await alice.cancel(symbol, bid.order_id)
        assert cancelled.cancelled_quantity == 5 and alice.open_orders() == {}

        ioc = await bob.insert(symbol, "buy", 101.0, 3, TimeInForce.IOC)
        assert (ioc.traded_quantity, ioc.resting_quantity) == (0, 0)
        fok = await bob.insert(symbol, Side.SELL, 99.0, 3, "fok")
        assert (fok.traded_quantity, fok.resting_quantity) == (0, 0)


async def test_refusals_are_typed(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange)
    async with connect(exchange, "alice") as alice, connect(exchange, "bob") as bob:
        with pytest.raises(OrderRejected) as off_tick:
            await alice.buy(symbol, 100.005, 1)
        assert off_tick.value.limit is None and off_tick.value.operation == "insert"
        with pytest.raises(OrderRejected):
            await alice.buy("NO-SUCH-SYMBOL", 1.0, 1)
        with pytest.raises(OrderRejected):
            await alice.buy(symbol, 1.0, 0)
        order = await alice.sell(symbol, 50.0, 2)
        with pytest.raises(OrderRejected) as not_yours:
            await bob.cancel(symbol, order.order_id)
        with pytest.raises(OrderRejected) as unknown:
            await bob.cancel(symbol, 987654321)
        assert not_yours.value.message == unknown.value.message  # no hint who owns it
        with pytest.raises(OrderRejected) as amend:
            await bob.amend(symbol, order.order_id, 50.0, 1)
        assert amend.value.operation == "amend"
        await alice.cancel(symbol, order.order_id)


async def test_instrument_risk_limit(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange)
    async with connect(exchange, "carol") as carol:
        await carol.set_instrument_limits(symbol, InstrumentLimits(max_outstanding_quantity=5))
        layers = await carol.get_instrument_limits()
        assert layers.own[symbol].max_outstanding_quantity == 5
        first = await carol.buy(symbol, 10.0, 4)
        with pytest.raises(RiskLimitExceeded) as breach:
            await carol.buy(symbol, 10.0, 2)
        assert breach.value.limit == "max_outstanding_quantity"
        await carol.cancel(symbol, first.order_id)
        await carol.buy(symbol, 10.0, 5)  # fits again
        await carol.cancel_all(symbol)
        await carol.set_instrument_limits(symbol, InstrumentLimits())
        assert symbol not in (await carol.get_instrument_limits()).own


async def test_market_data_streams(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange)
    async with connect(exchange, "alice") as alice, connect(exchange, "dave") as dave:
        top, depth, trades = dave.top_of_book(symbol), dave.depth(symbol, 2), dave.trades(symbol)
        first = await top.get(5)
        assert first.bid is None and first.ask is None and first.sequence_number == 1
        assert (await depth.get(5)).bids == ()
        for i in range(3):
            await alice.buy(symbol, 99.0 - i, 10 + i)
        await alice.sell(symbol, 101.0, 7)
        book = await depth.get(5)
        while len(book.bids) < 2 or not book.asks:
            book = await depth.get(5)
        assert [(lv.price, lv.quantity) for lv in book.bids] == [(99.0, 10), (98.0, 11)]
        assert [(lv.price, lv.quantity) for lv in book.asks] == [(101.0, 7)]
        state = await top.get(5)
        while state.ask is None:
            state = await top.get(5)
        assert state.bid is not None and state.bid.price == 99.0 and state.mid == 100.0
        await dave.sell(symbol, 99.0, 3)
        trade = await trades.get(5)
        assert (trade.price, trade.quantity, trade.aggressor_side) == (99.0, 3, Side.SELL)
        quotes = await dave.quotes()
        assert quotes[symbol].last_price == 99.0 and quotes[symbol].volume == 3
        assert dave.market.gaps == 0
        await alice.cancel_all(symbol)

        with pytest.raises(SubscriptionError):
            await dave.top_of_book("NO-SUCH").get(5)

        events = dave.instrument_events()
        await admin_request(
            exchange,
            MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
            admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol),
        )
        gone = await events.get(5)
        assert (gone.kind, gone.symbol) == ("deleted", symbol)
        assert symbol not in dave.instruments
        rest = [item async for item in trades]
        assert rest == []


async def test_sync_client_against_the_exchange(exchange: Exchange) -> None:
    import asyncio

    symbol = await new_instrument(exchange)

    def script() -> tuple[int, int]:
        with SyncClient.connect(
            gateway_port=exchange.ports["risk-gateway"],
            info_port=exchange.ports["info"],
            username="bob",
            password="bob-demo",
        ) as bob:
            fills = bob.fills(symbol, timeout=5)
            bob.buy(symbol, 20.0, 5)
            result = bob.sell(symbol, 20.0, 2)  # bob trades with himself: allowed
            got = [next(fills), next(fills)]
            bob.cancel_all()
            return result.traded_quantity, sum(f.quantity for f in got)

    assert await asyncio.to_thread(script) == (2, 4)


async def test_exchange_cancels_and_spread_capture(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange, spread_capture=True)
    async with connect(exchange, "alice") as alice, connect(exchange, "bob") as bob:
        cancels, bob_fills = alice.cancels(symbol), bob.fills(symbol)
        resting = await alice.sell(symbol, 10.0, 5)
        await bob.buy(symbol, 10.5, 2)  # pays its own limit in a SPREAD_CAPTURE book
        fill = await bob_fills.get(5)
        assert (fill.price, fill.quantity) == (10.5, 2)
        await admin_request(
            exchange,
            MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST,
            admin_pb2.ClearOrderBookRequest(instrument_symbol=symbol),
        )
        cancel = await cancels.get(5)
        assert (cancel.order_id, cancel.cancelled_quantity) == (resting.order_id, 3)
        assert cancel.reason and alice.open_orders(symbol) == {}
