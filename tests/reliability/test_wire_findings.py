"""Findings in the shared wire layer that the reliability tests ran into.

The wire layer (``services/common/wire/session.py`` and the housekeeping in
``server.py``): found by the fault tests, fixed there (heartbeats are written
ahead of answers still pending); these tests keep it fixed.
"""

from __future__ import annotations

from services.common.pb import common_pb2, execution_pb2
from services.common.wire.server import WireSettings
from tests.wire.test_server import start

MT = common_pb2.MessageType


async def test_heartbeats_flow_while_a_request_is_unanswered() -> None:
    harness = await start(WireSettings(heartbeat_interval_s=0.1, idle_timeout_s=10))
    client = await harness.logged_in()
    try:
        # The echo service answers an insert after `quantity` milliseconds.
        client.send(execution_pb2.InsertOrderRequest(request_id=1, quantity=2000))
        kind, _ = await client.recv_frame(timeout=1.0, skip_heartbeats=False)
        assert kind == MT.HEARTBEAT
    finally:
        await client.close()
        await harness.server.stop()


async def test_heartbeats_flow_on_an_idle_connection() -> None:
    """The control: with nothing outstanding, heartbeats come every interval."""
    harness = await start(WireSettings(heartbeat_interval_s=0.1, idle_timeout_s=10))
    client = await harness.logged_in()
    try:
        kind, _ = await client.recv_frame(timeout=1.0, skip_heartbeats=False)
        assert kind == MT.HEARTBEAT
    finally:
        await client.close()
        await harness.server.stop()


async def test_unanswered_request_then_heartbeat_ordering_is_kept() -> None:
    """Whatever the fix, a response still follows its request's order."""
    harness = await start(WireSettings(heartbeat_interval_s=0.05, idle_timeout_s=10))
    client = await harness.logged_in()
    try:
        client.send(execution_pb2.InsertOrderRequest(request_id=1, quantity=200, price=1))
        client.send(execution_pb2.CancelOrderRequest(request_id=2, order_id=2))
        kinds = [(await client.recv())[1].request_id for _ in range(2)]
        assert kinds == [1, 2]
    finally:
        await client.close()
        await harness.server.stop()
