"""Memory per resting order and per connection.

* **Per resting order, through the wire**: the whole exchange runs (launcher,
  journal on); 200,000 non-crossing GTC orders are sent straight to the Order
  Book port as the ``service`` user (pipelined, on behalf of the demo users),
  then the RSS growth of the Order Book, Info and the Risk Gateway (which both
  mirror every resting order from the event stream) is divided by the count.
  RSS includes allocator slack and freed-but-kept arenas, so this is what an
  operator would see, not the size of the objects.
* **Per resting order, in process**: ``tracemalloc`` around the same inserts
  into a bare :class:`services.order_book.engine.Engine` (the objects only).
* **Per connection**: RSS growth of the Risk Gateway and of Info per logged-in,
  idle connection, after the first 120.  Each login runs scrypt (16 MiB) on a
  worker thread and glibc keeps that memory in per-thread arenas, so the first
  logins grow RSS by tens of MiB whatever the connections cost; that growth is
  reported on its own line.  Then three windows of 60 more connections each;
  the smallest window's growth per connection is the figure (a window in which
  one more arena kept a scrypt buffer shows ~16 MiB / 60 more).

Both RSS figures are taken after a warm-up (10 % more orders, or the first
connections) so the allocator is in its steady state, and only once the
processes have stopped using CPU (they digested every event).

``OPTIVEX_BENCH_ORDERS`` and ``OPTIVEX_BENCH_CONNECTIONS_IDLE`` change the counts.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from clients.load_harness import Exchange, cpu_seconds, rss_bytes
from clients.load_stats import markdown_table
from services.common.pb import admin_pb2, common_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection

MT = common_pb2.MessageType
ORDERS = int(os.environ.get("OPTIVEX_BENCH_ORDERS", "200000"))
IDLE_CONNECTIONS = int(os.environ.get("OPTIVEX_BENCH_CONNECTIONS_IDLE", "120"))
WINDOWS = 3
WINDOW_CONNECTIONS = 60
USERS = ("alice", "bob", "carol", "dave")
LEVELS = 2000
"""Buy orders spread over this many price levels (ticks 1..LEVELS): nothing crosses."""
WINDOW = 4000
"""Inserts in flight at once."""


def _engine_bytes_per_order(count: int) -> dict[str, Any]:
    from services.order_book.engine import Engine

    engine = Engine()
    book = engine.create_book(0.01, 0, 1).order_book_id
    engine.drain_events()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(count):
        engine.insert(book, USERS[i & 3], 0, 1 + i % LEVELS, 1 + i % 7, 0, "", 1_000 + i)
        if i % 1024 == 0:
            engine.drain_events()
    engine.drain_events()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    resting = engine.stats().resting_orders
    return {"orders": resting, "bytes_per_order": round(grown / max(1, resting), 1)}


async def _settle(pids: dict[str, int], quiet_s: float = 0.6, limit_s: float = 60.0) -> None:
    """Wait until the processes have stopped using CPU (they digested the events)."""
    deadline = time.monotonic() + limit_s
    last = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        now = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        if all(now[name] - last[name] < 0.02 for name in now):
            return
        last = now


def _rss(pids: dict[str, int]) -> dict[str, int]:
    return {name: rss_bytes(pid) or 0 for name, pid in pids.items()}


async def _resting_orders(exchange: Exchange, count: int) -> dict[str, Any]:
    host, ports = exchange.host, exchange.ports
    admin = await UpstreamConnection.open(host, ports["admin"], "admin", "admin-demo")
    try:
        created = await admin.request(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol="MEM"), tick_size=0.01
            ),
        )
    finally:
        admin.close()
    book_id = created.order_book_id
    pids = {k: v for k, v in exchange.pids.items() if k != "admin"}
    conn = await UpstreamConnection.open(
        host, ports["order_book"], "service", exchange.service_password, name="memory-bench"
    )
    try:
        warm_up = await _insert(conn, book_id, count // 10, 0)
        await _settle(pids)
        before = _rss(pids)
        started = time.perf_counter()
        errors = await _insert(conn, book_id, count, count // 10)
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    await _settle(pids)
    after = _rss(pids)
    accepted = count - errors
    return {
        "orders": accepted,
        "errors": errors + warm_up,
        "warm_up_orders": count // 10,
        "insert_seconds": round(seconds, 1),
        "bytes_per_order": {
            name: round((after[name] - before[name]) / max(1, accepted), 1) for name in pids
        },
        "rss_mib_after": {name: round(after[name] / 2**20, 1) for name in pids},
    }


async def _insert(conn: UpstreamConnection, book_id: int, count: int, first: int) -> int:
    """Insert ``count`` resting buy orders, ``WINDOW`` in flight; returns the errors."""
    errors = 0
    done = asyncio.Event()
    in_flight = 0
    window_open = asyncio.Event()
    window_open.set()
    answered = 0

    def on_answer(response: Any) -> None:
        nonlocal errors, in_flight, answered
        in_flight -= 1
        answered += 1
        if isinstance(response, Exception) or response.error_message:
            errors += 1
        if in_flight < WINDOW // 2:
            window_open.set()
        if answered == count:
            done.set()

    for i in range(first, first + count):
        if in_flight >= WINDOW:
            window_open.clear()
            await window_open.wait()
        in_flight += 1
        conn.request_callback(
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=book_id,
                side=common_pb2.BUY,
                price=round((1 + i % LEVELS) * 0.01, 2),
                quantity=1 + i % 7,
                on_behalf_of_username=USERS[i & 3],
            ),
            on_answer,
        )
    await asyncio.wait_for(done.wait(), 120)
    return errors


async def _open_many(exchange: Exchange, service: str, count: int) -> list[UpstreamConnection]:
    conns: list[UpstreamConnection] = []
    try:
        for start in range(0, count, 50):
            batch = await asyncio.gather(
                *(
                    UpstreamConnection.open(
                        exchange.host,
                        exchange.ports[service],
                        USERS[i & 3],
                        f"{USERS[i & 3]}-demo",
                        name=f"idle-{i}",
                        timeout_s=60,
                    )
                    for i in range(start, min(count, start + 50))
                )
            )
            conns.extend(batch)
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns


async def _idle_connections(exchange: Exchange, count: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * count + 1024), hard))
    figures: dict[str, Any] = {}
    for service in ("risk_gateway", "info"):
        pid = exchange.pids[service]
        pids = {service: pid}
        await _settle(pids)
        start = rss_bytes(pid) or 0
        conns = await _open_many(exchange, service, count)
        growth: list[float] = []
        try:
            await _settle(pids)
            before = first = rss_bytes(pid) or 0
            for _ in range(WINDOWS):
                conns += await _open_many(exchange, service, WINDOW_CONNECTIONS)
                await _settle(pids)
                after = rss_bytes(pid) or 0
                growth.append((after - before) / WINDOW_CONNECTIONS)
                before = after
        finally:
            for conn in conns:
                conn.close()
        figures[service] = {
            # The smallest window: a window in which one more malloc arena
            # took a 16 MiB scrypt buffer shows ~100 KB per connection more.
            "per_connection": round(min(growth)),
            "per_connection_windows": [round(g) for g in growth],
            "first_logins_growth": first - start,
        }
    return figures


def run(results: dict[str, Any]) -> None:
    print(f"memory: tracemalloc on the engine, {ORDERS:,} resting orders ...", flush=True)
    engine = _engine_bytes_per_order(ORDERS)
    results["engine_tracemalloc"] = engine
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIVEX_SERVICE_PASSWORD", None)
    env.pop("OPTIVEX_LOOP", None)
    with (
        tempfile.TemporaryDirectory(prefix="optivex-mem-") as tmp,
        Exchange(Path(tmp), env) as exchange,
    ):
        print(f"memory: {ORDERS:,} resting orders through the Order Book port ...", flush=True)
        wire = asyncio.run(_resting_orders(exchange, ORDERS))
        print(f"memory: {IDLE_CONNECTIONS} idle connections each ...", flush=True)
        idle = asyncio.run(_idle_connections(exchange, IDLE_CONNECTIONS))
    results["resting_orders_rss"] = wire
    results["idle_connection_rss_bytes"] = idle
    rows = [
        [
            "resting order, engine objects (tracemalloc)",
            "order book (in process)",
            f"{engine['bytes_per_order']:,.0f} B",
            f"{engine['orders']:,} orders",
        ],
    ]
    for name, value in wire["bytes_per_order"].items():
        rows.append(
            [
                "resting order, RSS growth",
                name,
                f"{value:,.0f} B",
                f"{wire['orders']:,} orders, RSS after {wire['rss_mib_after'][name]:,} MiB",
            ]
        )
    for name, value in idle.items():
        rows.append(
            [
                "idle logged-in connection, RSS growth",
                name,
                f"{value['per_connection']:,} B",
                f"smallest of windows {value['per_connection_windows']} B "
                f"(connections {IDLE_CONNECTIONS + 1} to "
                f"{IDLE_CONNECTIONS + WINDOWS * WINDOW_CONNECTIONS})",
            ]
        )
        rows.append(
            [
                "first logins, RSS growth (connections + scrypt memory kept by malloc arenas)",
                name,
                f"{value['first_logins_growth'] / 2**20:,.1f} MiB in all",
                f"connections 1 to {IDLE_CONNECTIONS}",
            ]
        )
    results["table"] = markdown_table(["what", "process", "per item", "measured over"], rows)
    print(results["table"], flush=True)
