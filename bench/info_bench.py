"""Info fan-out benchmark: one instrument, many subscribers, a steady order flow.

What it measures (the targets of issue #4): with ``--subscribers`` (100) clients
subscribed to the top of book of one instrument while a load generator sends a
steady flow of orders to the Order Book,

* **trade-to-OnTopOfBook latency at the subscriber**: for each ``OnTrade`` a probe
  subscriber receives, the time from the trade (its timestamp, taken by the Order
  Book when it matched) until the next ``OnTopOfBook`` arrives at that subscriber;
  so it spans Order Book -> Info -> subscriber. Target: p99 <= 5 ms at 10,000
  orders/s.
* **deliveries per second**: book and trade messages received by all subscribers
  per second. Target: >= 200,000.

Set-up: the Order Book and Info run as their own processes (``python -m
services.order_book`` / ``services.info``, journal ``fsync=none`` so the figure is
Info's, not the disk's); the subscribers run in one child process (10 of them
parse every message as probes, the others only count frames); the load generator
runs in this process. Orders: 50 % passive GTC within 20 ticks of 100.00, 15 %
IOC crossing the book (trades), 35 % cancels of earlier passive orders.

``python -m bench.info_bench [--rates 10000,20000] [--duration 5] [--loop uvloop]``
prints a Markdown table; ``run(results)`` is the entry point of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import random
import re
import secrets
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.framing import encode_frame

MT = common_pb2.MessageType
REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
TICK = 0.01
MID = 10_000  # ticks: 100.00
PROBES = 10
_HEADER = struct.Struct(">II")


# ---------------------------------------------------------------------- processes


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """A service process; its port is read from the stable ``listening on`` line."""

    def __init__(
        self, module: str, args: list[str], env: dict[str, str], profile: str = ""
    ) -> None:
        wrapper = ["-m", "cProfile", "-o", profile] if profile else []
        self.process = subprocess.Popen(
            [sys.executable, *wrapper, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.tail: deque[str] = deque(maxlen=20)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.tail.append(line.rstrip())
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
            elif self.port and line.rstrip().endswith(" ready"):
                self._ready.set()

    def wait_ready(self) -> None:
        if not self._ready.wait(30):
            raise RuntimeError("service did not start:\n" + "\n".join(self.tail))

    def cpu_seconds(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------- subscribers


class Subscriber(asyncio.Protocol):
    """Counts frames by type; a probe also measures trade -> top-of-book latency."""

    def __init__(self, probe: bool, stats: dict[str, Any]) -> None:
        self.probe = probe
        self.stats = stats
        self.buffer = b""
        self.pending_trades: list[int] = []
        self.transport: asyncio.Transport | None = None
        self.logged_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buffer + data if self.buffer else data
        end = len(buf)
        pos = 0
        counts = self.stats["counts"]
        while end - pos >= 8:
            length, kind = _HEADER.unpack_from(buf, pos)
            stop = pos + 4 + length
            if stop > end:
                break
            counts[kind] = counts.get(kind, 0) + 1
            if kind == MT.LOGIN_RESPONSE and not self.logged_in.done():
                self.logged_in.set_result(None)
            elif self.probe and kind == MT.INFO_ON_TRADE:
                ts = info_pb2.OnTrade.FromString(buf[pos + 8 : stop]).timestamp
                self.pending_trades.append(ts)
                self.stats["trade_arrival"].append(now - ts)
            elif self.probe and kind == MT.INFO_ON_TOP_OF_BOOK:
                ts = info_pb2.OnTopOfBook.FromString(buf[pos + 8 : stop]).timestamp
                self.stats["tob_arrival"].append(now - ts)
                if self.pending_trades:
                    latencies = self.stats["latencies"]
                    latencies.extend(now - t for t in self.pending_trades)
                    self.pending_trades.clear()
            pos = stop
        self.buffer = buf[pos:]

    def send(self, kind: int, message: Any) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(kind, message.SerializeToString()))


def subscriber_main(port: int, count: int, probes: int, symbol: str, pipe: Pipe) -> None:
    """Child process: ``count`` subscribers (the first ``probes`` measure latency);
    answers "reset" and "report" on ``pipe``.

    The subscribers are the measuring instrument, so they run on uvloop when it is
    installed (less of the machine's CPU goes to measuring).
    """
    try:
        import uvloop
    except ImportError:
        asyncio.run(_subscribers(port, count, probes, symbol, pipe))
    else:
        uvloop.run(_subscribers(port, count, probes, symbol, pipe))


async def _subscribers(port: int, count: int, probes: int, symbol: str, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"counts": {}, "latencies": [], "trade_arrival": [], "tob_arrival": []}
    subscribers = []
    users = ["alice", "bob", "carol", "dave"]
    for index in range(count):
        transport, sub = await loop.create_connection(
            functools.partial(Subscriber, index < probes, stats), "127.0.0.1", port
        )
        sub.transport = transport  # uvloop: before connection_made
        user = users[index % len(users)]
        sub.send(0, common_pb2.LoginRequest(request_id=1, username=user, password=f"{user}-demo"))
        subscribers.append(sub)
    await asyncio.gather(*(s.logged_in for s in subscribers))
    for sub in subscribers:
        sub.send(
            MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST,
            info_pb2.OrderBookSubscribeRequest(request_id=2, instrument_symbol=symbol),
        )
    done = loop.create_future()

    async def handle(command: str) -> Any:
        if command == "reset":
            stats.update(counts={}, latencies=[], trade_arrival=[], tob_arrival=[])
            for sub in subscribers:
                sub.pending_trades.clear()
            return "ok"
        if command == "report":
            return dict(stats)
        done.set_result(None)
        return "bye"

    def serve_pipe() -> None:
        # A blocking pipe served from a thread: the loop never touches its fd (uvloop
        # would make it non-blocking, and a big report would not fit in one write).
        while True:
            command = pipe.recv()
            answer = asyncio.run_coroutine_threadsafe(handle(command), loop).result()
            pipe.send(answer)
            if answer == "bye":
                return

    pipe.send("ready")
    threading.Thread(target=serve_pipe, daemon=True).start()
    await done
    for sub in subscribers:
        assert sub.transport is not None
        sub.transport.close()


# ---------------------------------------------------------------------- load


class Load:
    """Paced order flow into the Order Book over one service connection."""

    def __init__(self, conn: UpstreamConnection, book: int, seed: int = 7) -> None:
        self.conn = conn
        self.book = book
        self.rng = random.Random(seed)
        self.resting: list[int] = []
        self.sent = 0

    def _on_insert(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            response = future.result()
            if response.resting_quantity:
                self.resting.append(response.order_id)

    def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        self.sent += 1
        if roll < 0.35 and self.resting:
            index = rng.randrange(len(self.resting))
            self.resting[index] = self.resting[-1]
            order_id = self.resting.pop()
            future = self.conn.request_raw(
                MT.ORDER_BOOK_CANCEL_ORDER_REQUEST,
                order_book_pb2.CancelOrderRequest(order_book_id=self.book, order_id=order_id),
            )
            return
        side = rng.randrange(2)
        if roll < 0.85:
            offset = rng.randint(1, 20)
            ticks = MID - offset if side == 0 else MID + offset
            tif = 0
        else:
            ticks = MID + 25 if side == 0 else MID - 25
            tif = 1
        future = self.conn.request_raw(
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=self.book,
                side=side,  # type: ignore[arg-type]
                price=round(ticks * TICK, 2),
                quantity=rng.randint(1, 10),
                time_in_force=tif,  # type: ignore[arg-type]
                on_behalf_of_username="bench",
            ),
        )
        future.add_done_callback(self._on_insert)

    async def run(self, rate: float, seconds: float) -> float:
        """Send at ``rate`` orders/s for ``seconds``; returns the achieved rate."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent_before = self.sent
        while True:
            now = loop.time()
            if now - start >= seconds:
                break
            due = int((now - start) * rate) - (self.sent - sent_before)
            for _ in range(min(due, 500)):
                self.one()
            await asyncio.sleep(0.0005)
            while self.conn.in_flight > 5_000:  # the Order Book is behind: do not pile on
                await asyncio.sleep(0.001)
                if loop.time() - start >= seconds:
                    break
        achieved = (self.sent - sent_before) / (loop.time() - start)
        deadline = loop.time() + 10
        while self.conn.in_flight and loop.time() < deadline:  # let the tail arrive
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # and its market data reach the subscribers
        return achieved


# ---------------------------------------------------------------------- orchestration


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


class SubscriberPool:
    """The subscriber processes, each with a pipe for commands."""

    def __init__(self, port: int, subscribers: int, processes: int, symbol: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.children: list[tuple[Any, Pipe]] = []
        for index in range(processes):
            count = subscribers // processes + (1 if index < subscribers % processes else 0)
            parent, child_end = context.Pipe()
            probes = PROBES // processes + (1 if index < PROBES % processes else 0)
            child = context.Process(
                target=subscriber_main, args=(port, count, probes, symbol, child_end)
            )
            child.start()
            self.children.append((child, parent))

    async def ask(self, command: str, timeout: float = 120.0) -> list[Any]:
        """Send ``command`` to every child ("ready": only wait) and collect the answers."""
        loop = asyncio.get_running_loop()
        answers = []
        for _child, pipe in self.children:
            if command != "ready":
                pipe.send(command)
        for child, pipe in self.children:
            if not await loop.run_in_executor(None, pipe.poll, timeout):
                raise RuntimeError(f"subscriber process {child.pid} did not answer {command!r}")
            answers.append(pipe.recv())
        return answers

    def cpu_seconds(self) -> float:
        return sum(process_cpu(child.pid) for child, _ in self.children)

    def stop(self) -> None:
        for child, pipe in self.children:
            if child.is_alive():
                pipe.send("stop")
        for child, _ in self.children:
            child.join(10)
            if child.is_alive():
                child.kill()


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"counts": {}, "latencies": [], "trade_arrival": [], "tob_arrival": []}
    for report in reports:
        for kind, count in report["counts"].items():
            merged["counts"][kind] = merged["counts"].get(kind, 0) + count
        for key in ("latencies", "trade_arrival", "tob_arrival"):
            merged[key] += report[key]
    return merged


async def _bench(
    rates: list[float], seconds: float, subscribers: int, processes: int, loop_name: str
) -> list[dict[str, Any]]:
    password = secrets.token_urlsafe(16)
    env = {**os.environ, "OPTIVEX_SERVICE_PASSWORD": password, "OPTIVEX_LOOP": loop_name}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="info-bench-") as tmp:
        order_book = Service(
            "services.order_book",
            ["--port", "0", "--data-dir", f"{tmp}/ob", "--fsync", "none"],
            env,
        )
        info = None
        pool: SubscriberPool | None = None
        try:
            order_book.wait_ready()
            info = Service(
                "services.info",
                [
                    "--port",
                    "0",
                    "--data-dir",
                    f"{tmp}/info",
                    "--order-book-port",
                    str(order_book.port),
                ],
                env,
                profile=os.environ.get("OPTIVEX_BENCH_INFO_PROFILE", ""),
            )
            info.wait_ready()
            ob = await UpstreamConnection.open("127.0.0.1", order_book.port, "service", password)
            created = await ob.request(
                MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=TICK)
            )
            admin = await UpstreamConnection.open("127.0.0.1", info.port, "service", password)
            await admin.request(
                MT.INFO_CREATE_INSTRUMENT_REQUEST,
                info_pb2.CreateInstrumentRequest(
                    instrument=common_pb2.Instrument(symbol="FAN", currency="EUR", multiplier=1),
                    tick_size=TICK,
                    order_book_id=created.order_book_id,
                ),
            )
            pool = SubscriberPool(info.port, subscribers, processes, "FAN")
            await pool.ask("ready")
            load = Load(ob, created.order_book_id)
            await load.run(2000, 1.0)  # warm-up: a book to trade against
            for rate in rates:
                await pool.ask("reset")
                cpu_info, cpu_ob = info.cpu_seconds(), order_book.cpu_seconds()
                cpu_subs, cpu_self = pool.cpu_seconds(), time.process_time()
                started = time.perf_counter()
                achieved = await load.run(rate, seconds)
                elapsed = time.perf_counter() - started  # includes the drain of the tail
                report = merge(await pool.ask("report"))
                cpu_info = info.cpu_seconds() - cpu_info
                counts = report["counts"]
                deliveries = sum(counts.get(k, 0) for k in (23, 24, 25))
                latencies = report["latencies"]
                rows.append(
                    {
                        "loop": loop_name,
                        "target_orders_per_s": rate,
                        "achieved_orders_per_s": round(achieved),
                        "subscribers": subscribers,
                        "deliveries_per_s": round(deliveries / elapsed),
                        "trades_per_s": round(counts.get(25, 0) / subscribers / elapsed),
                        "tob_per_subscriber_per_s": round(
                            counts.get(23, 0) / subscribers / elapsed
                        ),
                        "trade_to_tob_p50_ms": round(percentile(latencies, 0.50), 3),
                        "trade_to_tob_p99_ms": round(percentile(latencies, 0.99), 3),
                        "trade_to_tob_max_ms": round(max(latencies, default=0) / 1e6, 3),
                        "samples": len(latencies),
                        "trade_arrival_p99_ms": round(percentile(report["trade_arrival"], 0.99), 3),
                        "tob_arrival_p50_ms": round(percentile(report["tob_arrival"], 0.5), 3),
                        "tob_arrival_p99_ms": round(percentile(report["tob_arrival"], 0.99), 3),
                        "load_average": round(os.getloadavg()[0], 1),
                        "info_cpu_pct": round(100 * cpu_info / elapsed),
                        "info_us_per_delivery": round(1e6 * cpu_info / max(deliveries, 1), 2),
                        "order_book_cpu_pct": round(
                            100 * (order_book.cpu_seconds() - cpu_ob) / elapsed
                        ),
                        "subscribers_cpu_pct": round(
                            100 * (pool.cpu_seconds() - cpu_subs) / elapsed
                        ),
                        "load_cpu_pct": round(100 * (time.process_time() - cpu_self) / elapsed),
                    }
                )
                print(table(rows[-1:]), flush=True)
            ob.close()
            admin.close()
        finally:
            if pool is not None:
                pool.stop()
            if info is not None:
                info.stop()
            order_book.stop()
    return rows


COLUMNS = (
    ("loop", "loop"),
    ("target_orders_per_s", "orders/s target"),
    ("achieved_orders_per_s", "orders/s sent"),
    ("subscribers", "subscribers"),
    ("deliveries_per_s", "deliveries/s"),
    ("trades_per_s", "trades/s"),
    ("tob_per_subscriber_per_s", "TOB/s per sub"),
    ("trade_to_tob_p50_ms", "trade->TOB p50 ms"),
    ("trade_to_tob_p99_ms", "p99 ms"),
    ("trade_to_tob_max_ms", "max ms"),
    ("trade_arrival_p99_ms", "trade arrival p99"),
    ("tob_arrival_p50_ms", "TOB arrival p50"),
    ("tob_arrival_p99_ms", "TOB arrival p99"),
    ("info_cpu_pct", "Info CPU %"),
    ("info_us_per_delivery", "Info CPU us/delivery"),
    ("order_book_cpu_pct", "Order Book CPU %"),
    ("subscribers_cpu_pct", "subscribers CPU %"),
    ("load_cpu_pct", "load CPU %"),
    ("load_average", "machine load avg"),
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def run(results: dict[str, Any], argv: list[str] | None = None) -> None:
    """Entry point of ``make bench``: fills ``results`` with the rows and a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.info_bench", description=__doc__)
    parser.add_argument(
        "--rates", default=os.environ.get("OPTIVEX_BENCH_INFO_RATES", "10000,20000")
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--subscriber-processes", type=int, default=2, help="processes the subscribers share"
    )
    parser.add_argument(
        "--loop", default=os.environ.get("OPTIVEX_BENCH_INFO_LOOPS", "asyncio,uvloop")
    )
    options = parser.parse_args(argv or [])
    rates = [float(r) for r in options.rates.split(",")]
    rows: list[dict[str, Any]] = []
    for loop_name in options.loop.split(","):
        rows += asyncio.run(
            _bench(
                rates,
                options.duration,
                options.subscribers,
                options.subscriber_processes,
                loop_name,
            )
        )
    results["rows"] = rows
    results["table"] = table(rows)
    at_target = [r for r in rows if r["target_orders_per_s"] == 10_000]
    if at_target:
        best = min(at_target, key=lambda r: r["trade_to_tob_p99_ms"])
        results["p99_ms_at_10k"] = best["trade_to_tob_p99_ms"]
        results["max_deliveries_per_s"] = max(r["deliveries_per_s"] for r in rows)
    print("\n" + results["table"])


if __name__ == "__main__":
    run({}, sys.argv[1:])
