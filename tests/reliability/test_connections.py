"""Broken peers: clients that vanish mid-frame and clients that stop reading.

Pass: each is freed or disconnected within a bounded time, nothing leaks
(sessions, event-loop tasks, file descriptors: counted in-process and in
``/proc/<pid>/fd`` of the service processes), and other clients do not notice.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.pb import common_pb2, info_pb2, risk_limits_pb2
from services.common.wire.framing import encode_frame
from tests.clients.conftest import eventually
from tests.reliability.cluster import DEMO_PASSWORDS, Cluster
from tests.reliability.inprocess import IDLE_TIMEOUT_S, InProcessExchange, insert
from tests.reliability.ledger import Traders
from tests.reliability.observe import InfoView, check_info_mirrors, order_book_state
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
OUTPUT_CAP = 1 << 20


def fd_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def half_frame(rng: random.Random) -> bytes:
    """The start of a frame that announces more than is ever sent."""
    payload = rng.randbytes(rng.randrange(1, 40))
    frame = encode_frame(rng.choice((0, 21, 40, 60)), payload + b"\x00" * 50)
    return frame[: rng.randrange(1, 8 + len(payload))]


async def tiny_buffer_client(port: int, user: str) -> RawClient:
    """A logged-in client with a tiny receive buffer, set before connecting so the
    TCP window stays small; it stops reading once 2 KiB are buffered."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    client = RawClient(reader, writer)
    assert (await client.login(user, DEMO_PASSWORDS[user])).error_message == ""
    return client


async def slow_reader(port: int, user: str, symbols: list[str]) -> tuple[RawClient, Any]:
    """A depth subscriber of ``symbols`` that reads nothing after logging in."""
    client = await tiny_buffer_client(port, user)
    for symbol in symbols:
        client.send(
            info_pb2.OrderBookSubscribeRequest(
                request_id=2,
                instrument_symbol=symbol,
                subscription_type=info_pb2.PRICE_DEPTH_BOOK,
            )
        )
    return client, client.writer


# ---------------------------------------------------------------------- in-process


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[InProcessExchange]:
    running = await InProcessExchange(tmp_path).start(max_output_buffer_bytes=OUTPUT_CAP)
    await running.create("CX")
    try:
        yield running
    finally:
        await running.stop()


async def test_vanishing_clients_leave_no_session_task_or_descriptor(
    exchange: InProcessExchange, seed: int
) -> None:
    rng = random.Random(seed)
    await exchange.healthy()
    sessions = {name: port.sessions for name, port in exchange.ports.items()}
    tasks, fds = len(asyncio.all_tasks()), fd_count()
    for port in exchange.ports.values():
        for i in range(30):
            client = await (port.logged_in() if i % 2 else port.client())
            if port.name == "risk_gateway" and i % 3 == 0:
                # With an insert in flight through the Gateway to the Order Book.
                client.send(insert("CX", 10.0, 1, request_id=1, client_order_id=f"v{i}"))
            client.send_raw(half_frame(rng))
            await client.writer.drain()
            if i % 4 == 0:
                client.writer.transport.abort()  # RST, not FIN
            else:
                await client.close()
    await eventually(
        lambda: {n: p.sessions for n, p in exchange.ports.items()} == sessions, 5, "sessions freed"
    )
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks, 5, "tasks finished")
    await eventually(lambda: fd_count() <= fds, 5, "descriptors closed")
    await exchange.healthy()


async def test_a_subscriber_that_stops_reading_is_bounded_then_dropped(
    exchange: InProcessExchange,
) -> None:
    info = exchange.ports["info"]
    gateway = exchange.ports["risk_gateway"]
    tasks, fds = len(asyncio.all_tasks()), fd_count()
    slow, writer = await slow_reader(info.port, "bob", ["CX"])
    view = await InfoView().open(info.port, ["CX"], user="dave")
    trader = await gateway.logged_in("alice")
    try:
        # Many book changes, each a depth message to both subscribers.
        for wave in range(8):
            for i in range(250):
                trader.send(insert("CX", 10.0 + 0.01 * (i % 50), 1, request_id=i, side=0))
            for _ in range(250):
                await trader.recv()
            slow.send(common_pb2.Heartbeat())  # alive, just not reading
            for session in info.app.server.sessions:
                if session.username == "bob":
                    assert session.output_bytes <= OUTPUT_CAP, wave
        # The reader that keeps up saw the final book; the slow one held nothing back.
        book = await exchange.book_state()
        expected = {"CX": book.depth(exchange.symbols["CX"])}
        assert await view.wait_equal(expected) == expected
        # Silent from now on: dropped by the idle timeout, within a bound.
        started = asyncio.get_running_loop().time()
        await eventually(
            lambda: all(s.username != "bob" for s in info.app.server.sessions),
            IDLE_TIMEOUT_S + 2,
            "the silent slow reader to be dropped",
        )
        print(f"dropped after {asyncio.get_running_loop().time() - started:.2f} s")
    finally:
        writer.transport.abort()
        view.close()
        await trader.close()
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks, 5, "tasks finished")
    await eventually(lambda: fd_count() <= fds, 5, "descriptors closed")


async def test_a_requester_that_stops_reading_is_dropped_at_the_output_cap(
    exchange: InProcessExchange,
) -> None:
    gateway = exchange.ports["risk_gateway"]
    tasks, fds = len(asyncio.all_tasks()), fd_count()
    client = await tiny_buffer_client(gateway.port, "carol")
    # Own limits for 40 symbols make each GetInstrumentRiskLimits answer ~2 KB.
    for i in range(40):
        client.send(
            risk_limits_pb2.SetInstrumentRiskLimitsRequest(
                request_id=i,
                instrument_symbol=f"SYM{i}",
                instrument_risk_limits=risk_limits_pb2.InstrumentRiskLimits(
                    max_outstanding_quantity=1000 + i
                ),
            )
        )
    for _ in range(40):
        assert (await client.recv())[1].error_message == ""
    frame = encode_frame(
        MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
        risk_limits_pb2.GetInstrumentRiskLimitsRequest(request_id=1).SerializeToString(),
    )
    # Far more answers than the cap holds: the Gateway must drop us, not buffer them.
    started = asyncio.get_running_loop().time()
    for _ in range(20):
        client.send_raw(frame * 200)
        try:
            await asyncio.wait_for(client.writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            break
    await eventually(
        lambda: all(s.username != "carol" for s in gateway.app.server.sessions),
        5,
        "the non-reading requester to be dropped",
    )
    print(f"dropped after {asyncio.get_running_loop().time() - started:.2f} s")
    client.writer.transport.abort()
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks, 5, "tasks finished")
    await eventually(lambda: fd_count() <= fds, 5, "descriptors closed")
    await exchange.healthy()


# ---------------------------------------------------------------------- processes


async def test_broken_peers_under_load_leak_no_descriptors_in_the_services(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    common = ("--idle-timeout-s", str(IDLE_TIMEOUT_S), "--login-timeout-s", "1")
    cluster = await asyncio.to_thread(Cluster(tmp_path, common=common).start)
    symbols = ["BP.A", "BP.B"]
    books = {symbol: await cluster.create(symbol) for symbol in symbols}
    users = [(name, DEMO_PASSWORDS[name]) for name in ("alice", "bob")]
    traders = await Traders(
        cluster.gateway.port, users, symbols, seed=seed, rate=100, idle_timeout_s=10
    ).connect()
    watcher = await InfoView().open(cluster.info.port, symbols)
    try:
        traders.start()
        await traders.wait_acked(10)
        baseline = {s.name: s.fd_count() for s in cluster.services}
        rss = cluster.info.rss_bytes()
        slow = [await slow_reader(cluster.info.port, "carol", symbols) for _ in range(3)]
        for service in cluster.services:
            for _ in range(25):
                _, writer = await asyncio.open_connection("127.0.0.1", service.port)
                writer.write(half_frame(rng))
                await writer.drain()
                if rng.random() < 0.5:
                    writer.transport.abort()
                else:
                    writer.close()
        await traders.wait_acked(50)  # everyone else kept trading meanwhile
        for _, writer in slow:
            writer.transport.abort()
        for service in cluster.services:
            await eventually(
                lambda s=service: s.fd_count() <= baseline[s.name],  # type: ignore[misc]
                IDLE_TIMEOUT_S + 3,
                f"{service.name}'s descriptors back to {baseline[service.name]}",
            )
        growth = cluster.info.rss_bytes() - rss
        print(f"Info RSS growth with three stalled subscribers: {growth / 1e6:.1f} MB")
        assert growth < 64 << 20
        await traders.stop()
        await check_info_mirrors(
            cluster.info.port, await order_book_state(cluster.book.port), books
        )
        assert not traders.ledger.undecided
    finally:
        watcher.close()
        await traders.close()
        await asyncio.to_thread(cluster.stop)


def test_half_frame_helper_never_completes_a_frame() -> None:
    rng = random.Random(5)
    for _ in range(200):
        data = half_frame(rng)
        if len(data) >= 4:
            (length,) = struct.unpack_from(">I", data)
            assert len(data) < 4 + length
