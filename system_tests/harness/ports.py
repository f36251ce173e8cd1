"""Per-port facts for tests that run on every port: who logs in, a harmless request.

The harmless ("probe") request of each port has a response type, changes
nothing, and is served to the role that logs in here, so a test can show that a
connection is still alive and answering after something it sent.
"""

from __future__ import annotations

from google.protobuf.message import Message

from system_tests.harness.conn import Conn, Endpoint
from system_tests.harness.world import World
from system_tests.pb import admin_pb2, info_pb2, order_book_pb2, risk_limits_pb2

PORTS = ("order_book", "info", "admin", "gateway")

NOT_SERVED = {"order_book": 40, "info": 30, "admin": 40, "gateway": 21}
"""A contract request type the port does not accept (PROTOCOL.md section 3)."""


def endpoint(world: World, port: str) -> Endpoint:
    endpoint: Endpoint = getattr(world.target, port)
    return endpoint


def probe(port: str) -> Message:
    """A request the port answers without changing anything."""
    if port == "order_book":
        # Cancelling an order that does not exist: an answered error, no change.
        return order_book_pb2.CancelOrderRequest(
            order_book_id=0, order_id=0, on_behalf_of_username="x"
        )
    if port == "info":
        return info_pb2.QuotesRequest()
    if port == "admin":
        return admin_pb2.ListInstrumentsRequest()
    return risk_limits_pb2.GetUserRiskLimitsRequest()


def login_for(world: World, port: str) -> tuple[str, str]:
    if port == "order_book":
        return world.service_login()
    if port == "admin":
        return world.target.admin_login
    return world.participant(0)


async def logged_in(world: World, port: str) -> Conn:
    user, password = login_for(world, port)
    return await world.logged_in(endpoint(world, port), user, password)


async def alive(conn: Conn, port: str, what: str) -> None:
    """The connection still answers a request (its response arrives, not ON_ERROR)."""
    frame = await conn.request_frame(probe(port))
    assert frame.type != 2, (
        f"{what}: expected the connection to keep working, received {frame.describe()}"
    )
