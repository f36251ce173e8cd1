"""The load generator's cheap paths must say exactly what the slow ones said.

Hand-encoded order frames are byte for byte the protobuf encoding; the
planner's direct ``getrandbits`` draws give the flow ``randint`` gave for a
seed; the market-data subscriber counts what the generic path counted;
histograms recorded per distinct value equal value-by-value ones; and the
timer-driven scheduler never sends an order before its scheduled time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from clients.load_plan import (
    BUY,
    SELL,
    Instrument,
    Intent,
    Kind,
    Mix,
    Planner,
    Resting,
    RestingOrders,
)
from clients.load_run import (
    LoadConnection,
    LoadOptions,
    LoadRun,
    MarketDataConnection,
    MarketDataCounts,
    OrderFrames,
    StepState,
)
from clients.load_stats import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, histogram_of
from services.common.pb import common_pb2, execution_pb2, info_pb2
from services.common.wire.framing import encode_frame
from services.common.wire.pbenc import varint

MT = common_pb2.MessageType
INSTRUMENTS = [
    Instrument.around("AAA", 0.01),
    Instrument.around("B.LONGER-NAME", 0.05, 20.0),
    Instrument.around("C", 0.25, 1.0),
]


class CaptureTransport:
    """Enough of a transport for a connection that only writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _connection(cls: type[LoadConnection] = LoadConnection, **kw: Any) -> Any:
    conn = cls("test", kw.get("on_push"), 1.0, 15.0, 1 << 20)
    conn.transport = CaptureTransport()  # type: ignore[assignment]
    return conn


def _protobuf_request(intent: Intent, request_id: int) -> bytes:
    instrument = INSTRUMENTS[intent.instrument]
    message: Any
    if intent.kind is Kind.CANCEL:
        message_type = MT.EXECUTION_CANCEL_ORDER_REQUEST
        message = execution_pb2.CancelOrderRequest(
            request_id=request_id, instrument_symbol=instrument.symbol, order_id=intent.order_id
        )
    elif intent.kind is Kind.AMEND:
        message_type = MT.EXECUTION_AMEND_ORDER_REQUEST
        message = execution_pb2.AmendOrderRequest(
            request_id=request_id,
            instrument_symbol=instrument.symbol,
            order_id=intent.order_id,
            price=instrument.price(intent.ticks),
            quantity=intent.quantity,
        )
    else:
        message_type = MT.EXECUTION_INSERT_ORDER_REQUEST
        message = execution_pb2.InsertOrderRequest(
            request_id=request_id,
            instrument_symbol=instrument.symbol,
            side=intent.side,  # type: ignore[arg-type]
            price=instrument.price(intent.ticks),
            quantity=intent.quantity,
            time_in_force=intent.time_in_force,  # type: ignore[arg-type]
        )
    return encode_frame(message_type, message.SerializeToString())


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**35 + 7, 2**63 - 1, -1, -(2**63)]
)
def test_varint_is_protobufs(value: int) -> None:
    encoded = execution_pb2.CancelOrderRequest(order_id=value).SerializeToString()
    assert encoded == (b"\x18" + varint(value) if value else b"")


async def test_hand_encoded_frames_equal_the_protobuf_encoding() -> None:
    conn = _connection()
    frames = OrderFrames(INSTRUMENTS)
    planner = Planner(INSTRUMENTS, Mix(), seed=7, levels=12, max_quantity=300)
    book = RestingOrders()
    intents = [
        Intent(Kind.CANCEL, 1, SELL, 400, 0, 2**40 + 3),
        Intent(Kind.AMEND, 2, BUY, 3, 255, 129),
        Intent(Kind.CROSS, 0, BUY, 10_011, 1),
        Intent(Kind.PASSIVE, 2, SELL, 5, 200),
    ]
    for n in range(3000):
        intent = planner.next(book)
        if intent.kind is Kind.PASSIVE:
            book.rested(n * 977 + 1, intent, intent.quantity)
        intents.append(intent)
    # request ids of one, two and three bytes
    for start in (1, 120, 16_300):
        conn._next_id = start
        for offset, intent in enumerate(intents):
            message_type, body = frames.body(intent)
            request_id = conn.submit(message_type, body, lambda response: None)
            assert request_id == start + offset
            conn.flush_now()
            assert conn.transport.written.pop() == _protobuf_request(intent, request_id)
    assert {i.kind for i in intents} == set(Kind)


async def test_submitted_requests_go_out_in_one_write_per_flush_and_get_their_answers() -> None:
    conn = _connection()
    frames = OrderFrames(INSTRUMENTS)
    answers: list[Any] = []
    for quantity in (1, 2, 3):
        conn.submit(*frames.body(Intent(Kind.PASSIVE, 0, BUY, 9_990, quantity)), answers.append)
    assert conn.transport.written == []
    conn.flush_now()
    assert len(conn.transport.written) == 1
    response = execution_pb2.InsertOrderResponse(request_id=2, order_id=5, resting_quantity=2)
    conn.data_received(
        encode_frame(MT.EXECUTION_INSERT_ORDER_RESPONSE, response.SerializeToString())
    )
    assert answers == [response] and conn.rx_time > 0
    assert conn.in_flight == 2


def _reference_flow(seed: int, mix: Mix, max_resting: int, n: int) -> list[Intent]:
    """The planner as first written, with randint/randrange: the flow a seed promised."""
    rng = random.Random(seed)
    levels, max_quantity = 7, 13
    a, b, c = mix.cumulative()
    orders: dict[int, Resting] = {}

    def passive_ticks(instrument: int, side: int) -> int:
        mid = INSTRUMENTS[instrument].mid_ticks
        offset = rng.randint(1, levels)
        return max(1, mid - offset) if side == BUY else mid + offset

    out = []
    for i in range(n):
        draw = rng.random()
        if draw < a:
            kind = Kind.CANCEL if len(orders) >= max_resting else Kind.PASSIVE
        elif draw < b:
            kind = Kind.CROSS
        elif draw < c:
            kind = Kind.AMEND
        else:
            kind = Kind.CANCEL
        intent = None
        if kind in (Kind.AMEND, Kind.CANCEL):
            if not orders:
                kind = Kind.PASSIVE
            else:
                order_id = next(iter(orders))
                order = orders.pop(order_id)
                if kind is Kind.CANCEL:
                    intent = Intent(kind, order.instrument, order.side, order.ticks, 0, order_id)
                else:
                    ticks = passive_ticks(order.instrument, order.side)
                    quantity = rng.randint(1, max_quantity)
                    orders[order_id] = Resting(order.instrument, order.side, ticks, quantity)
                    intent = Intent(kind, order.instrument, order.side, ticks, quantity, order_id)
        if intent is None:
            instrument = rng.randrange(len(INSTRUMENTS))
            side = BUY if rng.random() < 0.5 else SELL
            quantity = rng.randint(1, max_quantity)
            if kind is Kind.CROSS:
                mid = INSTRUMENTS[instrument].mid_ticks
                ticks = mid + levels + 1 if side == BUY else max(1, mid - levels - 1)
            else:
                ticks = passive_ticks(instrument, side)
            intent = Intent(kind, instrument, side, ticks, quantity)
            if kind is Kind.PASSIVE:
                orders[i + 1] = Resting(instrument, side, ticks, quantity)
        if i % 7 == 0 and orders:
            orders.pop(next(iter(orders)))
        out.append(intent)
    return out


@pytest.mark.parametrize("seed", [1, 2, 12345])
@pytest.mark.parametrize("mix", ["passive=45,cross=20,amend=15,cancel=20", "passive=1,amend=3"])
@pytest.mark.parametrize("max_resting", [3, 1000])
def test_planner_draws_the_same_flow_as_randint(seed: int, mix: str, max_resting: int) -> None:
    planner = Planner(
        INSTRUMENTS, Mix.parse(mix), seed, levels=7, max_quantity=13, max_resting=max_resting
    )
    book = RestingOrders()
    flow = []
    for i in range(3000):
        intent = planner.next(book)
        if intent.kind is Kind.PASSIVE:
            book.rested(i + 1, intent, intent.quantity)
        if i % 7 == 0 and book.orders:
            book.gone(next(iter(book.orders)))
        flow.append(intent)
    assert flow == _reference_flow(seed, Mix.parse(mix), max_resting, 3000)


def test_histograms_recorded_per_distinct_value_equal_value_by_value() -> None:
    rng = random.Random(3)
    values = [int(rng.lognormvariate(6, 1.5)) for _ in range(20_000)] + [0, -4, 10**13]
    reference = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for value in values:
        reference.record_value(min(max(value, LOWEST_US), HIGHEST_US))
    assert histogram_of(values).encode() == reference.encode()


async def test_market_data_counts_from_frame_types_and_passes_the_rest_on() -> None:
    pushes: list[tuple[int, Any]] = []
    conn = _connection(MarketDataConnection, on_push=lambda t, m: pushes.append((t, m)))
    counts = MarketDataCounts()
    conn.counts = counts
    now = time.time_ns()
    level = info_pb2.PriceLevel(price=99.5, quantity=3)
    top = info_pb2.OnTopOfBook(instrument_symbol="AAA", timestamp=now - 2_000_000, best_bid=level)
    depth = info_pb2.OnPriceDepthBook(
        instrument_symbol="AAA", timestamp=now - 1_000_000, bids=[level] * 10, asks=[level] * 10
    )
    trade = info_pb2.OnTrade(trade_id=9, instrument_symbol="AAA", timestamp=now, price=1.0)
    untimed = info_pb2.OnTopOfBook(instrument_symbol="AAA")
    announcement = info_pb2.OnInstrument(tick_size=0.01)
    answer: asyncio.Future[Any] = conn.request(MT.INFO_QUOTES_REQUEST, info_pb2.QuotesRequest())
    stream = b"".join(
        [
            encode_frame(MT.INFO_ON_TOP_OF_BOOK, top.SerializeToString()),
            encode_frame(MT.INFO_ON_INSTRUMENT, announcement.SerializeToString()),
            encode_frame(MT.INFO_ON_PRICE_DEPTH_BOOK, depth.SerializeToString()),
            encode_frame(MT.HEARTBEAT, b""),
            encode_frame(
                MT.INFO_QUOTES_RESPONSE, info_pb2.QuotesResponse(request_id=1).SerializeToString()
            ),
            encode_frame(MT.INFO_ON_TRADE, trade.SerializeToString()),
            encode_frame(MT.INFO_ON_TOP_OF_BOOK, untimed.SerializeToString()),
        ]
    )
    for cut in range(0, len(stream), 13):  # however TCP splits it
        conn.data_received(stream[cut : cut + 13])
    assert (counts.top_of_book, counts.depth, counts.trades) == (2, 1, 1)
    assert len(counts.lag_us) == 3 and all(lag >= 0 for lag in counts.lag_us)
    assert [t for t, _ in pushes] == [MT.INFO_ON_INSTRUMENT]
    assert answer.done() and answer.result().request_id == 1
    conn.lag = False
    conn.data_received(encode_frame(MT.INFO_ON_TRADE, trade.SerializeToString()))
    assert counts.trades == 2 and len(counts.lag_us) == 3


class WatchedRun(LoadRun):
    """Notes when each order was handed over, against when it was scheduled."""

    def __init__(self, options: LoadOptions) -> None:
        super().__init__(options)
        self.handed: list[tuple[int, float, float]] = []

    def _send(self, part: Any, seq: int, scheduled: float, state: StepState) -> None:
        self.handed.append((seq, scheduled, time.perf_counter()))
        super()._send(part, seq, scheduled, state)


async def test_no_order_leaves_before_its_scheduled_time(relay_port: int) -> None:
    run = WatchedRun(LoadOptions(port=relay_port, info_port=0, symbols=["AAA"], connections=3))
    await run.setup()
    try:
        step = await run.step(rate=4000, duration_s=0.25)
    finally:
        await run.close()
    assert step["sent"] == step["completed"] == 1000 and step["unanswered"] == 0
    assert [seq for seq, _, _ in run.handed] == list(range(1000))
    start = run.handed[0][1]
    for seq, scheduled, handed in run.handed:
        assert scheduled == pytest.approx(start + seq / 4000, abs=1e-9)
        assert handed >= scheduled
    assert step["send_lag_us"]["count"] == 1000


class MessageSeeingConnection(LoadConnection):
    """Overrides request_callback, as the reliability ledger's connection does."""

    seen: list[int]

    def request_callback(
        self, message_type: int, message: Any, callback: Callable[[Any], None]
    ) -> int:
        self.seen.append(message_type)
        return super().request_callback(message_type, message, callback)


class MessageSeeingRun(LoadRun):
    connection_class = MessageSeeingConnection

    def _participant_opened(self, conn: LoadConnection, user: str, index: int) -> None:
        assert isinstance(conn, MessageSeeingConnection)
        conn.seen = []


async def test_a_connection_class_overriding_request_callback_still_sees_every_request(
    relay_port: int,
) -> None:
    run = MessageSeeingRun(
        LoadOptions(port=relay_port, info_port=0, symbols=["AAA", "BB"], connections=2)
    )
    await run.setup()
    try:
        step = await run.step(rate=2000, duration_s=0.1)
    finally:
        await run.close()
    seen = [t for p in run.participants for t in p.conn.seen]  # type: ignore[attr-defined]
    assert len(seen) == step["sent"] == step["completed"] == 200
    assert set(seen) <= {
        MT.EXECUTION_INSERT_ORDER_REQUEST,
        MT.EXECUTION_CANCEL_ORDER_REQUEST,
        MT.EXECUTION_AMEND_ORDER_REQUEST,
    }


async def test_a_cancelled_step_sends_nothing_more(relay_port: int) -> None:
    run = LoadRun(LoadOptions(port=relay_port, info_port=0, symbols=["AAA"], connections=2))
    await run.setup()
    try:
        task = asyncio.create_task(run.step(rate=2000, duration_s=5.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert run.state is not None
        sent = run.state.sent
        assert 0 < sent < 10_000
        await asyncio.sleep(0.1)
        assert run.state.sent == sent
    finally:
        await run.close()
