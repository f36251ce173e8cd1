"""The Risk Gateway's CPU per order, in process: the real request and event paths.

Why in process: the end-to-end figure (~46-49 us of Gateway user CPU per order at
10,000 orders/s, issue #9) comes from ``/proc`` while four services and the load
generator share two cores, so a change worth 10 % drowns in the noise. Here the
Gateway's own code is fed a fixed, realistic flow and timed with
``time.process_time_ns``; nothing else is measured:

* the flow: the load generator's planner (``clients.load_plan.Planner``, default
  mix 45 % passive GTC, 20 % IOC crossing every level, 15 % amends, 20 % cancels)
  for four participants over four instruments. The participants' requests are
  encoded as the load generator sends them (``execution_pb2`` messages), and the
  load generator's bookkeeping (resting orders, fills) decides the next one;
* the Gateway: a real :class:`~services.risk_gateway.app.RiskGatewayApp` (not
  started: no sockets), with limits of both kinds set for every participant (a
  message rate and an outstanding quantity per user; outstanding quantity and
  amount and two rolling windows per instrument, never breached), its store
  journalling to a temporary directory. Each participant is a real
  :class:`~services.common.wire.session.Session` whose ``data_received`` gets
  the request's frame: decode, route, handler, limits, outbox, journal write,
  forward, exactly as in the service;
* the Order Book: a real :class:`~services.common.wire.client.UpstreamConnection`
  carries the Gateway's requests; its ``data_received`` gets the real Order
  Book's answer and event frames (``services.order_book.translate``'s
  ``CommandProcessor`` and ``EventEncoder`` on a real engine), so the Gateway
  decodes every event, applies it to its order table, settles the answer and
  pushes fills, as in the service. The answers are recorded once (a first pass
  runs the Order Book next to the Gateway) and replayed in every timed run, so
  only the Gateway is timed. Every timed run checks that the Gateway sends the
  Order Book exactly the recorded bytes (its request ids included);
* the event loop is left out: callbacks the code schedules with ``call_soon``
  (the sessions' flushes) run right after each read, as the loop would.

A warm-up part of the flow (books filled, tables and caches warm) is applied
before timing. What the participants received (answers and fills, in order) is
hashed, so two versions of the Gateway can be compared byte for byte: the
digest must not change when the Gateway gets faster.

``python -m bench.gateway_cpu [--orders 20000] [--runs 7] [--orders-per-read 1,10]``
prints, per read size, the median CPU per order of several runs.
``--profile`` runs cProfile over one timed run instead (for finding, not figures).

Issue #9, same machine (2 cores, shared with other work, so figures move by a
few us between rounds), same flow (20,000 timed orders, 1.36 Order Book events
per order, seed 9), the Gateway before (85686f8) and after, the rest of the tree
identical, three interleaved rounds of five runs each (the median of each round):

| orders per read | before: us per order | after | output digest (both) |
| --- | --- | --- | --- |
| 1 | 33.7, 37.6, 37.9 | 30.7, 31.0, 33.1 (about -15 %) | eb0fc76cf22c159b |
| 10 | 26.3, 28.8, 29.9 | 24.4, 24.1, 25.5 (about -14 %) | e7c7f1c5b1d05d6d |

Where the time goes (cProfile's own time, so small functions weigh more than
they cost): about a third is the wire layer, which the Gateway does not own
(frame decoding and ``FromString`` of requests and events, sessions' slots and
writes, the upstream connection's sends); the Gateway's request path (handlers,
outbox, settling, answers) about a fifth; limits and windows about a tenth; the
order table and event translation about a tenth; the journal about 4 %.
Measured and not kept: encoding the forwarded requests and ``OnFill`` by hand
with ``services/common/wire/pbenc.py`` (byte-identical, but no faster than
protobuf's C encoder here: 1.09 against 1.04 us per insert, 1.08 against 1.05
per fill).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import hashlib
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.load_plan import Instrument as PlanInstrument
from clients.load_plan import Intent, Kind, Mix, Planner, RestingOrders
from services.common.auth import Authenticator
from services.common.config import RiskGatewayConfig
from services.common.pb import common_pb2, execution_pb2
from services.common.users import Role, UserStore
from services.common.wire.client import UpstreamConnection
from services.common.wire.framing import FrameDecoder, encode_frame
from services.common.wire.registry import MESSAGE_CLASSES
from services.common.wire.session import Session
from services.order_book.engine import Engine
from services.order_book.translate import CommandProcessor, EventEncoder
from services.risk_gateway.app import RiskGatewayApp
from services.risk_gateway.limits import OWN, InstrumentLimits, RollingLimit, UserLimits

TICK = 0.01
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
PARTICIPANTS = 4
WARMUP_ORDERS = 2_000
ORDER_INTERVAL_S = 0.0001
"""Simulated time between orders: 10,000 orders per second, as end to end."""
START_NS = 1_763_000_000_000_000_000

MT = common_pb2.MessageType
INSERT = int(MT.EXECUTION_INSERT_ORDER_REQUEST)
CANCEL = int(MT.EXECUTION_CANCEL_ORDER_REQUEST)
AMEND = int(MT.EXECUTION_AMEND_ORDER_REQUEST)
INSERT_RESPONSE = int(MT.EXECUTION_INSERT_ORDER_RESPONSE)
AMEND_RESPONSE = int(MT.EXECUTION_AMEND_ORDER_RESPONSE)
ON_FILL = int(MT.EXECUTION_ON_FILL)

USER_LIMITS = UserLimits(1_000_000_000, RollingLimit(1_000_000, 1))
INSTRUMENT_LIMITS = InstrumentLimits(
    1_000_000_000, 1e12, RollingLimit(1_000_000_000, 60), RollingLimit(1_000_000_000, 10)
)


# ---------------------------------------------------------------------- stand-ins


class BenchClock:
    """The Gateway's clock: set by the harness per read, so runs are reproducible."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now_ns(self) -> int:
        return START_NS + int(self.t * 1e9)


class DeferredCalls:
    """Stands in for the event loop: ``call_soon`` callbacks run when the harness says."""

    def __init__(self) -> None:
        self.ready: list[tuple[Any, tuple[Any, ...]]] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.ready.append((callback, args))

    def time(self) -> float:
        return 0.0

    def create_future(self) -> asyncio.Future[Any]:
        """Barriers (rare) wait for an answer in a future of the real loop."""
        return asyncio.get_running_loop().create_future()

    def run(self) -> None:
        while self.ready:
            ready, self.ready = self.ready, []
            for callback, args in ready:
                callback(*args)


class FakeTransport:
    """Keeps what is written (the Gateway's output to one peer)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data


@dataclass(slots=True)
class Gateway:
    """A Gateway wired to fake transports, as the service wires it to sockets."""

    app: RiskGatewayApp
    clock: BenchClock
    calls: DeferredCalls
    sessions: list[Session]
    session_out: list[FakeTransport]
    conn: UpstreamConnection
    upstream_out: FakeTransport


def build_gateway(data_dir: Path) -> Gateway:
    """A fresh Gateway (call inside a running loop: sessions need one)."""
    clock = BenchClock()
    calls = DeferredCalls()
    config = RiskGatewayConfig(data_dir=data_dir, service_password="unused")
    app = RiskGatewayApp(config, Authenticator(UserStore(), clock), clock)
    restored = app.store.load()
    restored.apply(app.engine, clock.monotonic())
    app.coids = app.execution.coids = restored.coids
    app.store.open(app.engine, app.coids)
    app.engine.journal = app.store.window
    link = app.order_book.link
    conn = UpstreamConnection(
        "bench->order book",
        functools.partial(link._push, link.generation),
        config.heartbeat_interval_s,
        config.idle_timeout_s,
        config.max_frame_bytes,
    )
    conn._loop = calls  # type: ignore[assignment]
    upstream_out = FakeTransport()
    conn.transport = upstream_out  # type: ignore[assignment]
    conn.after_read = app._order_book_read
    link.conn = conn
    link._up.set()
    sessions = []
    outs = []
    for index in range(PARTICIPANTS):
        session = Session(app.server)
        session._loop = calls  # type: ignore[assignment]
        out = FakeTransport()
        session.transport = out  # type: ignore[assignment]
        session.decoder = FrameDecoder(app.server.settings.max_frame_bytes)
        session.username = user = f"p{index}"
        session.user = user
        session.role = int(Role.PARTICIPANT)
        app.on_login(session)
        sessions.append(session)
        outs.append(out)
        app.engine.set_user_limits(user, OWN, USER_LIMITS)
        for symbol in SYMBOLS:
            app.engine.set_instrument_limits(user, OWN, symbol, INSTRUMENT_LIMITS)
    return Gateway(app, clock, calls, sessions, outs, conn, upstream_out)


# ---------------------------------------------------------------------- the flow


@dataclass(frozen=True, slots=True)
class Read:
    """One read's worth of requests (participant, frame), then the round trips to
    the Order Book they caused: what the Gateway sent and the Order Book's answer
    (answers followed by their events). Usually one round; a barrier the Gateway
    needed (an answer whose events it could not be sure of) adds one."""

    requests: tuple[tuple[int, bytes], ...]
    rounds: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Flow:
    book_ids: tuple[int, ...]
    setup: bytes
    warmup: tuple[Read, ...]
    timed: tuple[Read, ...]
    orders: int
    events: int


def _request_frame(intent: Intent, instrument: PlanInstrument) -> bytes:
    if intent.kind is Kind.CANCEL:
        cancel = execution_pb2.CancelOrderRequest(
            instrument_symbol=instrument.symbol, order_id=intent.order_id
        )
        return encode_frame(CANCEL, cancel.SerializeToString())
    if intent.kind is Kind.AMEND:
        amend = execution_pb2.AmendOrderRequest(
            instrument_symbol=instrument.symbol,
            order_id=intent.order_id,
            price=instrument.price(intent.ticks),
            quantity=intent.quantity,
        )
        return encode_frame(AMEND, amend.SerializeToString())
    insert = execution_pb2.InsertOrderRequest(
        instrument_symbol=instrument.symbol,
        side=intent.side,  # type: ignore[arg-type]
        price=instrument.price(intent.ticks),
        quantity=intent.quantity,
        time_in_force=intent.time_in_force,  # type: ignore[arg-type]
    )
    return encode_frame(INSERT, insert.SerializeToString())


async def _round_trips(gw: Gateway) -> Any:
    """What the Gateway sends the Order Book, one round trip at a time (the caller
    feeds each answer back): the read's requests, then any barrier it needs.

    A barrier is sent from a task on the real event loop, so the loop is given
    turns (``sleep(0)``) until it is out, or until the Gateway waits for nothing.
    """
    gw.calls.run()
    upstream = gw.upstream_out.take()
    while upstream:
        yield upstream
        gw.calls.run()
        late = gw.app.execution._late
        upstream = gw.upstream_out.take()
        while not upstream and late:
            await asyncio.sleep(0)
            gw.calls.run()
            upstream = gw.upstream_out.take()


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    return FrameDecoder(1 << 30).feed(data)


async def record(orders: int, orders_per_read: int, seed: int) -> Flow:
    """Run the flow through a Gateway and a real Order Book; keep the Order Book's bytes."""
    engine = Engine()
    processor = CommandProcessor(engine)
    encoder = EventEncoder()
    timestamps = iter(range(START_NS, 1 << 62, 1_000))
    for _ in SYMBOLS:
        engine.create_book(TICK, 0, next(timestamps))
    book_ids = [info.order_book_id for info in engine.books()]
    setup = b"".join(encoder.encode_all(engine.drain_events()))
    plan_instruments = [PlanInstrument.around(s, TICK) for s in SYMBOLS]
    planner = Planner(plan_instruments, Mix(), seed)
    books = [RestingOrders() for _ in range(PARTICIPANTS)]
    with tempfile.TemporaryDirectory(prefix="gateway-cpu-") as tmp:
        gw = build_gateway(Path(tmp))
        for symbol, book_id in zip(SYMBOLS, book_ids, strict=True):
            gw.app.directory.added(symbol, book_id, TICK, 0)
        gw.conn.data_received(setup)
        reads: list[Read] = []
        total = WARMUP_ORDERS + orders
        index = 0
        while index < total:
            gw.clock.t += ORDER_INTERVAL_S * orders_per_read
            requests = []
            intents: list[tuple[int, Intent]] = []
            for _ in range(min(orders_per_read, total - index)):
                participant = index % PARTICIPANTS
                index += 1
                intent = planner.next(books[participant])
                frame = _request_frame(intent, plan_instruments[intent.instrument])
                requests.append((participant, frame))
                intents.append((participant, intent))
                gw.sessions[participant].data_received(frame)
            rounds = []
            async for upstream in _round_trips(gw):
                reply = []
                for message_type, payload in _frames(upstream):
                    request = MESSAGE_CLASSES[message_type].FromString(payload)
                    frame, _ = processor.process(message_type, request, next(timestamps))
                    reply.append(frame)
                    reply.extend(encoder.encode_all(engine.drain_events()))
                reply_bytes = b"".join(reply)
                rounds.append((upstream, reply_bytes))
                gw.conn.data_received(reply_bytes)
            reads.append(Read(tuple(requests), tuple(rounds)))
            _follow(gw, books, intents)
        assert not gw.app.execution.in_flight, "a request was not answered"
    warmup = WARMUP_ORDERS // orders_per_read
    timed = tuple(reads[warmup:])
    events = sum(
        len(_frames(reply)) - len(_frames(upstream)) for r in timed for upstream, reply in r.rounds
    )
    return Flow(
        tuple(book_ids),
        setup,
        tuple(reads[:warmup]),
        timed,
        sum(len(r.requests) for r in timed),
        events,
    )


def _follow(gw: Gateway, books: list[RestingOrders], intents: list[tuple[int, Intent]]) -> None:
    """The load generator's bookkeeping, from what each participant received."""
    for participant, out in enumerate(gw.session_out):
        book = books[participant]
        mine = [intent for p, intent in intents if p == participant]
        for message_type, payload in _frames(out.take()):
            if message_type == ON_FILL:
                fill = execution_pb2.OnFill.FromString(payload)
                book.filled(fill.order_id, fill.remaining_quantity)
                continue
            intent = mine.pop(0)
            if message_type == INSERT_RESPONSE:
                response = execution_pb2.InsertOrderResponse.FromString(payload)
                if not response.error_message:
                    book.rested(response.order_id, intent, response.resting_quantity)
            elif message_type == AMEND_RESPONSE:
                amended = execution_pb2.AmendOrderResponse.FromString(payload)
                if amended.error_message or not amended.resting_quantity:
                    book.gone(intent.order_id)


# ---------------------------------------------------------------------- one run


@dataclass(slots=True)
class RunResult:
    cpu_ns: int
    digest: str


async def run_once(
    flow: Flow, data_dir: Path, profile: cProfile.Profile | None = None
) -> RunResult:
    """A fresh Gateway, the warm-up applied; then the timed reads."""
    gw = build_gateway(data_dir)
    app = gw.app
    for symbol, book_id in zip(SYMBOLS, flow.book_ids, strict=True):
        app.directory.added(symbol, book_id, TICK, 0)
    gw.conn.data_received(flow.setup)
    clock = gw.clock
    sessions = gw.sessions
    conn_receive = gw.conn.data_received
    run_calls = gw.calls.run
    step = ORDER_INTERVAL_S
    for read in flow.warmup:
        clock.t += step * len(read.requests)
        for participant, frame in read.requests:
            sessions[participant].data_received(frame)
        recorded = iter(read.rounds)
        async for upstream in _round_trips(gw):
            sent, reply = next(recorded)
            assert upstream == sent, "the Gateway sent other bytes"
            conn_receive(reply)
    for out in gw.session_out:
        out.take()
    receivers = [s.data_received for s in sessions]
    upstream = gw.upstream_out.written
    gc.collect()
    if profile is not None:
        profile.enable()
    start = time.process_time_ns()
    late = app.execution._late
    for read in flow.timed:
        clock.t += step * len(read.requests)
        for participant, frame in read.requests:
            receivers[participant](frame)
        run_calls()
        rounds = read.rounds
        conn_receive(rounds[0][1])
        run_calls()
        if len(rounds) > 1 or late:
            # A barrier (rare): the same loop turns as when it was recorded.
            for _, reply in rounds[1:]:
                written = len(upstream)
                while len(upstream) == written:
                    await asyncio.sleep(0)
                    run_calls()
                conn_receive(reply)
                run_calls()
            while late:
                await asyncio.sleep(0)
                run_calls()
    cpu_ns = time.process_time_ns() - start
    if profile is not None:
        profile.disable()
    assert not app.execution.in_flight, "a request was not answered"
    sent = b"".join(upstream)
    expected = b"".join(sent for r in flow.timed for sent, _ in r.rounds)
    assert sent == expected, "the Gateway sent other bytes"
    digest = hashlib.sha256()
    for out in gw.session_out:
        digest.update(out.take())
    app.store.close(app.engine, app.coids)
    return RunResult(cpu_ns, digest.hexdigest()[:16])


def measure(flow: Flow, runs: int) -> dict[str, Any]:
    """Median of ``runs`` fresh runs; every run must send the same bytes."""
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="gateway-cpu-") as tmp:
            results.append(asyncio.run(run_once(flow, Path(tmp))))
    digests = {r.digest for r in results}
    assert len(digests) == 1, f"runs sent different bytes: {digests}"
    per_order = [r.cpu_ns / 1000 / flow.orders for r in results]
    return {
        "us_per_order": statistics.median(per_order),
        "min": min(per_order),
        "max": max(per_order),
        "digest": results[0].digest,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_cpu", description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000, help="timed orders per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per read size (median)")
    parser.add_argument(
        "--orders-per-read", default="1,10", help="orders whose answers arrive in one read"
    )
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile one timed run")
    ns = parser.parse_args(argv)
    sizes = [int(s) for s in ns.orders_per_read.split(",")]
    if ns.profile:
        flow = asyncio.run(record(ns.orders, sizes[0], ns.seed))
        profile = cProfile.Profile()
        with tempfile.TemporaryDirectory(prefix="gateway-cpu-") as tmp:
            asyncio.run(run_once(flow, Path(tmp), profile))
        pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        return
    print(
        "| orders per read | orders | events per order | CPU us per order (median) | "
        "min-max | output digest |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        flow = asyncio.run(record(ns.orders, size, ns.seed))
        r = measure(flow, ns.runs)
        print(
            f"| {size} | {flow.orders:,} | {flow.events / flow.orders:.2f} | "
            f"{r['us_per_order']:.2f} | {r['min']:.2f}-{r['max']:.2f} | {r['digest']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
