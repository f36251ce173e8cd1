"""The SDK against scriptable fakes of the Risk Gateway and Info over real TCP:
typed errors, streams, shared subscriptions, gap repair and reconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.sdk import (
    Client,
    Disconnected,
    LoginFailed,
    OrderRejected,
    RiskLimitExceeded,
    RollingWindow,
    Side,
    SubscriptionError,
    SyncClient,
    UserLimits,
)
from tests.clients.conftest import eventually
from tests.clients.fakes import FakeGateway, FakeInfo
from tests.launcher.harness import stable_port


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeGateway, FakeInfo]]:
    gateway, info = FakeGateway(), FakeInfo()
    await gateway.start(stable_port())  # restarted on the same port by some tests
    await info.start(stable_port())
    yield gateway, info
    await gateway.stop()
    await info.stop()


def connect(fakes: tuple[FakeGateway, FakeInfo], user: str = "alice", **kw: Any) -> Any:
    gateway, info = fakes
    return Client.connect(
        gateway_port=gateway.port,
        info_port=info.port,
        username=user,
        password=f"{user}-demo",
        **kw,
    )


async def test_connect_learns_instruments(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    async with connect(fakes) as client:
        assert set(client.instruments) == {"AAPL", "MSFT"}
        assert client.instruments["AAPL"].tick_size == 0.01
        assert client.connected


async def test_bad_password_and_no_server(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, info = fakes
    with pytest.raises(LoginFailed, match="invalid username or password"):
        await Client.connect(
            gateway_port=gateway.port, info_port=info.port, username="alice", password="nope"
        )
    await gateway.stop()
    with pytest.raises(Disconnected):
        await Client.connect(
            gateway_port=gateway.port, info_port=None, username="alice", password="alice-demo"
        )


async def test_insert_fill_cancel_amend(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, _ = fakes
    async with connect(fakes) as client:
        fills = client.fills()
        aapl_fills = client.fills("MSFT")
        order = await client.buy("AAPL", 100.5, 10)
        assert (order.symbol, order.side, order.price, order.resting_quantity) == (
            "AAPL",
            Side.BUY,
            100.5,
            10,
        )
        assert order.client_order_id.startswith("sdk-")
        assert client.open_orders()[order.order_id].remaining == 10
        gateway.fill(order.order_id, 4, remaining=6)
        fill = await fills.get(timeout=5)
        assert (fill.order_id, fill.quantity, fill.remaining_quantity) == (order.order_id, 4, 6)
        assert client.open_orders()[order.order_id].remaining == 6
        assert len(aapl_fills) == 0
        amended = await client.amend("AAPL", order.order_id, 100.4, 5)
        assert amended.resting_quantity == 5
        assert client.open_orders()[order.order_id].price == 100.4
        cancelled = await client.cancel("AAPL", order.order_id)
        assert cancelled.order_id == order.order_id
        assert client.open_orders() == {}
        with pytest.raises(OrderRejected, match="unknown order") as info:
            await client.cancel("AAPL", order.order_id)
        assert info.value.operation == "cancel" and info.value.limit is None
        with pytest.raises(OrderRejected):
            await client.amend("AAPL", 999, 1.0, 1)


async def test_rejections_are_typed(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, _ = fakes
    async with connect(fakes) as client:
        gateway.reject = "price is not a multiple of the tick size 0.01"
        with pytest.raises(OrderRejected) as plain:
            await client.sell("AAPL", 100.505, 1)
        assert not isinstance(plain.value, RiskLimitExceeded)
        assert plain.value.message == gateway.reject
        gateway.reject = "max_outstanding_quantity exceeded: 10 + 5 > 12"
        with pytest.raises(RiskLimitExceeded) as limit:
            await client.buy("AAPL", 1.0, 5)
        assert limit.value.limit == "max_outstanding_quantity"
        with pytest.raises(ValueError):
            await client.insert("AAPL", "sideways", 1.0, 1)


async def test_unsolicited_cancels(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, _ = fakes
    async with connect(fakes) as client:
        cancels = client.cancels()
        order = await client.buy("AAPL", 10.0, 3)
        gateway.cancel_unsolicited(order.order_id)
        cancel = await cancels.get(timeout=5)
        assert (cancel.order_id, cancel.cancelled_quantity, cancel.reason) == (
            order.order_id,
            3,
            "order book cleared",
        )
        assert client.open_orders() == {}


async def test_risk_limits_round_trip(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    async with connect(fakes) as client:
        limits = UserLimits(max_outstanding_quantity=50, message_rate=RollingWindow(10, 1))
        await client.set_user_limits(limits)
        layers = await client.get_user_limits()
        assert layers.own == limits
        assert layers.admin == UserLimits()


async def test_top_of_book_shared_and_released(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    _, info = fakes
    info.set_book("AAPL", [(100.0, 5)], [(101.0, 7)])
    async with connect(fakes) as client:
        first = client.top_of_book("AAPL")
        top = await first.get(timeout=5)
        assert (top.bid.price, top.bid.quantity, top.ask.price) == (100.0, 5, 101.0)
        assert top.mid == 100.5 and top.sequence_number == 1
        second = client.top_of_book("AAPL")
        assert (await second.get(timeout=5)) == top  # late reader: current state first
        assert info.subscribe_count == 1
        info.set_book("AAPL", [(100.5, 1)], [])
        for stream in (first, second):
            update = await stream.get(timeout=5)
            assert update.bid.price == 100.5 and update.ask is None
        first.close()
        second.close()
        await eventually(lambda: not info.subs, what="unsubscribe")
        assert client.market.subscriptions == []


async def test_unknown_symbol_raises_on_read(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    async with connect(fakes) as client:
        with pytest.raises(SubscriptionError, match="unknown instrument"):
            async for _ in client.top_of_book("NOPE"):
                pass
        assert client.market.subscriptions == []


async def test_book_gap_takes_fresh_snapshot(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    _, info = fakes
    async with connect(fakes) as client:
        stream = client.top_of_book("AAPL")
        assert (await stream.get(timeout=5)).sequence_number == 1
        info.set_book("AAPL", [(99.0, 1)], [], skip=3)  # numbers 2-4 "lost"
        gapped = await stream.get(timeout=5)
        assert gapped.sequence_number == 5
        fresh = await stream.get(timeout=5)
        assert fresh.sequence_number == 1 and fresh.bid.price == 99.0
        assert client.market.gaps == 1
        assert info.subscribe_count == 2
        info.set_book("AAPL", [(98.0, 1)], [])
        assert (await stream.get(timeout=5)).sequence_number == 2
        assert client.market.gaps == 1


async def test_depth_levels_and_dedupe(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    _, info = fakes
    bids = [(100.0 - i, 1) for i in range(5)]
    info.set_book("MSFT", bids, [(101.0, 2)])
    async with connect(fakes) as client:
        two = client.depth("MSFT", levels=2)
        book = await two.get(timeout=5)
        assert [level.price for level in book.bids] == [100.0, 99.0]
        assert book.top.ask.price == 101.0
        everything = client.depth("MSFT", levels=0)  # needs more depth: renewed
        full = await everything.get(timeout=5)
        assert len(full.bids) == 5
        info.set_book("MSFT", [*bids, (90.0, 1)], [(101.0, 2)])  # deeper than 2 levels only
        assert len((await everything.get(timeout=5)).bids) == 6
        info.set_book("MSFT", [(100.0, 9)], [(101.0, 2)])
        latest = await two.get(timeout=5)
        assert latest.bids[0].quantity == 9
        assert len(two) == 0  # the unchanged 2-level views were not repeated


async def test_trades_and_trade_gaps(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    _, info = fakes
    async with connect(fakes) as client:
        trades = client.trades("AAPL")
        await eventually(lambda: len(info.subs) == 1, what="subscription")
        info.trade("AAPL", 100.0, 3)
        info.trade("AAPL", 100.5, 1, skip=2)
        first, second = await trades.get(timeout=5), await trades.get(timeout=5)
        assert (first.price, first.quantity, second.price) == (100.0, 3, 100.5)
        assert client.market.gaps == 1


async def test_instrument_events_and_deletion_ends_streams(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    _, info = fakes
    async with connect(fakes) as client:
        events = client.instrument_events()
        info.add_instrument("TSLA")
        added = await events.get(timeout=5)
        assert (added.kind, added.symbol) == ("added", "TSLA")
        assert "TSLA" in client.instruments
        stream = client.top_of_book("TSLA")
        await stream.get(timeout=5)
        info.delete_instrument("TSLA")
        deleted = await events.get(timeout=5)
        assert (deleted.kind, deleted.symbol) == ("deleted", "TSLA")
        assert [item async for item in stream] == []
        assert "TSLA" not in client.instruments


async def test_gateway_restart_and_lost_answer_resent(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, _ = fakes
    async with connect(fakes) as client:
        gateway.drop_next_insert = True
        order = await client.buy("AAPL", 50.0, 2)  # answer lost, resent, same outcome
        assert gateway.inserts == 1 and order.order_id == 1
        assert client.reconnects == 1
        port = gateway.port
        await gateway.stop()
        await eventually(lambda: not client.connected, what="disconnect noticed")
        restarted = FakeGateway()
        await restarted.start(port)
        try:
            result = await client.sell("AAPL", 51.0, 1)  # waits for the reconnect
            assert result.order_id == 1 and restarted.inserts == 1
            assert client.reconnects == 2
        finally:
            await restarted.stop()


async def test_info_restart_resubscribes(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    _, info = fakes
    async with connect(fakes) as client:
        stream = client.top_of_book("AAPL")
        assert (await stream.get(timeout=5)).sequence_number == 1
        msft = client.top_of_book("MSFT")
        await msft.get(timeout=5)
        port = info.port
        await info.stop()
        restarted = FakeInfo(symbols=("AAPL",))  # MSFT was deleted meanwhile
        restarted.set_book("AAPL", [(42.0, 1)], [])
        await restarted.start(port)
        try:
            again = await stream.get(timeout=10)
            assert again.sequence_number == 1 and again.bid.price == 42.0
            assert [item async for item in msft] == []
            assert set(client.instruments) == {"AAPL"}
        finally:
            await restarted.stop()


async def test_no_reconnect_means_disconnected(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    gateway, _ = fakes
    client = await connect(fakes, reconnect=False, request_timeout_s=0.3)
    try:
        await gateway.stop()
        await eventually(lambda: not client.connected, what="disconnect noticed")
        with pytest.raises(Disconnected):
            await client.buy("AAPL", 1.0, 1)
    finally:
        await client.close()


async def test_sync_facade(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    import asyncio

    gateway, info = fakes
    info.set_book("AAPL", [(10.0, 1)], [])

    def script() -> tuple[object, ...]:
        with SyncClient.connect(
            gateway_port=gateway.port, info_port=info.port, username="bob", password="bob-demo"
        ) as client:
            fills = client.fills(timeout=5)
            order = client.buy("AAPL", 10.0, 2)
            gateway_loop.call_soon_threadsafe(gateway.fill, order.order_id, 2, 0)
            fill = next(fills)
            top = client.top_of_book("AAPL", timeout=5).get(5)
            assert top.bid is not None
            return order.resting_quantity, fill.quantity, top.bid.price, sorted(client.instruments)

    gateway_loop = asyncio.get_running_loop()
    result = await asyncio.to_thread(script)
    assert result == (2, 2, 10.0, ["AAPL", "MSFT"])


async def test_close_ends_streams_and_waiting_requests(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    import asyncio

    gateway, _ = fakes
    client = await connect(fakes, request_timeout_s=30)
    top = client.top_of_book("AAPL")
    await top.get(timeout=5)
    await gateway.stop()
    await eventually(lambda: not client.connected, what="disconnect noticed")
    waiting = asyncio.ensure_future(client.buy("AAPL", 1.0, 1))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # waiting for the gateway to come back
    await client.close()
    with pytest.raises(Disconnected, match="closed"):
        await asyncio.wait_for(waiting, 2)
    assert [item async for item in top] == []
