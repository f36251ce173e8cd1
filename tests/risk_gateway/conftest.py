"""An in-process exchange for Risk Gateway service tests: the real Order Book,
Info, Admin and Risk Gateway on port 0, plus participant connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.admin.app import build as build_admin
from services.common.auth import Authenticator
from services.common.clock import Clock, ManualClock, SystemClock
from services.common.config import AdminConfig, InfoConfig, OrderBookConfig, RiskGatewayConfig
from services.common.lifecycle import Factory
from services.common.pb import admin_pb2, common_pb2, execution_pb2, risk_limits_pb2
from services.common.wire.client import UpstreamConnection
from services.info.app import build as build_info
from services.order_book.app import build as build_order_book
from services.risk_gateway.app import RiskGatewayApp
from services.risk_gateway.app import build as build_gateway
from tests.support.inprocess import DEMO_PASSWORDS, demo_users, make_config

MT = common_pb2.MessageType
ex = execution_pb2
rl = risk_limits_pb2
BUY, SELL = 0, 1
GTC, IOC, FOK = 0, 1, 2
TIMEOUT = 10.0


def _fast_verify() -> Any:
    """Password check without scrypt (each costs ~50 ms; a test logs in a dozen times)."""
    by_hash = {user.password_hash: DEMO_PASSWORDS[user.name] for user in demo_users()}
    return lambda encoded, password: by_hash.get(encoded) == password


async def start_app(factory: Factory[Any], config: Any, clock: Clock | None = None) -> Any:
    """Like tests.support.inprocess.start_app, with the fast password check."""
    clock = clock or SystemClock()
    authenticator = Authenticator(demo_users(), clock, verify=_fast_verify())
    app = factory(config, authenticator, clock)
    _, port = await app.start()
    return app, port


class Trader:
    """A logged-in client of the Gateway that records every push it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn: UpstreamConnection | None = None
        self.pushes: list[tuple[int, Any]] = []
        self._arrived = asyncio.Event()

    def _push(self, message_type: int, message: Any) -> None:
        self.pushes.append((message_type, message))
        self._arrived.set()

    async def call(self, message_type: int, message: Any) -> Any:
        assert self.conn is not None
        return await asyncio.wait_for(self.conn.request_raw(message_type, message), TIMEOUT)

    def send(self, message_type: int, message: Any) -> asyncio.Future[Any]:
        """Send without waiting (pipelining); returns the future of the answer."""
        assert self.conn is not None
        return self.conn.request_raw(message_type, message)

    async def insert(
        self,
        symbol: str,
        side: int,
        price: float,
        quantity: int,
        tif: int = GTC,
        client_order_id: str = "",
    ) -> Any:
        return await self.call(
            MT.EXECUTION_INSERT_ORDER_REQUEST,
            ex.InsertOrderRequest(
                instrument_symbol=symbol,
                side=side,  # type: ignore[arg-type]
                price=price,
                quantity=quantity,
                time_in_force=tif,  # type: ignore[arg-type]
                client_order_id=client_order_id,
            ),
        )

    async def cancel(self, symbol: str, order_id: int) -> Any:
        return await self.call(
            MT.EXECUTION_CANCEL_ORDER_REQUEST,
            ex.CancelOrderRequest(instrument_symbol=symbol, order_id=order_id),
        )

    async def amend(self, symbol: str, order_id: int, price: float, quantity: int) -> Any:
        return await self.call(
            MT.EXECUTION_AMEND_ORDER_REQUEST,
            ex.AmendOrderRequest(
                instrument_symbol=symbol, order_id=order_id, price=price, quantity=quantity
            ),
        )

    async def set_instrument_limits(self, symbol: str, username: str = "", **limits: Any) -> Any:
        return await self.call(
            MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST,
            rl.SetInstrumentRiskLimitsRequest(
                instrument_symbol=symbol,
                username=username,
                instrument_risk_limits=rl.InstrumentRiskLimits(**limits),
            ),
        )

    async def set_user_limits(self, username: str = "", **limits: Any) -> Any:
        return await self.call(
            MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST,
            rl.SetUserRiskLimitsRequest(
                username=username, user_risk_limits=rl.UserRiskLimits(**limits)
            ),
        )

    async def wait_pushes(self, count: int, timeout: float = TIMEOUT) -> list[tuple[int, Any]]:
        """Wait until at least ``count`` pushes arrived; returns all of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.pushes) < count:
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: {len(self.pushes)} of {count} pushes")
            await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.pushes

    def fills(self) -> list[Any]:
        return [m for t, m in self.pushes if t == MT.EXECUTION_ON_FILL]

    def cancels(self) -> list[Any]:
        return [m for t, m in self.pushes if t == MT.EXECUTION_ON_ORDER_CANCELLED]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@dataclass
class Exchange:
    """The four services in-process (see the module docstring)."""

    tmp: Path
    clock: Clock = field(default_factory=ManualClock)
    book: Any = None
    book_port: int = 0
    info: Any = None
    info_port: int = 0
    admin: Any = None
    admin_port: int = 0
    gateway: RiskGatewayApp | None = None
    gateway_port: int = 0
    traders: list[Trader] = field(default_factory=list)
    admin_conn: UpstreamConnection | None = None

    async def start(self) -> None:
        await self.start_book()
        config = make_config(InfoConfig, self.tmp / "info", order_book_port=self.book_port)
        self.info, self.info_port = await start_app(build_info, config)
        config_admin = make_config(
            AdminConfig,
            self.tmp / "admin",
            order_book_port=self.book_port,
            info_port=self.info_port,
            fsync_intents=False,
        )
        self.admin, self.admin_port = await start_app(build_admin, config_admin)
        await self.start_gateway()

    async def start_book(self) -> None:
        overrides: dict[str, Any] = {"fsync": "none"}
        if self.book_port:
            overrides["port"] = self.book_port
        self.book, self.book_port = await start_app(
            build_order_book, make_config(OrderBookConfig, self.tmp / "book", **overrides)
        )

    async def start_gateway(self, **overrides: Any) -> RiskGatewayApp:
        values: dict[str, Any] = {
            "order_book_port": self.book_port,
            "info_port": self.info_port,
            "reconnect_max_backoff_s": 0.2,
        }
        if self.gateway_port:
            values["port"] = self.gateway_port
        values.update(overrides)
        config = make_config(RiskGatewayConfig, self.tmp / "gateway", **values)
        app, self.gateway_port = await start_app(build_gateway, config, self.clock)
        assert isinstance(app, RiskGatewayApp)
        self.gateway = app
        return app

    async def stop(self) -> None:
        for trader in self.traders:
            trader.close()
        if self.admin_conn is not None:
            self.admin_conn.close()
        for app in (self.gateway, self.admin, self.info, self.book):
            if app is not None:
                await app.stop()

    async def trader(self, name: str = "alice") -> Trader:
        trader = Trader(name)
        trader.conn = await UpstreamConnection.open(
            "127.0.0.1",
            self.gateway_port,
            name,
            DEMO_PASSWORDS[name],
            name=f"trader-{name}",
            on_push=trader._push,
        )
        self.traders.append(trader)
        return trader

    async def admin_call(self, message_type: int, message: Any) -> Any:
        if self.admin_conn is None or not self.admin_conn.connected:
            self.admin_conn = await UpstreamConnection.open(
                "127.0.0.1", self.admin_port, "admin", DEMO_PASSWORDS["admin"], name="test-admin"
            )
        return await asyncio.wait_for(self.admin_conn.request_raw(message_type, message), TIMEOUT)

    async def create(self, symbol: str, tick_size: float = 0.01, price_rule: int = 0) -> int:
        response = await self.admin_call(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol=symbol, currency="USD", multiplier=1.0),
                tick_size=tick_size,
                price_rule=price_rule,  # type: ignore[arg-type]
            ),
        )
        assert response.error_message == "", response.error_message
        return int(response.order_book_id)

    async def delete(self, symbol: str) -> None:
        response = await self.admin_call(
            MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
            admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol),
        )
        assert response.error_message == "", response.error_message

    async def clear(self, symbol: str) -> int:
        response = await self.admin_call(
            MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST,
            admin_pb2.ClearOrderBookRequest(instrument_symbol=symbol),
        )
        assert response.error_message == "", response.error_message
        return int(response.cancelled_orders)


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[Exchange]:
    exchange = Exchange(tmp_path)
    await exchange.start()
    try:
        yield exchange
    finally:
        await exchange.stop()
