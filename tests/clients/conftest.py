"""Shared helpers for the client tests: waiting, one real exchange per session,
and an admin connection to create the instruments each test trades."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.pb import admin_pb2, common_pb2
from services.common.wire.client import UpstreamConnection
from tests.launcher.harness import Exchange

MT = common_pb2.MessageType
_symbols = itertools.count(1)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds (checked each loop tick), or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """The whole exchange via ``optivex up``, shared by the live client tests.

    Tests keep out of each other's way by trading instruments they create
    themselves (:func:`new_instrument`).  Stopping it checks a clean exit.
    """
    running = Exchange(tmp_path_factory.mktemp("exchange")).start()
    try:
        yield running
    finally:
        pids = running.services()
        status = running.stop()
        running.kill_tree()
        assert status == 0, running.stderr
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def new_instrument(
    exchange: Exchange, prefix: str = "T", tick_size: float = 0.01, spread_capture: bool = False
) -> str:
    """Create a fresh instrument through Admin and return its symbol."""
    symbol = f"{prefix}{next(_symbols)}"
    await admin_request(
        exchange,
        MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
        admin_pb2.CreateInstrumentRequest(
            instrument=common_pb2.Instrument(
                symbol=symbol, description=f"Test {symbol}", currency="USD", multiplier=1.0
            ),
            tick_size=tick_size,
            price_rule=common_pb2.SPREAD_CAPTURE
            if spread_capture
            else common_pb2.RESTING_ORDER_PRICE,
        ),
    )
    return symbol


async def admin_request(exchange: Exchange, message_type: int, request: object) -> object:
    conn = await UpstreamConnection.open(
        "127.0.0.1", exchange.ports["admin"], "admin", "admin-demo", name="test-admin"
    )
    try:
        return await asyncio.wait_for(conn.request(message_type, request), 10)
    finally:
        conn.close()
