"""A clean stop while a client keeps sending: nothing is done that is not told.

Regression test for a Risk Gateway bug the SIGTERM fault test pointed at:
``stop()`` waited for the requests in flight *at that moment*, then closed the
connections, but kept reading and forwarding new requests meanwhile; the
answer to one forwarded in that gap arrived after its session had closed, so
the Order Book held an order its owner was never told about.  Now the Gateway
refuses execution requests from the moment it starts stopping (``service is
shutting down``) and waits until everything forwarded is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.pb import execution_pb2
from services.common.wire import errors
from services.common.wire.client import UpstreamConnection
from tests.reliability.inprocess import InProcessExchange


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[InProcessExchange]:
    running = await InProcessExchange(tmp_path).start()
    await running.create("STOP")
    try:
        yield running
    finally:
        for name in ("admin", "info", "order_book"):
            await running.ports[name].app.stop()


async def test_gateway_stop_answers_everything_it_forwarded(exchange: InProcessExchange) -> None:
    gateway = exchange.ports["risk_gateway"]
    conn = await UpstreamConnection.open("127.0.0.1", gateway.port, "alice", "alice-demo")
    sent: dict[str, asyncio.Future[Any]] = {}

    async def stream() -> None:
        # Pipelined inserts, one every ~0.5 ms, until the Gateway closes us.
        i = 0
        while conn.connected:
            coid = f"stop-{i}"
            sent[coid] = conn.request_raw(
                40,
                execution_pb2.InsertOrderRequest(
                    instrument_symbol="STOP", price=1.0, quantity=1, client_order_id=coid
                ),
            )
            i += 1
            await asyncio.sleep(0.0005)

    sender = asyncio.ensure_future(stream())
    while len(sent) < 200:
        await asyncio.sleep(0.01)
    await gateway.app.stop()
    await asyncio.wait_for(conn.wait_closed(), 5)
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    answers = {
        coid: future.result()
        for coid, future in sent.items()
        if future.done() and future.exception() is None
    }
    engine = exchange.book.engine
    inserted = {coid for coid in sent if engine.previous_insert("alice", coid) is not None}
    untold = {coid for coid in inserted if coid not in answers or answers[coid].error_message}
    assert untold == set()
    refusals = {a.error_message for a in answers.values() if a.error_message}
    assert refusals <= {errors.SHUTTING_DOWN}
    print(f"{len(sent)} sent, {len(inserted)} inserted and told, {len(refusals)} kinds of refusal")
