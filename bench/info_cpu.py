"""Info's CPU per Order Book event, in process: decode, translate, mirror, publish.

Why in process: the end-to-end figure (~18-20 us of Info CPU per order) comes from
``/proc`` while four processes share two cores, so a change worth 10 % drowns in
the noise of everything else. Here the same code path the service runs is fed a
fixed, realistic event stream, timed with ``time.process_time_ns``, and nothing
else is measured:

* the stream: the real matching engine (``services.order_book.engine``) runs the
  load generator's own order flow (``clients.load_plan.Planner``, default mix 45 %
  passive GTC, 20 % IOC crossing every level, 15 % amends, 20 % cancels) from four
  participant connections over four books, and its events are encoded exactly as
  the Order Book sends them (``services.order_book.translate.EventEncoder``);
* Info: a real :class:`~services.info.app.InfoApp` (not started: no sockets) with
  its :class:`~services.info.feed.OrderBookFeed`; the frames of each read go to a
  real :class:`~services.common.wire.client.UpstreamConnection` through
  ``data_received``, which hands the pushes to the feed through the link, exactly
  as in the service; the flush the feed schedules with ``call_soon`` (publication)
  runs right after each read. The event loop itself is left out: its turn per read
  (a few us, the same whatever Info does) would only blur the comparison;
* subscribers: three connections per instrument (top of book and depth 10 twice,
  full depth once), on fake sessions that keep the frames.

A warm-up part of the stream (books created, books filled) is applied before the
subscriptions and is not timed. The frames every subscriber received are hashed
(after timing), so two runs, or two versions of Info, can be compared byte for byte:
the digest must not change when Info gets faster.

``python -m bench.info_cpu [--orders 20000] [--runs 7] [--orders-per-read 1,10]``
prints, per read size, the median CPU per order and per event of several runs.

Issue #9, same machine (2 cores, shared), same stream (20,000 orders, 24,447
events), Info before and after, the rest of the tree identical, runs interleaved:

| orders per read | before: us per order | after | output digest (both) |
| --- | --- | --- | --- |
| 1 | 22.9-23.7 | 14.5-14.8 (-37 %) | 0fbc06d5547a9649 |
| 10 | 12.5-12.6 | 8.7-8.9 (-30 %) | b1e2575f3da2eb3f |

Of the "after" figure at 10 orders per read, about 4.3 us is the event stream alone
(no subscriber), of which 1.0 us (1.3 us at one order per read) is the wire
layer's frame decoding and protobuf ``FromString`` (measured by feeding the same
reads to an ``UpstreamConnection`` whose push handler does nothing). Info does not
own that code, and a decoder in Python would be slower than protobuf's C one.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.load_plan import Instrument as PlanInstrument
from clients.load_plan import Intent, Kind, Mix, Planner, RestingOrders
from services.common.auth import Authenticator
from services.common.config import InfoConfig
from services.common.users import UserStore
from services.common.wire.client import UpstreamConnection
from services.info.app import InfoApp
from services.info.events import PRICE_DEPTH_BOOK, TOP_OF_BOOK
from services.info.mirror import Mirror
from services.info.publisher import CONNECTION_KEY
from services.info.registry import Instrument
from services.info.subscriptions import Connection
from services.order_book.engine import Engine
from services.order_book.translate import EventEncoder

TICK = 0.01
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
PARTICIPANTS = 4
WARMUP_ORDERS = 2_000
SUBSCRIPTIONS = (
    ((TOP_OF_BOOK, 0), (PRICE_DEPTH_BOOK, 10)),
    ((TOP_OF_BOOK, 0), (PRICE_DEPTH_BOOK, 10)),
    ((PRICE_DEPTH_BOOK, 0),),
)
"""Per subscriber connection: (type, depth) of its subscription to every instrument."""


@dataclass(frozen=True, slots=True)
class Stream:
    """Encoded Order Book frames: books and warm-up first, then one list per order."""

    book_ids: tuple[int, ...]
    setup: bytes
    orders: tuple[bytes, ...]
    events: int
    """Events in ``orders`` (the timed part)."""


class FixedClock:
    """Info's clock for the benchmark: a constant, so output bytes are reproducible."""

    def monotonic(self) -> float:
        return 1.0

    def now_ns(self) -> int:
        return 1_700_000_000_000_000_000


class DeferredCalls:
    """Stands in for the event loop's ``call_soon``: callbacks run when the harness says."""

    def __init__(self) -> None:
        self.ready: list[tuple[Any, tuple[Any, ...]]] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.ready.append((callback, args))

    def run(self) -> None:
        ready, self.ready = self.ready, []
        for callback, args in ready:
            callback(*args)


class FakeSession:
    """What the publisher writes to; keeps the frames for the digest."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.congested = False
        self.closed = False
        self.state: dict[str, Any] = {}
        self.on_writable: Any = None

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def send(self, message_type: int, message: Any) -> None:
        """Login pushes (OnInstrument); not part of the digest."""


# ---------------------------------------------------------------------- the stream


def generate(orders: int, seed: int) -> Stream:
    """Run the load generator's flow through the engine; the Order Book's frames."""
    engine = Engine()
    encoder = EventEncoder()
    clock = iter(range(1_000_000_000, 1 << 62, 1_000))
    book_ids = tuple(
        engine.create_book(TICK, 0, next(clock)).order_book_id for _ in range(len(SYMBOLS))
    )
    planner = Planner([PlanInstrument.around(s, TICK) for s in SYMBOLS], Mix(), seed)
    books = [RestingOrders() for _ in range(PARTICIPANTS)]

    def one(index: int) -> bytes:
        participant = index % PARTICIPANTS
        book = books[participant]
        intent: Intent = planner.next(book)
        book_id = book_ids[intent.instrument]
        user = f"p{participant}"
        if intent.kind is Kind.CANCEL:
            engine.cancel(book_id, intent.order_id, user, next(clock))
        elif intent.kind is Kind.AMEND:
            amended = engine.amend(
                book_id, intent.order_id, user, intent.ticks, intent.quantity, next(clock)
            )
            if amended.error or not amended.resting_quantity:
                book.gone(intent.order_id)  # filled meanwhile
        else:
            inserted = engine.insert(
                book_id,
                user,
                intent.side,
                intent.ticks,
                intent.quantity,
                intent.time_in_force,
                "",
                next(clock),
            )
            assert not inserted.error, inserted.error
            book.rested(inserted.order_id, intent, inserted.resting_quantity)
        return b"".join(encoder.encode(e) for e in engine.drain_events())

    setup = b"".join(encoder.encode(e) for e in engine.drain_events())
    setup += b"".join(one(i) for i in range(WARMUP_ORDERS))
    timed = tuple(one(WARMUP_ORDERS + i) for i in range(orders))
    events = sum(_count_frames(frames) for frames in timed)
    return Stream(book_ids, setup, timed, events)


def _count_frames(data: bytes) -> int:
    count = pos = 0
    while pos < len(data):
        pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
        count += 1
    return count


# ---------------------------------------------------------------------- one run


@dataclass(slots=True)
class RunResult:
    cpu_ns: int
    digest: str
    deliveries: int


async def run_once(stream: Stream, orders_per_read: int, data_dir: Path) -> RunResult:
    """A fresh Info, the set-up applied, subscribers on; then the timed reads."""
    clock = FixedClock()
    config = InfoConfig(data_dir=data_dir, service_password="unused")
    app = InfoApp(config, Authenticator(UserStore(), clock), clock)
    feed = app.feed
    calls = DeferredCalls()
    feed._loop = calls  # type: ignore[assignment]
    feed.mirror = Mirror()
    link = feed.link
    conn = UpstreamConnection(
        "bench->info",
        functools.partial(link._push, link.generation),
        config.heartbeat_interval_s,
        config.idle_timeout_s,
        config.max_frame_bytes,
    )
    conn.data_received(stream.setup)
    calls.run()
    for symbol, book_id in zip(SYMBOLS, stream.book_ids, strict=True):
        app.registry.add(Instrument(symbol, symbol, "EUR", 1.0, TICK, book_id, 0, 1))
        app.subscriptions.open_channel(symbol, book_id)
    sessions = []
    for subscriptions in SUBSCRIPTIONS:
        session = FakeSession()
        session.state[CONNECTION_KEY] = connection = Connection(session)
        sessions.append(session)
        for symbol, book_id in zip(SYMBOLS, stream.book_ids, strict=True):
            for kind, depth in subscriptions:
                sub = app.subscriptions.subscribe(connection, symbol, kind, depth)
                assert not isinstance(sub, str), sub
                app.publisher.send_initial(sub, feed.mirror.books.get(book_id))
    reads = [
        b"".join(stream.orders[i : i + orders_per_read])
        for i in range(0, len(stream.orders), orders_per_read)
    ]
    receive = conn.data_received
    flush = calls.run
    gc.collect()
    start = time.process_time_ns()
    for data in reads:
        receive(data)
        flush()  # the feed's call_soon: publish what the read changed
    cpu_ns = time.process_time_ns() - start
    assert feed.mirror.last_sequence > 0 and not feed.mirror.dirty, "the stream broke the mirror"
    digest = hashlib.sha256()
    for session in sessions:
        for frame in session.frames:
            digest.update(frame)
    return RunResult(cpu_ns, digest.hexdigest()[:16], app.publisher.deliveries)


def measure(stream: Stream, orders_per_read: int, runs: int) -> dict[str, Any]:
    """Median of ``runs`` fresh runs; every run must publish the same bytes."""
    results = []
    with tempfile.TemporaryDirectory(prefix="info-cpu-") as tmp:
        for _ in range(runs):
            results.append(asyncio.run(run_once(stream, orders_per_read, Path(tmp))))
    digests = {r.digest for r in results}
    assert len(digests) == 1, f"runs published different bytes: {digests}"
    per_order = [r.cpu_ns / 1000 / len(stream.orders) for r in results]
    per_event = [r.cpu_ns / 1000 / stream.events for r in results]
    return {
        "orders_per_read": orders_per_read,
        "us_per_order": statistics.median(per_order),
        "us_per_order_min": min(per_order),
        "us_per_order_max": max(per_order),
        "us_per_event": statistics.median(per_event),
        "deliveries": results[0].deliveries,
        "digest": results[0].digest,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.info_cpu", description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000, help="timed orders per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per read size (median)")
    parser.add_argument(
        "--orders-per-read", default="1,10", help="orders whose events arrive in one read"
    )
    parser.add_argument("--seed", type=int, default=9)
    ns = parser.parse_args(argv)
    stream = generate(ns.orders, ns.seed)
    print(
        f"stream: {len(stream.orders):,} orders, {stream.events:,} events "
        f"({stream.events / len(stream.orders):.2f} per order), seed {ns.seed}; "
        f"{ns.runs} runs each"
    )
    print()
    print(
        "| orders per read | CPU us per order (median) | min-max | us per event | "
        "deliveries | output digest |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in ns.orders_per_read.split(",")):
        r = measure(stream, size, ns.runs)
        print(
            f"| {size} | {r['us_per_order']:.2f} | {r['us_per_order_min']:.2f}-"
            f"{r['us_per_order_max']:.2f} | {r['us_per_event']:.2f} | {r['deliveries']:,} | "
            f"{r['digest']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
