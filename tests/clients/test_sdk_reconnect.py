"""The SDK survives restarts: services run one by one, the Risk Gateway and
Info are killed (SIGKILL, like a crash) and started again on the same port,
and a connected client carries on -- it logs in again, resubscribes, and its
orders and fills keep flowing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import Client
from services.common.pb import admin_pb2, common_pb2
from services.common.wire.client import UpstreamConnection
from tests.clients.conftest import MT, eventually
from tests.launcher.harness import ServiceProcess, stable_port


class Services:
    def __init__(self, root: Path) -> None:
        self.book = ServiceProcess("order_book", root / "ob", "--fsync", "none").start()
        ob = ["--order-book-port", str(self.book.port)]
        self.info = ServiceProcess("info", root / "info", *ob, port=stable_port()).start()
        upstream = [*ob, "--info-port", str(self.info.port)]
        self.admin = ServiceProcess("admin", root / "admin", *upstream).start()
        self.gateway = ServiceProcess(
            "risk_gateway", root / "rg", *upstream, port=stable_port()
        ).start()

    def all(self) -> list[ServiceProcess]:
        return [self.gateway, self.admin, self.info, self.book]

    def restart(self, service: ServiceProcess) -> None:
        service.stop(signal.SIGKILL)
        service.start()  # same port: ServiceProcess keeps the bound one


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = Services(tmp_path_factory.mktemp("services"))
    try:
        yield running
    finally:
        for service in running.all():
            if service.process is not None:
                service.stop()


async def create(services: Services, symbol: str) -> None:
    """Create an instrument; Admin may still be reconnecting after an earlier restart."""
    conn = await UpstreamConnection.open("127.0.0.1", services.admin.port, "admin", "admin-demo")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    try:
        while True:
            response = await conn.request_raw(
                MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
                admin_pb2.CreateInstrumentRequest(
                    instrument=common_pb2.Instrument(symbol=symbol), tick_size=0.5
                ),
            )
            if not response.error_message:
                return
            assert "unavailable" in response.error_message and loop.time() < deadline, response
            await asyncio.sleep(0.1)  # Admin reconnects with its own backoff; nothing to wait on
    finally:
        conn.close()


def connect(services: Services, user: str) -> Any:
    return Client.connect(
        gateway_port=services.gateway.port,
        info_port=services.info.port,
        username=user,
        password=f"{user}-demo",
        backoff_max_s=0.2,
    )


async def test_risk_gateway_restart(services: Services) -> None:
    await create(services, "RGX")
    async with connect(services, "alice") as alice, connect(services, "bob") as bob:
        fills = alice.fills()
        resting = await alice.buy("RGX", 10.0, 5)
        await asyncio.to_thread(services.restart, services.gateway)
        await eventually(lambda: alice.reconnects >= 1 and alice.connected, 10, "reconnect")
        # bob's request waits for his own reconnect, then trades with alice's old order
        hit = await bob.sell("RGX", 10.0, 2)
        assert hit.traded_quantity == 2
        fill = await fills.get(timeout=10)
        assert (fill.order_id, fill.quantity, fill.remaining_quantity) == (resting.order_id, 2, 3)
        cancelled = await alice.cancel("RGX", resting.order_id)
        assert cancelled.cancelled_quantity == 3


async def test_info_restart_resubscribes(services: Services) -> None:
    await create(services, "INFX")
    async with connect(services, "alice") as alice, connect(services, "dave") as dave:
        await eventually(lambda: "INFX" in dave.instruments, 5, "instrument announced")
        top = dave.top_of_book("INFX")
        assert (await top.get(5)).bid is None
        await asyncio.to_thread(services.restart, services.info)
        await eventually(lambda: dave.reconnects >= 1 and dave.connected, 10, "reconnect")
        await alice.buy("INFX", 20.0, 7)
        state = await top.get(10)
        while state.bid is None:
            state = await top.get(10)
        assert (state.bid.price, state.bid.quantity) == (20.0, 7)
        assert "INFX" in dave.instruments
        await alice.cancel_all()


async def test_client_order_id_survives_gateway_restart(services: Services) -> None:
    await create(services, "IDEM")
    async with connect(services, "carol") as carol:
        first = await carol.buy("IDEM", 5.0, 1, client_order_id="idem-1")
        await asyncio.to_thread(services.restart, services.gateway)
        again = await carol.buy("IDEM", 6.0, 9, client_order_id="idem-1")  # a resend
        assert (again.order_id, again.resting_quantity) == (first.order_id, 1)
        await carol.cancel("IDEM", first.order_id)


async def test_bot_rides_through_gateway_restart(services: Services) -> None:
    from tests.clients.test_bots import BotProcess

    await create(services, "RBOT")
    bot = BotProcess(
        (services.gateway.port, services.info.port),
        "noise",
        "dave",
        "RBOT",
        "--rate",
        "20",
        "--duration",
        "4",
        "--seed",
        "5",
    )
    await eventually(lambda: bot.saw("trading RBOT"), 10, "the bot to start")
    await asyncio.to_thread(services.restart, services.gateway)
    await eventually(lambda: bot.saw("risk-gateway: reconnected"), 10, "the bot to reconnect")
    assert await bot.wait(15) == 0, "\n".join(bot.lines)
    assert bot.saw("noise stopped")
