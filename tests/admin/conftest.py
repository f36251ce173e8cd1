"""Fixtures for Admin service tests: a real Order Book, a fake or real Info, Admin."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.admin.app import AdminApp
from services.admin.app import build as build_admin
from services.common.config import AdminConfig, OrderBookConfig
from services.common.pb import admin_pb2, common_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.order_book.app import build as build_order_book
from tests.admin.fakes import FakeInfo
from tests.support.inprocess import DEMO_PASSWORDS, SERVICE_PASSWORD, make_config, start_app

MT = common_pb2.MessageType


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BookWatch:
    """A service connection to the Order Book that records every pushed event."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Any]] = []
        self.changed = asyncio.Event()
        self.conn: UpstreamConnection | None = None

    def push(self, message_type: int, message: Any) -> None:
        self.events.append((message_type, message))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[int, Any], bool], timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for message_type, message in self.events[seen:]:
                    if predicate(message_type, message):
                        return message
                seen = len(self.events)
                self.changed.clear()
                await self.changed.wait()

    async def request(self, message_type: int, message: Any) -> Any:
        assert self.conn is not None
        return await asyncio.wait_for(self.conn.request_raw(message_type, message), 5.0)


async def watch_book(port: int) -> BookWatch:
    watch = BookWatch()
    watch.conn = await UpstreamConnection.open(
        "127.0.0.1", port, "service", SERVICE_PASSWORD, name="watch", on_push=watch.push
    )
    return watch


async def live_books(port: int) -> set[int]:
    """The Order Book's live books, from a fresh login snapshot."""
    watch = await watch_book(port)
    await watch.request(MT.ORDER_BOOK_GET_STATS_REQUEST, order_book_pb2.GetStatsRequest())
    assert watch.conn is not None
    watch.conn.close()
    created = {m.order_book_id for t, m in watch.events if t == MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED}
    return created


@dataclass
class Exchange:
    """An Order Book, an Info (fake by default) and Admin, all in-process."""

    tmp: Path
    book_app: Any = None
    book_port: int = 0
    info: FakeInfo = field(default_factory=FakeInfo)
    info_port: int = 0
    admin: AdminApp | None = None
    admin_port: int = 0
    conns: list[UpstreamConnection] = field(default_factory=list)

    async def start_book(self) -> None:
        config = make_config(OrderBookConfig, self.tmp / "book", fsync="none")
        if self.book_port:
            config = make_config(
                OrderBookConfig, self.tmp / "book", fsync="none", port=self.book_port
            )
        self.book_app, self.book_port = await start_app(build_order_book, config)

    async def stop_book(self) -> None:
        await self.book_app.stop()

    async def start_admin(self, **overrides: Any) -> AdminApp:
        values: dict[str, Any] = {
            "order_book_port": self.book_port,
            "info_port": self.info_port,
            "fsync_intents": False,
            "request_timeout_s": 1.0,
        }
        values.update(overrides)
        config = make_config(AdminConfig, self.tmp / "admin", **values)
        app, self.admin_port = await start_app(build_admin, config)
        assert isinstance(app, AdminApp)
        self.admin = app
        return app

    async def connect(self, user: str = "admin") -> UpstreamConnection:
        conn = await UpstreamConnection.open(
            "127.0.0.1", self.admin_port, user, DEMO_PASSWORDS[user], name=f"test-{user}"
        )
        self.conns.append(conn)
        return conn

    async def call(
        self, message_type: int, message: Any, conn: UpstreamConnection | None = None
    ) -> Any:
        conn = conn or await self.connect()
        return await asyncio.wait_for(conn.request_raw(message_type, message), 10.0)

    async def create(self, symbol: str, tick_size: float = 0.01, **kw: Any) -> Any:
        instrument = common_pb2.Instrument(
            symbol=symbol,
            description=kw.pop("description", f"{symbol} Inc."),
            currency=kw.pop("currency", "USD"),
            multiplier=kw.pop("multiplier", 1.0),
        )
        request = admin_pb2.CreateInstrumentRequest(
            instrument=instrument, tick_size=tick_size, **kw
        )
        return await self.call(MT.ADMIN_CREATE_INSTRUMENT_REQUEST, request)

    async def delete(self, symbol: str) -> Any:
        return await self.call(
            MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
            admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol),
        )

    async def listed(self) -> dict[str, Any]:
        response = await self.call(
            MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
        )
        assert response.error_message == ""
        return {entry.instrument.symbol: entry for entry in response.instruments}

    async def watch_book(self) -> BookWatch:
        watch = await watch_book(self.book_port)
        assert watch.conn is not None
        self.conns.append(watch.conn)
        return watch

    async def close(self) -> None:
        for conn in self.conns:
            conn.close()
        if self.admin is not None:
            await self.admin.stop()
        await self.info.stop()
        if self.book_app is not None:
            await self.book_app.stop()


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[Exchange]:
    """Order Book + fake Info running; Admin started by the test (start_admin)."""
    ex = Exchange(tmp_path)
    await ex.start_book()
    ex.info_port = await ex.info.start()
    try:
        yield ex
    finally:
        await ex.close()


@pytest.fixture
async def running(exchange: Exchange) -> Exchange:
    """Like ``exchange``, with Admin started."""
    await exchange.start_admin()
    return exchange
