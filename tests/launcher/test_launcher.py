"""``optivex up`` as a user runs it: it starts the four services, announces
them, stops them all cleanly on SIGTERM, and when one dies it stops the
others, says why, and exits non-zero.  Checked from outside: ready file,
TCP ports, exit statuses, and that no child process is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from clients.sdk import Client
from tests.launcher.harness import Exchange, alive, traded_volume, wait_until

SERVICE_MODULES = (
    "services.order_book",
    "services.info",
    "services.admin",
    "services.risk_gateway",
)
SAMPLE = str(Path(__file__).resolve().parents[2] / "clients" / "data" / "sample-listings.csv")


def module_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return argv[2].decode() if len(argv) > 2 and argv[1] == b"-m" else ""


def services_by_module(exchange: Exchange) -> dict[str, int]:
    return {module_of(pid): pid for pid in exchange.services() if module_of(pid) in SERVICE_MODULES}


async def test_up_ready_and_clean_stop(tmp_path: Path, exchanges: list[Exchange]) -> None:
    exchange = Exchange(tmp_path, listings=SAMPLE)
    exchanges.append(exchange)
    await asyncio.to_thread(exchange.start)
    assert set(exchange.ports) == {"order-book", "info", "admin", "risk-gateway"}
    for port in exchange.ports.values():
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    pids = services_by_module(exchange)
    assert set(pids) == set(SERVICE_MODULES)
    async with Client.connect(
        gateway_port=exchange.ports["risk-gateway"],
        info_port=exchange.ports["info"],
        username="alice",
        password="alice-demo",
    ) as alice:
        assert len(alice.instruments) >= 10  # the sample listings were bootstrapped
    status = await asyncio.to_thread(exchange.stop)
    assert status == 0, exchange.stderr
    assert "Optivex is up" in exchange.stdout
    assert "all services stopped cleanly" in exchange.stdout
    assert not [pid for pid in pids.values() if alive(pid)]


@pytest.mark.parametrize("victim", ["services.info", "services.order_book"])
async def test_one_service_dying_stops_the_others(
    tmp_path: Path, exchanges: list[Exchange], victim: str
) -> None:
    exchange = Exchange(tmp_path)
    exchanges.append(exchange)
    await asyncio.to_thread(exchange.start)
    pids = services_by_module(exchange)
    os.kill(pids[victim], signal.SIGKILL)
    status = await asyncio.to_thread(exchange.wait, 30)
    assert status != 0
    name = {"services.info": "info", "services.order_book": "order-book"}[victim]
    assert f"{name} exited with status -9" in exchange.stderr
    assert "stopped the others" in exchange.stderr
    assert not [pid for pid in pids.values() if alive(pid)]


async def test_start_failure_is_reported(tmp_path: Path, exchanges: list[Exchange]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exchange = Exchange(tmp_path, extra_args=["--ports", f"{port},0,0,0"])
        exchanges.append(exchange)
        with pytest.raises(AssertionError, match="exited early"):
            await asyncio.to_thread(exchange.start)
    assert exchange.process is not None and exchange.process.returncode == 1
    assert "order-book exited during start-up" in exchange.stderr


async def test_up_with_bots_trades_and_stops(tmp_path: Path, exchanges: list[Exchange]) -> None:
    exchange = Exchange(tmp_path, listings=SAMPLE, extra_args=["--with-bots", "2"])
    exchanges.append(exchange)
    await asyncio.to_thread(exchange.start)
    children = exchange.services()
    assert len(children) == 6  # four services and two bots
    volume = await traded_volume(exchange.ports["info"])
    assert volume > 0, "the bots started by optivex up never traded"
    status = await asyncio.to_thread(exchange.stop)
    assert status == 0, exchange.stderr
    await asyncio.to_thread(wait_until, lambda: not any(alive(p) for p in children), 5, "exit")
