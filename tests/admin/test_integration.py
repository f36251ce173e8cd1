"""Admin with the real Info and Risk Gateway: the whole lifecycle as participants see it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clients import admin_cli
from services.admin.app import AdminApp
from services.admin.app import build as build_admin
from services.common.config import AdminConfig, InfoConfig, OrderBookConfig, RiskGatewayConfig
from services.common.pb import admin_pb2, common_pb2, execution_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.info.app import build as build_info
from services.order_book.app import build as build_order_book
from services.risk_gateway.app import build as build_gateway
from tests.admin.conftest import live_books
from tests.support.inprocess import DEMO_PASSWORDS, SERVICE_PASSWORD, make_config, start_app

MT = common_pb2.MessageType


@dataclass
class Stack:
    tmp: Path
    apps: list[Any] = field(default_factory=list)
    conns: list[UpstreamConnection] = field(default_factory=list)
    book_port: int = 0
    info_port: int = 0
    admin: AdminApp | None = None
    admin_port: int = 0
    gateway_port: int = 0

    async def start(self) -> None:
        book, self.book_port = await start_app(
            build_order_book, make_config(OrderBookConfig, self.tmp / "book", fsync="none")
        )
        info, self.info_port = await start_app(
            build_info, make_config(InfoConfig, self.tmp / "info", order_book_port=self.book_port)
        )
        self.apps += [book, info]
        await self.start_admin()
        gateway, self.gateway_port = await start_app(
            build_gateway,
            make_config(
                RiskGatewayConfig,
                self.tmp / "gateway",
                order_book_port=self.book_port,
                info_port=self.info_port,
            ),
        )
        self.apps.append(gateway)

    async def start_admin(self) -> AdminApp:
        config = make_config(
            AdminConfig,
            self.tmp / "admin",
            order_book_port=self.book_port,
            info_port=self.info_port,
            fsync_intents=False,
        )
        app, self.admin_port = await start_app(build_admin, config)
        assert isinstance(app, AdminApp)
        self.admin = app
        return app

    async def login(self, port: int, user: str, on_push: Any = None) -> UpstreamConnection:
        password = SERVICE_PASSWORD if user == "service" else DEMO_PASSWORDS[user]
        conn = await UpstreamConnection.open(
            "127.0.0.1", port, user, password, name=user, on_push=on_push
        )
        self.conns.append(conn)
        return conn

    async def admin_call(self, message_type: int, message: Any) -> Any:
        conn = await self.login(self.admin_port, "admin")
        return await asyncio.wait_for(conn.request_raw(message_type, message), 10)

    async def create(self, symbol: str, tick_size: float = 0.01) -> Any:
        return await self.admin_call(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol=symbol, currency="USD"),
                tick_size=tick_size,
            ),
        )

    async def stop(self) -> None:
        for conn in self.conns:
            conn.close()
        if self.admin is not None:
            await self.admin.stop()
        for app in reversed(self.apps):
            await app.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(tmp_path)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_created_instrument_is_tradable_at_once_and_delete_tells_owners(
    stack: Stack,
) -> None:
    pushes: list[tuple[int, Any]] = []
    got = asyncio.Event()

    def on_push(message_type: int, message: Any) -> None:
        pushes.append((message_type, message))
        got.set()

    alice = await stack.login(stack.gateway_port, "alice", on_push)
    created = await stack.create("AAPL")
    assert created.error_message == ""
    # PROTOCOL.md: an insert sent after Admin's answer must not be refused as unknown.
    inserted = await alice.request_raw(
        MT.EXECUTION_INSERT_ORDER_REQUEST,
        execution_pb2.InsertOrderRequest(
            instrument_symbol="AAPL", side=common_pb2.BUY, price=100.0, quantity=7
        ),
    )
    assert inserted.error_message == "" and inserted.resting_quantity == 7
    listed = await stack.admin_call(
        MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
    )
    [entry] = listed.instruments
    assert entry.instrument.symbol == "AAPL" and entry.order_book_id == created.order_book_id
    assert entry.created_timestamp == created.created_timestamp

    deleted = await stack.admin_call(
        MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
        admin_pb2.DeleteInstrumentRequest(instrument_symbol="AAPL"),
    )
    assert deleted.error_message == ""
    async with asyncio.timeout(5):
        while not any(t == MT.EXECUTION_ON_ORDER_CANCELLED for t, _ in pushes):
            got.clear()
            await got.wait()
    [cancel] = [m for t, m in pushes if t == MT.EXECUTION_ON_ORDER_CANCELLED]
    assert (cancel.order_id, cancel.cancelled_quantity) == (inserted.order_id, 7)
    assert cancel.instrument_symbol == "AAPL"
    assert await live_books(stack.book_port) == set()
    again = await alice.request_raw(
        MT.EXECUTION_INSERT_ORDER_REQUEST,
        execution_pb2.InsertOrderRequest(
            instrument_symbol="AAPL", side=common_pb2.BUY, price=100.0, quantity=1
        ),
    )
    assert again.error_message != ""


async def test_admin_restart_repairs_a_book_left_without_instrument(stack: Stack) -> None:
    assert (await stack.create("KEEP")).error_message == ""
    assert stack.admin is not None
    await stack.admin.stop()
    service = await stack.login(stack.book_port, "service")
    orphan = await service.request(
        MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=0.5)
    )
    await stack.start_admin()
    books = await live_books(stack.book_port)
    assert orphan.order_book_id not in books and len(books) == 1
    listed = await stack.admin_call(
        MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
    )
    assert [e.instrument.symbol for e in listed.instruments] == ["KEEP"]


async def test_cli_against_the_real_services(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "--host", "127.0.0.1",
        "--admin-port", str(stack.admin_port),
        "--gateway-port", str(stack.gateway_port),
        "--json",
    ]  # fmt: skip

    async def run(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        status = await asyncio.to_thread(
            admin_cli.main, [*base, *argv], environ={}, stdin=io.StringIO()
        )
        out = capsys.readouterr().out
        return status, json.loads(out) if out else None

    status, report = await run("bootstrap", str(admin_cli.SAMPLE_LISTINGS))
    assert status == 0 and report["counts"]["created"] == 12
    status, listed = await run("list")
    assert len(listed["instruments"]) == 12
    status, _ = await run("limits", "set", "--user", "alice", "--max-outstanding-quantity", "5")
    assert status == 0
    status, _ = await run(
        "limits", "set-instrument", "AAPL", "--user", "alice", "--order-quantity", "100/60"
    )
    assert status == 0
    status, limits = await run("limits", "get", "--user", "alice")
    assert limits["user_limits"]["admin"]["max_outstanding_quantity"] == 5
    assert limits["instrument_limits"]["admin"]["AAPL"]["order_quantity_rolling_limit"] == {
        "limit": 100,
        "window_in_seconds": 60,
    }
    status, stats = await run("stats")
    assert status == 0 and stats["trade_count"] == 0
