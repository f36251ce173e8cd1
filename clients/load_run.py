"""The asyncio side of the load generator: connections, the open-loop clock, counting.

**Open loop.**  Request ``i`` of a step is *scheduled* at ``start + i / rate``
whatever happened to earlier ones; its latency is measured from that scheduled
time to the read that delivered its response.  When the exchange (or the
generator itself) stalls, the requests scheduled during the stall are late and
their latency says so: the coordinated-omission mistake of closed-loop tools
(wait for an answer, then send the next one) cannot hide the stall.  The
generator's own lateness is reported separately as ``send_lag`` so a reader can
tell whose fault a bad tail is.

**Timer precision.**  asyncio's default epoll selector rounds every timeout up
to a whole millisecond, which at 1,000 orders/s would add ~0.5 ms of our own
lateness to every order.  With the stock loop the generator therefore uses the
``select()`` selector (microsecond timeouts) as long as it has few sockets.
uvloop (``--loop uvloop``) has millisecond timers; its ``send_lag`` shows it.

Everything is bounded: a step schedules at most ``rate * duration`` requests
(``count`` caps it further), stops scheduling when more than ``max_in_flight``
are unanswered (the step is then marked overloaded), and waits at most
``drain_s`` for late answers; an unanswered request is counted with the latency
of the drain deadline (a lower bound) so it cannot improve the tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from clients.load_plan import KIND_NAMES, Instrument, Intent, Kind, Mix, Planner, RestingOrders
from clients.load_stats import Recorder, encode, histogram_of, merged, summary
from services.common.pb import common_pb2, execution_pb2, info_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import RemoteError

log = logging.getLogger("optivex.load")

MT = common_pb2.MessageType
INSERT = MT.EXECUTION_INSERT_ORDER_REQUEST
CANCEL = MT.EXECUTION_CANCEL_ORDER_REQUEST
AMEND = MT.EXECUTION_AMEND_ORDER_REQUEST
ON_FILL = MT.EXECUTION_ON_FILL
ON_ORDER_CANCELLED = MT.EXECUTION_ON_ORDER_CANCELLED
ON_INSTRUMENT = MT.INFO_ON_INSTRUMENT
ON_TOP = MT.INFO_ON_TOP_OF_BOOK
ON_DEPTH = MT.INFO_ON_PRICE_DEPTH_BOOK
ON_TRADE = MT.INFO_ON_TRADE

DEMO_USERS = ("alice", "bob", "carol", "dave")
MAX_ERROR_SAMPLES = 5
MAX_MD_LAG_SAMPLES = 200_000
"""Market-data lag values kept per step (enough for p99.9, cheap to histogram)."""


class LoadConnection(UpstreamConnection):
    """An :class:`UpstreamConnection` that notes when each read arrived.

    Responses reach their callbacks (``request_callback``: no future, no extra
    loop turn) inside ``data_received``; ``rx_time`` is the arrival time of the
    read that carried them, taken once per read rather than once per response.
    """

    rx_time = 0.0

    def data_received(self, data: bytes) -> None:
        self.rx_time = time.perf_counter()
        super().data_received(data)


@dataclass
class LoadOptions:
    """Everything a run needs; the CLI builds it from flags."""

    host: str = "127.0.0.1"
    port: int = 7404
    info_host: str = "127.0.0.1"
    info_port: int = 0
    users: list[tuple[str, str]] = field(
        default_factory=lambda: [(u, f"{u}-demo") for u in DEMO_USERS]
    )
    connections: int = 4
    subscribers: int = 0
    subscription: str = "both"
    depth: int = 10
    symbols: list[str] = field(default_factory=list)
    instruments: int = 4
    tick_size: float = 0.01
    mix: Mix = field(default_factory=Mix)
    seed: int = 1
    levels: int = 10
    max_quantity: int = 10
    max_resting: int = 1000
    max_in_flight: int = 50_000
    drain_s: float = 5.0
    md_lag: bool = True


class _Participant:
    __slots__ = ("conn", "planner", "resting")

    def __init__(self, conn: LoadConnection, planner: Planner, resting: RestingOrders) -> None:
        self.conn = conn
        self.planner = planner
        self.resting = resting


@dataclass
class MarketDataCounts:
    top_of_book: int = 0
    depth: int = 0
    trades: int = 0
    lag_us: list[int] = field(default_factory=list)


class StepState:
    """Counters of one step (read by the progress bar while it runs)."""

    def __init__(self, rate: float, total: int) -> None:
        self.rate = rate
        self.total = total
        self.sent = 0
        self.completed = 0
        self.failed = 0
        self.errors = [0] * len(Kind)
        self.error_samples: list[str] = []
        self.recorder = Recorder(len(Kind))
        self.pending: dict[int, tuple[float, int]] = {}
        self.start = 0.0
        self.last_completion = 0.0
        self.overloaded = False
        self.drained = asyncio.Event()
        self.scheduling_done = False

    @property
    def in_flight(self) -> int:
        return len(self.pending)


class LoadRun:
    """Connections to the gateway (and Info), reused across steps."""

    connection_class: type[LoadConnection] = LoadConnection
    """Participant connection class (tests swap in one that keeps a ledger)."""

    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        self.participants: list[_Participant] = []
        self.subscribers: list[LoadConnection] = []
        self.instruments: list[Instrument] = []
        self.md = MarketDataCounts()
        self.fills = 0
        self.unsolicited_cancels = 0
        self.state: StepState | None = None

    def instruments_text(self) -> list[str]:
        return [i.symbol for i in self.instruments]

    # ------------------------------------------------------------------ setup

    async def setup(self) -> None:
        """Find the instruments, log in every connection, subscribe."""
        o = self.options
        self.instruments = await self._discover()
        conns = await asyncio.gather(
            *(self._open_participant(i) for i in range(o.connections)), return_exceptions=True
        )
        failures = [c for c in conns if isinstance(c, BaseException)]
        for conn in conns:
            if isinstance(conn, LoadConnection) and failures:
                conn.close()
        if failures:
            raise RuntimeError(f"cannot open participant connections: {failures[0]!r}")
        if o.subscribers:
            subs = await asyncio.gather(
                *(self._open_subscriber(i) for i in range(o.subscribers)), return_exceptions=True
            )
            bad = [s for s in subs if isinstance(s, BaseException)]
            self.subscribers = [s for s in subs if isinstance(s, LoadConnection)]
            if bad:
                raise RuntimeError(f"cannot open market-data subscribers: {bad[0]!r}")

    async def _discover(self) -> list[Instrument]:
        o = self.options
        if not o.info_port:
            if not o.symbols:
                raise RuntimeError("without --info-port, --symbols must name the instruments")
            return [Instrument.around(s, o.tick_size) for s in o.symbols]
        ticks: dict[str, float] = {}

        def on_push(message_type: int, message: Any) -> None:
            if message_type == ON_INSTRUMENT:
                ticks[message.instrument.symbol] = message.tick_size

        user, password = o.users[0]
        conn = await LoadConnection.open(
            o.info_host, o.info_port, user, password, name="load-discover", on_push=on_push
        )
        try:
            # Pushes sent on login precede this response: once it is here, every
            # live instrument has been announced.
            await asyncio.wait_for(
                conn.request(MT.INFO_QUOTES_REQUEST, info_pb2.QuotesRequest()), 10
            )
        finally:
            conn.close()
        if o.symbols:
            missing = [s for s in o.symbols if s not in ticks]
            if missing:
                raise RuntimeError(f"unknown symbols at Info: {', '.join(missing)}")
            chosen = list(o.symbols)
        else:
            chosen = sorted(ticks)[: o.instruments]
        if not chosen:
            raise RuntimeError("Info lists no instruments to trade (create some first)")
        return [Instrument.around(s, ticks[s]) for s in chosen]

    async def _open_participant(self, index: int) -> LoadConnection:
        o = self.options
        user, password = o.users[index % len(o.users)]
        resting = RestingOrders()
        conn = await self.connection_class.open(
            o.host,
            o.port,
            user,
            password,
            name=f"load-{user}-{index}",
            on_push=functools.partial(self._on_participant_push, resting),
        )
        self._participant_opened(conn, user, index)
        planner = Planner(
            self.instruments,
            o.mix,
            o.seed * 1_000_003 + index,
            levels=o.levels,
            max_quantity=o.max_quantity,
            max_resting=o.max_resting,
        )
        self.participants.append(_Participant(conn, planner, resting))
        return conn

    def _participant_opened(self, conn: LoadConnection, user: str, index: int) -> None:
        """Hook: equip a new participant connection before it trades (no-op here)."""

    def _on_participant_push(self, resting: RestingOrders, message_type: int, message: Any) -> None:
        if message_type == ON_FILL:
            self.fills += 1
            resting.filled(message.order_id, message.remaining_quantity)
        elif message_type == ON_ORDER_CANCELLED:
            self.unsolicited_cancels += 1
            resting.gone(message.order_id)

    async def _open_subscriber(self, index: int) -> LoadConnection:
        o = self.options
        user, password = o.users[index % len(o.users)]
        conn = await LoadConnection.open(
            o.info_host, o.info_port, user, password, name=f"load-md-{index}", on_push=self._on_md
        )
        kinds = {
            "top": [info_pb2.TOP_OF_BOOK],
            "depth": [info_pb2.PRICE_DEPTH_BOOK],
            "both": [info_pb2.TOP_OF_BOOK, info_pb2.PRICE_DEPTH_BOOK],
        }[o.subscription]
        requests = [
            conn.request(
                MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST,
                info_pb2.OrderBookSubscribeRequest(
                    instrument_symbol=instrument.symbol, subscription_type=kind, depth=o.depth
                ),
            )
            for instrument in self.instruments
            for kind in kinds
        ]
        await asyncio.wait_for(asyncio.gather(*requests), 10)
        return conn

    def _on_md(self, message_type: int, message: Any) -> None:
        md = self.md
        if message_type == ON_TOP:
            md.top_of_book += 1
        elif message_type == ON_DEPTH:
            md.depth += 1
        elif message_type == ON_TRADE:
            md.trades += 1
        else:
            return
        if self.options.md_lag and message.timestamp and len(md.lag_us) < MAX_MD_LAG_SAMPLES:
            md.lag_us.append((time.time_ns() - message.timestamp) // 1000)

    # ------------------------------------------------------------------ one step

    async def step(
        self,
        rate: float,
        duration_s: float,
        count: int | None = None,
        start_at: float | None = None,
    ) -> dict[str, Any]:
        """Send at ``rate`` for ``duration_s`` (at most ``count`` requests); return figures."""
        if rate <= 0 or duration_s <= 0:
            raise ValueError("rate and duration must be > 0")
        total = max(1, int(rate * duration_s))
        if count is not None:
            total = min(total, count)
        state = StepState(rate, total)
        self.state = state
        md_before = (self.md.top_of_book, self.md.depth, self.md.trades)
        self.md.lag_us = []
        fills_before = self.fills
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_before = time.process_time()
        wall_start = time.time()
        state.start = time.perf_counter()
        await self._schedule(state)
        state.scheduling_done = True
        if state.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.drained.wait(), self.options.drain_s)
        end = time.perf_counter()
        cpu = time.process_time() - cpu_before
        unanswered = dict(state.pending)
        state.pending.clear()
        for scheduled, kind in unanswered.values():
            state.recorder.by_kind[kind].append(int((end - scheduled) * 1e6))
        figures = self._figures(state, end, cpu, len(unanswered), md_before, fills_before)
        figures["wall_start"] = wall_start
        figures["wall_end"] = wall_start + (end - state.start)
        return figures

    async def _schedule(self, state: StepState) -> None:
        participants = self.participants
        n = len(participants)
        interval = 1.0 / state.rate
        start = state.start
        total = state.total
        max_in_flight = self.options.max_in_flight
        lag = state.recorder.send_lag
        perf = time.perf_counter
        send = self._send
        i = 0
        while i < total:
            now = perf()
            due = min(total, int((now - start) * state.rate) + 1)
            if len(state.pending) > max_in_flight:
                state.overloaded = True
                state.total = i
                break
            while i < due:
                scheduled = start + i * interval
                lag.append(int((now - scheduled) * 1e6))
                send(participants[i % n], i, scheduled, state)
                i += 1
            if i >= total:
                break
            delay = start + i * interval - perf()
            await asyncio.sleep(delay if delay > 0 else 0)

    def _send(self, part: _Participant, seq: int, scheduled: float, state: StepState) -> None:
        intent = part.planner.next(part.resting)
        instrument = self.instruments[intent.instrument]
        conn = part.conn
        kind = intent.kind
        done = functools.partial(self._done, state, part, intent, seq)
        state.sent += 1
        state.pending[seq] = (scheduled, kind)
        if kind is Kind.CANCEL:
            conn.request_callback(
                CANCEL,
                execution_pb2.CancelOrderRequest(
                    instrument_symbol=instrument.symbol, order_id=intent.order_id
                ),
                done,
            )
        elif kind is Kind.AMEND:
            conn.request_callback(
                AMEND,
                execution_pb2.AmendOrderRequest(
                    instrument_symbol=instrument.symbol,
                    order_id=intent.order_id,
                    price=instrument.price(intent.ticks),
                    quantity=intent.quantity,
                ),
                done,
            )
        else:
            conn.request_callback(
                INSERT,
                execution_pb2.InsertOrderRequest(
                    instrument_symbol=instrument.symbol,
                    side=intent.side,  # type: ignore[arg-type]
                    price=instrument.price(intent.ticks),
                    quantity=intent.quantity,
                    time_in_force=intent.time_in_force,  # type: ignore[arg-type]
                ),
                done,
            )

    def _done(
        self,
        state: StepState,
        part: _Participant,
        intent: Intent,
        seq: int,
        response: Any,
    ) -> None:
        entry = state.pending.pop(seq, None)
        if entry is None:  # counted as unanswered when the drain gave up
            return
        scheduled, kind = entry
        rx = part.conn.rx_time
        if isinstance(response, Exception):
            state.failed += 1
            self._sample(state, f"{KIND_NAMES[kind]}: {response!r}")
            state.errors[kind] += 1
        else:
            state.recorder.by_kind[kind].append(int((rx - scheduled) * 1e6))
            state.completed += 1
            state.last_completion = rx
            if response.error_message:
                state.errors[kind] += 1
                self._sample(state, f"{KIND_NAMES[kind]}: {response.error_message}")
                if kind == Kind.AMEND:
                    part.resting.gone(intent.order_id)
            elif kind == Kind.PASSIVE or kind == Kind.CROSS:
                part.resting.rested(response.order_id, intent, response.resting_quantity)
            elif kind == Kind.AMEND and response.resting_quantity == 0:
                part.resting.gone(intent.order_id)
        if state.scheduling_done and not state.pending:
            state.drained.set()

    @staticmethod
    def _sample(state: StepState, text: str) -> None:
        if len(state.error_samples) < MAX_ERROR_SAMPLES and text not in state.error_samples:
            state.error_samples.append(text)

    # ------------------------------------------------------------------ results

    def _figures(
        self,
        state: StepState,
        end: float,
        cpu_s: float,
        unanswered: int,
        md_before: tuple[int, int, int],
        fills_before: int,
    ) -> dict[str, Any]:
        by_kind, lag = state.recorder.histograms()
        overall = merged(by_kind)
        elapsed = (state.last_completion or end) - state.start
        achieved = state.completed / elapsed if elapsed > 0 and state.completed else 0.0
        md_lag = histogram_of(self.md.lag_us)
        wall = end - state.start
        return {
            "target_rate": state.rate,
            "scheduled": state.total,
            "sent": state.sent,
            "completed": state.completed,
            "failed": state.failed,
            "unanswered": unanswered,
            "overloaded": state.overloaded,
            "achieved_rate": round(achieved, 1),
            "elapsed_s": round(wall, 3),
            "errors": dict(zip(KIND_NAMES, state.errors, strict=True)),
            "error_samples": state.error_samples,
            "latency_us": summary(overall),
            "by_kind": {name: summary(h) for name, h in zip(KIND_NAMES, by_kind, strict=True)},
            "send_lag_us": summary(lag),
            "generator_cpu": round(cpu_s / wall, 3) if wall > 0 else 0.0,
            "fills": self.fills - fills_before,
            "market_data": {
                "top_of_book": self.md.top_of_book - md_before[0],
                "depth": self.md.depth - md_before[1],
                "trades": self.md.trades - md_before[2],
                "lag_us": summary(md_lag),
            },
            "histograms": {
                "all": encode(overall),
                "send_lag": encode(lag),
                "market_data_lag": encode(md_lag),
                **{name: encode(h) for name, h in zip(KIND_NAMES, by_kind, strict=True)},
            },
        }

    # ------------------------------------------------------------------ teardown

    async def settle(self, timeout_s: float = 2.0) -> None:
        """Wait briefly for late pushes between steps (nothing is in flight then)."""
        await asyncio.sleep(min(timeout_s, 0.2))

    async def close(self) -> None:
        conns = [p.conn for p in self.participants] + self.subscribers
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        for conn in conns:
            with contextlib.suppress(Exception, RemoteError):
                await asyncio.wait_for(conn.wait_closed(), 2)
