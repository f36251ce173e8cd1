"""The four services in this process on port 0, for hostile-input tests.

Like ``tests/risk_gateway/conftest.py``'s exchange, but every service gets the
same wire settings (short login and idle deadlines, so "never completed"
frames are resolved within a test) and the apps are reachable for white-box
assertions: the Order Book's engine state hash, the sessions each server
holds, the tasks of the loop.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.admin.app import build as build_admin
from services.common.config import AdminConfig, InfoConfig, OrderBookConfig, RiskGatewayConfig
from services.common.pb import (
    admin_pb2,
    common_pb2,
    execution_pb2,
    info_pb2,
    order_book_pb2,
    risk_limits_pb2,
)
from services.common.wire.client import UpstreamConnection, client_ssl_context
from services.info.app import build as build_info
from services.order_book.app import build as build_order_book
from services.risk_gateway.app import build as build_gateway
from tests.reliability.observe import BookState, order_book_state
from tests.risk_gateway.conftest import start_app
from tests.support.inprocess import DEMO_PASSWORDS, make_config
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
LOGIN_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 3.0


@dataclass
class Port:
    """One service port: who may log in there and which requests it serves."""

    name: str
    port: int
    user: str
    """A user admitted on this port."""
    serves: tuple[int, ...]
    app: Any
    ssl: ssl.SSLContext | None = None
    """How to reach the port when it speaks TLS."""

    async def client(self) -> RawClient:
        if self.ssl is None:
            return await RawClient.connect("127.0.0.1", self.port)
        return await RawClient.connect(
            "127.0.0.1", self.port, ssl=self.ssl, server_hostname="127.0.0.1"
        )

    async def logged_in(self, user: str | None = None) -> RawClient:
        client = await self.client()
        name = user or self.user
        response = await client.login(name, DEMO_PASSWORDS[name])
        assert response.error_message == "", response.error_message
        return client

    @property
    def sessions(self) -> int:
        return len(self.app.server.sessions)


@dataclass
class InProcessExchange:
    """Order Book, Info, Admin and Risk Gateway in this event loop."""

    tmp: Path
    wire: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    symbols: dict[str, int] = field(default_factory=dict)

    async def start(
        self, per_service: dict[str, dict[str, Any]] | None = None, **wire: Any
    ) -> InProcessExchange:
        """Start all four; ``wire`` settings go to every service, ``per_service``
        adds settings by service name (``{"info": {"tls_cert_file": ...}}``)."""
        self.wire = {"login_timeout_s": LOGIN_TIMEOUT_S, "idle_timeout_s": IDLE_TIMEOUT_S, **wire}
        extra = per_service or {}

        def settings(name: str) -> dict[str, Any]:
            return {**self.wire, **extra.get(name, {})}

        book, book_port = await start_app(
            build_order_book,
            make_config(OrderBookConfig, self.tmp / "ob", fsync="none", **settings("order_book")),
        )
        info, info_port = await start_app(
            build_info,
            make_config(
                InfoConfig, self.tmp / "info", order_book_port=book_port, **settings("info")
            ),
        )
        upstream = {"order_book_port": book_port, "info_port": info_port}
        admin, admin_port = await start_app(
            build_admin,
            make_config(
                AdminConfig,
                self.tmp / "admin",
                fsync_intents=False,
                **upstream,
                **settings("admin"),
            ),
        )
        gateway, gateway_port = await start_app(
            build_gateway,
            make_config(
                RiskGatewayConfig,
                self.tmp / "rg",
                reconnect_max_backoff_s=0.2,
                **upstream,
                **settings("risk_gateway"),
            ),
        )
        self.ports = {
            "order_book": Port(
                "order_book", book_port, "service", (10, 12, 62, 140, 142, 144, 146), book
            ),
            "info": Port("info", info_port, "dave", (21, 26, 60, 130, 132), info),
            "admin": Port("admin", admin_port, "admin", (30, 32, 34, 36, 38), admin),
            "risk_gateway": Port(
                "risk_gateway", gateway_port, "alice", (40, 42, 46, 50, 52, 54, 56), gateway
            ),
        }
        for name, port in self.ports.items():
            cert = extra.get(name, {}).get("tls_cert_file")
            if cert:
                port.ssl = client_ssl_context(cert)
        return self

    async def stop(self) -> None:
        for name in ("risk_gateway", "admin", "info", "order_book"):
            if name in self.ports:
                await self.ports[name].app.stop()

    @property
    def book(self) -> Any:
        return self.ports["order_book"].app

    def state_hash(self) -> str:
        return str(self.book.engine.state_hash())

    async def create(self, symbol: str, tick_size: float = 0.01) -> int:
        conn = await UpstreamConnection.open(
            "127.0.0.1", self.ports["admin"].port, "admin", DEMO_PASSWORDS["admin"]
        )
        try:
            response = await asyncio.wait_for(
                conn.request(
                    MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
                    admin_pb2.CreateInstrumentRequest(
                        instrument=common_pb2.Instrument(symbol=symbol), tick_size=tick_size
                    ),
                ),
                10,
            )
        finally:
            conn.close()
        self.symbols[symbol] = response.order_book_id
        return int(response.order_book_id)

    async def delete(self, symbol: str) -> None:
        conn = await UpstreamConnection.open(
            "127.0.0.1", self.ports["admin"].port, "admin", DEMO_PASSWORDS["admin"]
        )
        try:
            await asyncio.wait_for(
                conn.request(
                    MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
                    admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol),
                ),
                10,
            )
        finally:
            conn.close()

    async def book_state(self) -> BookState:
        """The Order Book's resting orders and totals, via a service login."""
        return await order_book_state(
            self.ports["order_book"].port, password=DEMO_PASSWORDS["service"]
        )

    async def healthy(self) -> None:
        """Every port still serves a well-behaved client at once."""
        for port in self.ports.values():
            client = await port.logged_in()
            try:
                await _probe(client, port.name)
            finally:
                await client.close()


async def _probe(client: RawClient, name: str) -> None:
    """A cheap request per port, answered without error."""
    probes: dict[str, tuple[Any, int]] = {
        "order_book": (order_book_pb2.GetStatsRequest(request_id=77), 147),
        "info": (info_pb2.QuotesRequest(request_id=77), 61),
        "admin": (admin_pb2.ListInstrumentsRequest(request_id=77), 35),
        "risk_gateway": (risk_limits_pb2.GetUserRiskLimitsRequest(request_id=77), 51),
    }
    request, response_type = probes[name]
    client.send(request)
    while True:
        kind, message = await client.recv(timeout=5)
        if kind == response_type:
            assert message.request_id == 77 and message.error_message == "", message
            return


def insert(symbol: str, price: float = 10.0, quantity: int = 1, **fields: Any) -> Any:
    return execution_pb2.InsertOrderRequest(
        instrument_symbol=symbol, price=price, quantity=quantity, **fields
    )


__all__ = ["InProcessExchange", "Port", "insert"]
