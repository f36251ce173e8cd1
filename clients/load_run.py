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

**Cost per order.**  The generator shares the machine with what it measures,
so every microsecond it spends is taken from the services.  Its hot path is
therefore lean: a timer callback (not a sleeping task) sends what is due and
writes each connection's batch in the same loop turn; requests are
concatenated from cached, hand-encoded pieces (:class:`OrderFrames`, byte for
byte the protobuf encoding); reads go into one buffer per connection; market
data is counted by frame type.  None of this changes what is measured: the
schedule, the lateness accounting and the moment a response is timestamped
are the same.

Everything is bounded: a step schedules at most ``rate * duration`` requests
(``count`` caps it further), stops scheduling when more than ``max_in_flight``
are unanswered (the step is then marked overloaded), and waits at most
``drain_s`` for late answers; an unanswered request is counted with the latency
of the drain deadline (a lower bound) so it cannot improve the tail.

**TLS.**  ``LoadOptions.ssl`` (one context for the Gateway and Info, as in the
SDK) makes every connection TLS.  asyncio's SSL transport hands the decrypted
bytes to a buffered protocol through ``get_buffer``/``buffer_updated`` as the
TCP transport does, so :class:`LoadConnection` keeps its one receive buffer.
uvloop's SSL transport takes it for a plain protocol (it is one too, through
:class:`UpstreamConnection`) and calls ``data_received``, which does the same
work with a fresh ``bytes`` per read; both were checked to deliver every
answer.  Encryption's cost shows in the generator's CPU and in the latencies,
as it would for a participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, Final

from google.protobuf.message import DecodeError

from clients.load_plan import AMEND as K_AMEND
from clients.load_plan import CANCEL as K_CANCEL
from clients.load_plan import CROSS as K_CROSS
from clients.load_plan import KIND_NAMES, Instrument, Intent, Kind, Mix, Planner, RestingOrders
from clients.load_plan import PASSIVE as K_PASSIVE
from clients.load_stats import Recorder, encode, histogram_of, merged, summary
from services.common.pb import common_pb2, execution_pb2, info_pb2
from services.common.wire.client import ResponseCallback, UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError
from services.common.wire.framing import HEADER, FrameDecoder, encode_frame
from services.common.wire.pbenc import varint

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
GTC_TIF: Final = int(common_pb2.GOOD_TILL_CANCEL)
IOC_TIF: Final = int(common_pb2.IMMEDIATE_OR_CANCEL)

DEMO_USERS = ("alice", "bob", "carol", "dave")
MAX_ERROR_SAMPLES = 5
MAX_MD_LAG_SAMPLES = 200_000
"""Market-data lag values kept per step (enough for p99.9, cheap to histogram)."""


RX_BUFFER_BYTES: Final = 256 * 1024
"""Receive buffer of one load connection, allocated once (asyncio's own read size)."""


class LoadConnection(UpstreamConnection, asyncio.BufferedProtocol):
    """An :class:`UpstreamConnection` that notes when each read arrived.

    Responses reach their callbacks (``request_callback``: no future, no extra
    loop turn) inside ``data_received``; ``rx_time`` is the arrival time of the
    read that carried them, taken once per read rather than once per response.

    It reads through the buffered-protocol interface (``recv_into`` one buffer
    kept for the connection's life): a plain protocol makes asyncio allocate a
    fresh 256 KiB ``bytes`` for every read, which costs an ``mmap``, an
    ``mremap`` and a ``munmap`` per read (measured with ``strace -c``: three
    syscalls per order at 1,000 orders/s, more than the ``recv`` itself).

    :meth:`submit` and :meth:`flush_now` are the load generator's send path: a
    request already encoded by :class:`OrderFrames` goes straight into the
    output list, and the generator writes each connection's batch itself at
    the end of a scheduler tick, so an order leaves in the same loop turn as
    its timer fired (no ``call_soon`` and no extra selector round trip).
    """

    rx_time = 0.0
    _rx_view: memoryview | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._rx_view
        if view is None:
            view = self._rx_view = memoryview(bytearray(RX_BUFFER_BYTES))
        return view

    def buffer_updated(self, nbytes: int) -> None:
        view = self._rx_view
        assert view is not None  # get_buffer always runs first
        self.data_received(view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.rx_time = time.perf_counter()
        super().data_received(data)

    def submit(self, message_type: int, body: bytes, callback: ResponseCallback) -> int:
        """Queue a request whose payload after ``request_id`` is ``body``.

        What :meth:`request_callback` does for a protobuf message, with the
        bytes prepared by :class:`OrderFrames`: the ``request_id`` (field 1,
        always first) is assigned and encoded here, ``callback`` gets the
        response.  Nothing is written until :meth:`flush_now`.  Returns the
        ``request_id``.
        """
        request_id = self._next_id
        self._next_id = request_id + 1
        if self.transport is None:
            self._loop.call_soon(callback, ConnectionLost(f"{self.name}: not connected"))
            return request_id
        self._pending[request_id] = (callback, None)
        if request_id < 0x80:
            payload = b"\x08" + _BYTES[request_id] + body
        elif request_id < 0x4000:  # two bytes: the common case, without a loop
            payload = bytes((8, (request_id & 0x7F) | 0x80, request_id >> 7)) + body
        else:
            payload = b"\x08" + varint(request_id) + body
        self._out.append(_pack_header(len(payload) + 4, message_type) + payload)
        return request_id

    def flush_now(self) -> None:
        """Write everything queued (also by :meth:`send`) in one ``write`` now."""
        out = self._out
        if not out:
            return
        transport = self.transport
        if transport is None:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._last_sent = self._loop.time()
        transport.write(data)


class MarketDataConnection(LoadConnection):
    """A market-data subscriber that counts deliveries from the frame type alone.

    Info pushes a top-of-book and a depth message per book change (each with
    up to ``depth`` levels a side).  Once :attr:`counts` is set, top-of-book,
    depth and trade pushes are counted from their frame type, and decoded
    only while lag samples are still wanted (at most ``MAX_MD_LAG_SAMPLES``
    per step), instead of each going through the generic registry lookup,
    decode and push callback.  (Reading the ``timestamp`` out of the payload
    by hand was measured too: slower in Python than upb decoding the whole
    message.)  Every other frame (responses, errors, heartbeats, instrument
    announcements) takes the ordinary path.
    """

    counts: MarketDataCounts | None = None
    lag = True
    """Sample the lag from each message's timestamp (``LoadOptions.md_lag``)."""
    _others: FrameDecoder | None = None

    def data_received(self, data: bytes) -> None:
        counts = self.counts
        if counts is None:
            super().data_received(data)
            return
        frames = self.read_frames(data)
        if frames is None:
            return
        others: list[bytes] = []
        lag = counts.lag_us if self.lag else None
        now_ns = 0
        for message_type, payload in frames:
            if message_type == ON_TOP:
                counts.top_of_book += 1
                parse = _parse_top
            elif message_type == ON_DEPTH:
                counts.depth += 1
                parse = _parse_depth
            elif message_type == ON_TRADE:
                counts.trades += 1
                parse = _parse_trade
            else:
                others.append(encode_frame(message_type, payload))
                continue
            if lag is not None and len(lag) < MAX_MD_LAG_SAMPLES:
                try:
                    timestamp = parse(payload).timestamp
                except DecodeError:
                    continue
                if timestamp:
                    if not now_ns:
                        now_ns = time.time_ns()
                    lag.append((now_ns - timestamp) // 1000)
        if others:
            # Complete frames only, through a decoder of their own: the
            # connection's decoder may hold the start of a frame still to come.
            if self._others is None:
                self._others = FrameDecoder(self.decoder.max_length)
            decoder, self.decoder = self.decoder, self._others
            try:
                super().data_received(b"".join(others))
            finally:
                self.decoder = decoder


_parse_top: Callable[[bytes], Any] = info_pb2.OnTopOfBook.FromString
_parse_depth: Callable[[bytes], Any] = info_pb2.OnPriceDepthBook.FromString
_parse_trade: Callable[[bytes], Any] = info_pb2.OnTrade.FromString
_pack_header = HEADER.pack
_pack_double = struct.Struct("<d").pack
_BYTES: Final = tuple(bytes((n,)) for n in range(0x80))


class OrderFrames:
    """The load generator's requests encoded by hand, from cached pieces.

    Building a protobuf message per order, serializing it and framing it was a
    good part of the generator's Python time per order.  The requests it sends
    have a fixed shape, so each is the concatenation of a few byte strings,
    most of which repeat: the symbol field per instrument, the price field per
    (instrument, ticks), the quantity field per quantity.  The bytes are
    exactly what ``SerializeToString`` produces for the same message (fields
    in number order, proto3 defaults omitted; tests compare the two), so the
    exchange sees no difference.  ``request_id`` (field 1) is left to
    :meth:`LoadConnection.submit`, which assigns it.
    """

    __slots__ = ("_insert", "_price", "_symbol", "instruments")

    def __init__(self, instruments: list[Instrument]) -> None:
        self.instruments = instruments
        self._symbol: list[bytes] = []
        for instrument in instruments:
            symbol = instrument.symbol.encode()
            self._symbol.append(b"\x12" + varint(len(symbol)) + symbol)
        self._price: dict[tuple[int, int], bytes] = {}
        self._insert: dict[tuple[int, int, int, int, int], bytes] = {}

    def _price_field(self, instrument: int, ticks: int) -> bytes:
        key = (instrument, ticks)
        price = self._price.get(key)
        if price is None:
            value = self.instruments[instrument].price(ticks)
            price = self._price[key] = b"!" + _pack_double(value) if value else b""
        return price

    def body(self, intent: Intent) -> tuple[int, bytes]:
        """``(message type, payload without request_id)`` of ``intent``'s request."""
        kind = intent.kind
        if kind is K_CANCEL:
            return CANCEL, self._symbol[intent.instrument] + b"\x18" + varint(intent.order_id)
        if kind is K_AMEND:
            return AMEND, (
                self._symbol[intent.instrument]
                + b"\x18"
                + varint(intent.order_id)
                + self._price_field(intent.instrument, intent.ticks)
                + b"("
                + varint(intent.quantity)
            )
        tif = IOC_TIF if kind is K_CROSS else GTC_TIF
        key = (intent.instrument, intent.side, intent.ticks, intent.quantity, tif)
        body = self._insert.get(key)
        if body is None:
            body = self._insert[key] = (
                self._symbol[intent.instrument]
                + (b"\x18" + varint(intent.side) if intent.side else b"")
                + self._price_field(intent.instrument, intent.ticks)
                + b"(" + varint(intent.quantity)
                + (b"0" + varint(tif) if tif else b"")
            )  # fmt: skip
        return INSERT, body


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
    ssl: SSLContext | None = None
    """TLS context for the Gateway and Info ports (None: plain TCP)."""


class _Participant:
    __slots__ = ("conn", "fast", "planner", "resting")

    def __init__(self, conn: LoadConnection, planner: Planner, resting: RestingOrders) -> None:
        self.conn = conn
        self.planner = planner
        self.resting = resting
        # A connection class that overrides request_callback wants to see (and
        # may change) every request as a protobuf message, e.g. the reliability
        # tests' ledger stamping client_order_ids: it gets the protobuf path.
        self.fast = type(conn).request_callback is UpstreamConnection.request_callback


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
        self.frames = OrderFrames([])
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
        self.frames = OrderFrames(self.instruments)
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
            o.info_host,
            o.info_port,
            user,
            password,
            name="load-discover",
            on_push=on_push,
            ssl=o.ssl,
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
            ssl=o.ssl,
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
        conn = await MarketDataConnection.open(
            o.info_host,
            o.info_port,
            user,
            password,
            name=f"load-md-{index}",
            on_push=self._on_md,
            ssl=o.ssl,
        )
        conn.lag = o.md_lag
        conn.counts = self.md
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
        """Send every request of the step at (never before) its scheduled time.

        A timer callback rather than a task sleeping in a loop: each wake-up
        then costs one timer handle, not a future, a task step and a
        ``get_running_loop`` (measured: a bare 10,000/s wake-up loop drops
        from 36 to 26 µs CPU per wake-up on the reference machine).  Each tick
        sends everything due by now, writes each connection's batch at once
        and arms the timer for the next order's scheduled time; a tick that
        runs late sends the orders that fell due meanwhile together, each
        still measured from its own scheduled time.
        """
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        participants = self.participants
        conns = [p.conn for p in participants]
        n = len(participants)
        rate = state.rate
        interval = 1.0 / rate
        start = state.start
        total = state.total
        max_in_flight = self.options.max_in_flight
        pending = state.pending
        lag = state.recorder.send_lag.append
        perf = time.perf_counter
        send = self._send
        call_at = loop.call_at
        # Timers run on the loop's clock, scheduled times on perf_counter's
        # (the same clock on Linux, but not promised): a timer that fires a
        # hair early sends nothing and is simply armed again.
        offset = loop.time() - perf()
        sent = 0
        timer: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal sent, timer
            try:
                now = perf()
                if len(pending) > max_in_flight:
                    state.overloaded = True
                    state.total = sent
                    finished.set_result(None)
                    return
                i = sent
                due = min(total, int((now - start) * rate) + 1)
                while i < due:
                    scheduled = start + i * interval
                    lag(int((now - scheduled) * 1e6))
                    send(participants[i % n], i, scheduled, state)
                    i += 1
                sent = i
                for conn in conns:
                    conn.flush_now()
                if i >= total:
                    finished.set_result(None)
                else:
                    timer = call_at(start + i * interval + offset, tick)
            except BaseException as exc:  # the step must end, not hang
                if not finished.done():
                    finished.set_exception(exc)
                raise

        tick()
        try:
            await finished
        finally:
            # Cancelled (a run's --timeout): no order may leave after the step.
            if timer is not None:
                timer.cancel()

    def _send(self, part: _Participant, seq: int, scheduled: float, state: StepState) -> None:
        intent = part.planner.next(part.resting)
        kind = intent.kind
        done = functools.partial(self._done, state, part, intent, seq)
        state.sent += 1
        state.pending[seq] = (scheduled, kind)
        if part.fast:
            message_type, body = self.frames.body(intent)
            part.conn.submit(message_type, body, done)
        else:
            self._send_message(part.conn, intent, done)

    def _send_message(self, conn: LoadConnection, intent: Intent, done: ResponseCallback) -> None:
        """The same request as a protobuf message, through ``request_callback``."""
        instrument = self.instruments[intent.instrument]
        kind = intent.kind
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
                if kind is K_AMEND:
                    part.resting.gone(intent.order_id)
            elif kind is K_PASSIVE or kind is K_CROSS:
                part.resting.rested(response.order_id, intent, response.resting_quantity)
            elif kind is K_AMEND and response.resting_quantity == 0:
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
