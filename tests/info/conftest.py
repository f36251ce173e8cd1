"""In-process exchange for Info's service tests: the real Order Book, then Info.

Everything talks over real TCP on port 0. ``Exchange`` keeps a ``service``
connection to the Order Book (to create books and trade) and one to Info (playing
Admin); clients are raw wire clients so tests see exactly the bytes Info writes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.config import InfoConfig, OrderBookConfig
from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.info.app import InfoApp
from services.info.app import build as build_info
from services.order_book.app import OrderBookApp
from services.order_book.app import build as build_order_book
from tests.support.inprocess import DEMO_PASSWORDS, SERVICE_PASSWORD, make_config, start_app
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
BUY, SELL = 0, 1


class Client(RawClient):
    """A raw client with helpers for the messages Info pushes."""

    async def next(self, *kinds: int, timeout: float = 5.0) -> Any:
        """The next message, which must be of one of ``kinds``."""
        kind, message = await self.recv(timeout)
        assert kind in kinds, f"expected {kinds}, got {kind}: {message}"
        return message

    async def skip_until(self, kind: int, timeout: float = 5.0) -> Any:
        """Read until a message of ``kind`` (for setup phases only)."""
        while True:
            got, message = await self.recv(timeout)
            if got == kind:
                return message

    async def expect_silence(self, seconds: float = 0.2) -> None:
        """Nothing but heartbeats arrives for ``seconds`` (used sparingly)."""
        try:
            kind, message = await self.recv(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {kind}: {message}")

    async def request(self, message: Any, kind: int | None = None) -> Any:
        self.send(message, kind)
        return await self.next(kind + 1 if kind is not None else _response_type(message))


def _response_type(message: Any) -> int:
    from services.common.wire.registry import message_type_of

    return message_type_of(message) + 1


class Exchange:
    """The Order Book and Info, started in-process, plus driver connections."""

    def __init__(self, tmp_path: Path, info_overrides: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.info_overrides = info_overrides
        self.order_book: OrderBookApp | None = None
        self.order_book_port = 0
        self.info: InfoApp | None = None
        self.info_port = 0
        self.ob: UpstreamConnection | None = None
        self.admin: UpstreamConnection | None = None
        self.admin_pushes: list[tuple[int, Any]] = []
        self.clients: list[RawClient] = []

    async def start_order_book(self) -> None:
        config = make_config(
            OrderBookConfig, self.tmp_path / "order_book", fsync="none", port=self.order_book_port
        )
        app, self.order_book_port = await start_app(build_order_book, config)
        assert isinstance(app, OrderBookApp)
        self.order_book = app
        self.ob = await UpstreamConnection.open(
            "127.0.0.1", self.order_book_port, "service", SERVICE_PASSWORD, name="test->ob"
        )

    async def stop_order_book(self) -> None:
        assert self.order_book is not None and self.ob is not None
        self.ob.close()
        await self.order_book.stop()
        self.order_book = None

    async def start_info(self, **overrides: Any) -> None:
        config = make_config(
            InfoConfig,
            self.tmp_path / "info",
            order_book_port=self.order_book_port,
            **{**self.info_overrides, **overrides},
        )
        app, self.info_port = await start_app(build_info, config)
        assert isinstance(app, InfoApp)
        self.info = app
        self.admin_pushes = []
        self.admin = await UpstreamConnection.open(
            "127.0.0.1",
            self.info_port,
            "service",
            SERVICE_PASSWORD,
            name="test->info",
            on_push=lambda kind, message: self.admin_pushes.append((kind, message)),
        )

    async def stop_info(self) -> None:
        assert self.info is not None and self.admin is not None
        self.admin.close()
        await self.info.stop()
        self.info = None

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        if self.info is not None:
            await self.stop_info()
        if self.order_book is not None:
            await self.stop_order_book()

    # ------------------------------------------------------------------ driving

    async def create_book(self, tick_size: float = 0.01, price_rule: int = 0) -> int:
        assert self.ob is not None
        response = await self.ob.request(
            MT.ORDER_BOOK_CREATE_REQUEST,
            order_book_pb2.CreateOrderBookRequest(tick_size=tick_size, price_rule=price_rule),  # type: ignore[arg-type]
        )
        return int(response.order_book_id)

    async def create_instrument_raw(
        self, symbol: str, book_id: int, tick_size: float = 0.01, **fields: Any
    ) -> Any:
        assert self.admin is not None
        return await self.admin.request_raw(
            MT.INFO_CREATE_INSTRUMENT_REQUEST,
            info_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(
                    symbol=symbol,
                    description=fields.get("description", f"{symbol} test"),
                    currency=fields.get("currency", "EUR"),
                    multiplier=fields.get("multiplier", 1.0),
                ),
                tick_size=tick_size,
                order_book_id=book_id,
            ),
        )

    async def instrument(self, symbol: str, tick_size: float = 0.01, price_rule: int = 0) -> int:
        """Both phases of an instrument creation, as Admin does them."""
        book_id = await self.create_book(tick_size, price_rule)
        response = await self.create_instrument_raw(symbol, book_id, tick_size)
        assert response.error_message == "", response.error_message
        return book_id

    async def delete_instrument(self, symbol: str) -> Any:
        assert self.admin is not None
        return await self.admin.request_raw(
            MT.INFO_DELETE_INSTRUMENT_REQUEST,
            info_pb2.DeleteInstrumentRequest(instrument_symbol=symbol),
        )

    async def insert(
        self, book_id: int, side: int, price: float, quantity: int, tif: int = 0
    ) -> Any:
        assert self.ob is not None
        return await self.ob.request(
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=book_id,
                side=side,  # type: ignore[arg-type]
                price=price,
                quantity=quantity,
                time_in_force=tif,  # type: ignore[arg-type]
                on_behalf_of_username="alice",
            ),
        )

    async def cancel(self, book_id: int, order_id: int) -> Any:
        assert self.ob is not None
        return await self.ob.request(
            MT.ORDER_BOOK_CANCEL_ORDER_REQUEST,
            order_book_pb2.CancelOrderRequest(order_book_id=book_id, order_id=order_id),
        )

    async def client(self, user: str = "alice", rcvbuf: int | None = None) -> Client:
        """A logged-in client; the login's OnInstrument pushes are left unread."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.info_port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.info_port))
            reader, writer = await asyncio.open_connection(sock=sock)
        client = Client(reader, writer)
        self.clients.append(client)
        response = await client.login(user, DEMO_PASSWORDS[user])
        assert response.error_message == ""
        return client

    async def subscribe(self, client: Client, symbol: str, kind: int, depth: int = 0) -> Any:
        """Subscribe successfully; returns the initial state message."""
        client.send(
            info_pb2.OrderBookSubscribeRequest(
                request_id=77,
                instrument_symbol=symbol,
                subscription_type=kind,  # type: ignore[arg-type]
                depth=depth,
            )
        )
        response = await client.next(MT.INFO_ORDER_BOOK_SUBSCRIBE_RESPONSE)
        assert response.error_message == "", response.error_message
        return await client.next(23 if kind == 0 else 24)


@pytest.fixture
def info_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def exchange(tmp_path: Path, info_overrides: dict[str, Any]) -> AsyncIterator[Exchange]:
    ex = Exchange(tmp_path, info_overrides)
    await ex.start_order_book()
    await ex.start_info()
    try:
        yield ex
    finally:
        await ex.stop()
