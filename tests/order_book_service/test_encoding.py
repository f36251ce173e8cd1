"""The Order Book's hand-written protobuf encoders produce exactly upb's bytes.

The service encodes its hot responses and events without protobuf message
objects (``services/order_book/translate.py`` on ``services/common/wire/pbenc.py``)
because building the objects was most of its CPU.  The wire contract is checked
byte for byte, so each encoder is compared here with ``SerializeToString()`` of
the message holding the same values, over the full range of every field: zero
(omitted), the edges of int32/int64 (negatives are ten-byte varints), doubles
from subnormals to the largest finite value and -0.0 (written, unlike +0.0),
empty and non-ASCII strings, empty and long id lists.  Each encoder has a fast
path for common values and a general one, and the strategies mix both.

Examples are derandomised, so a run is reproducible; a second group drives the
engine, the event encoder and a live service session and checks their frames
against messages built the way the service built them before.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.config import OrderBookConfig
from services.common.pb import common_pb2, order_book_pb2
from services.common.prices import from_ticks, to_ticks
from services.common.wire import pbenc
from services.common.wire.framing import encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE
from services.order_book import translate
from services.order_book.app import OrderBookApp, build
from services.order_book.engine import Engine
from services.order_book.events import (
    OnOrderAmended,
    OnOrderCancelled,
    OnOrderInserted,
    OnTrade,
)
from tests.support.inprocess import SERVICE_PASSWORD, make_config, start_app
from tests.wire.rawclient import RawClient

pb = order_book_pb2
MT = common_pb2.MessageType

EVENT_TYPES = frozenset(range(14, 20))

EXAMPLES = settings(derandomize=True, max_examples=400, deadline=None, database=None)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Zero, the edges and every size class (fast-path ranges and beyond)."""
    edges = [v for v in (0, 1, 127, 128, 2**14 - 1, 2**14, 2**28 - 1, 2**28) if low <= v <= high]
    edges += [low, high, -1] if low < 0 else [high]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(1, min(high, 2**14 - 1)),
        st.integers(1, min(high, 2**28 - 1)),
        st.integers(low, high),
    )


int64s = _integers(INT64_MIN, INT64_MAX)
int32s = _integers(INT32_MIN, INT32_MAX)
enums = st.one_of(st.sampled_from([0, 1, 2]), int32s)
doubles = st.one_of(
    st.sampled_from(
        [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-300]
    ),
    st.integers(0, 10**9).map(lambda k: k * 0.1),
    st.integers(1, 2**53).map(lambda k: from_ticks(k, 0.01)),
    st.floats(allow_nan=False),
)
texts = st.one_of(
    st.sampled_from(["", "alice", "ünïcødé", "名前", "🙂" * 40, "x" * 300]),
    st.text(),
)
id_lists = st.one_of(
    st.just(()),
    st.lists(st.integers(1, 2**28 - 1), max_size=5).map(tuple),
    st.lists(int64s, max_size=300).map(tuple),
)


def _double(value: float) -> bytes:
    return pbenc.double_bytes(value)


# ----------------------------------------------------------------- primitives


@EXAMPLES
@given(int64s)
def test_varint_is_protobufs_for_every_int64(value: int) -> None:
    payload = pb.OnTrade(trade_id=value).SerializeToString()
    assert (b"\x08" + pbenc.varint(value) if value else b"") == payload
    assert pbenc.int_field(1, value) == payload


@EXAMPLES
@given(st.lists(int64s, max_size=40))
def test_timestamp_like_runs_share_no_stale_bytes(values: list[int]) -> None:
    """The varint memos (last value, last high part) never answer for another value."""
    base = 1_763_000_000_000_000_000
    for value in [*values, *(base + v % 2**40 for v in values), base, base + 1, base]:
        expected = pb.OnTrade(trade_id=value).SerializeToString()[1:]
        assert (pbenc.varint(value) if value else b"") == expected


def test_varint_refuses_more_than_64_bits() -> None:
    with pytest.raises(ValueError):
        pbenc.varint(2**64)


@EXAMPLES
@given(doubles, texts, id_lists, st.booleans())
def test_field_helpers(price: float, text: str, ids: tuple[int, ...], flag: bool) -> None:
    assert pbenc.double_field(6, price) == pb.OnTrade(price=price).SerializeToString()
    assert pbenc.string_field(8, text) == pb.OnOrderInserted(username=text).SerializeToString()
    assert pbenc.packed_field(7, ids) == pb.OnOrderInserted(trade_ids=ids).SerializeToString()
    assert pbenc.bool_field(7, flag) == pb.OnOrderAmended(kept_priority=flag).SerializeToString()
    assert pbenc.tag(15, pbenc.WIRE_VARINT) == b"\x78"


def test_negative_zero_is_written_and_positive_zero_omitted() -> None:
    assert pb.OnTrade(price=-0.0).SerializeToString() == b"\x31" + struct.pack("<d", -0.0)
    assert translate.on_trade(0, 0, 0, 0, 0, _double(-0.0), 0, 0, _double(0.0), 0) == (
        b"\x31" + struct.pack("<d", -0.0)
    )


# ------------------------------------------------------------------ responses


@EXAMPLES
@given(int64s, texts, int64s, int64s, id_lists, int32s, int32s)
def test_insert_order_response(
    request_id: int,
    error: str,
    order_id: int,
    timestamp: int,
    trade_ids: tuple[int, ...],
    traded: int,
    resting: int,
) -> None:
    expected = pb.InsertOrderResponse(
        request_id=request_id,
        error_message=error,
        order_id=order_id,
        timestamp=timestamp,
        trade_ids=trade_ids,
        traded_quantity=traded,
        resting_quantity=resting,
    ).SerializeToString()
    encoded = translate.insert_order_response(
        request_id, error, order_id, timestamp, trade_ids, traded, resting
    )
    assert encoded == expected


@EXAMPLES
@given(int64s, st.one_of(st.just(""), texts), int32s)
def test_cancel_order_response(request_id: int, error: str, cancelled: int) -> None:
    expected = pb.CancelOrderResponse(
        request_id=request_id, error_message=error, cancelled_quantity=cancelled
    ).SerializeToString()
    assert translate.cancel_order_response(request_id, error, cancelled) == expected


@EXAMPLES
@given(int64s, st.one_of(st.just(""), texts), int64s, id_lists, int32s, int32s)
def test_amend_order_response(
    request_id: int,
    error: str,
    timestamp: int,
    trade_ids: tuple[int, ...],
    traded: int,
    resting: int,
) -> None:
    expected = pb.AmendOrderResponse(
        request_id=request_id,
        error_message=error,
        timestamp=timestamp,
        trade_ids=trade_ids,
        traded_quantity=traded,
        resting_quantity=resting,
    ).SerializeToString()
    encoded = translate.amend_order_response(
        request_id, error, timestamp, trade_ids, traded, resting
    )
    assert encoded == expected


# --------------------------------------------------------------------- events


@EXAMPLES
@given(int64s, int64s, int64s, enums, doubles, int32s, id_lists, texts, enums, int64s)
def test_on_order_inserted(
    order_id: int,
    book: int,
    timestamp: int,
    side: int,
    price: float,
    quantity: int,
    trade_ids: tuple[int, ...],
    username: str,
    tif: int,
    sequence: int,
) -> None:
    expected = pb.OnOrderInserted(
        order_id=order_id,
        order_book_id=book,
        timestamp=timestamp,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        trade_ids=trade_ids,
        username=username,
        time_in_force=tif,  # type: ignore[arg-type]
        sequence_number=sequence,
    ).SerializeToString()
    encoded = translate.on_order_inserted(
        order_id,
        book,
        timestamp,
        side,
        _double(price),
        quantity,
        trade_ids,
        username,
        tif,
        sequence,
    )
    assert encoded == expected


@EXAMPLES
@given(int64s, int64s, int64s, int32s, int64s)
def test_on_order_cancelled(
    order_id: int, timestamp: int, book: int, cancelled: int, sequence: int
) -> None:
    expected = pb.OnOrderCancelled(
        order_id=order_id,
        cancellation_timestamp=timestamp,
        order_book_id=book,
        cancelled_quantity=cancelled,
        sequence_number=sequence,
    ).SerializeToString()
    assert translate.on_order_cancelled(order_id, timestamp, book, cancelled, sequence) == expected


@EXAMPLES
@given(int64s, int64s, int64s, int64s, int64s, doubles, int32s, enums, doubles, int64s)
def test_on_trade(
    trade_id: int,
    book: int,
    timestamp: int,
    buy: int,
    sell: int,
    price: float,
    quantity: int,
    side: int,
    aggressor_price: float,
    sequence: int,
) -> None:
    expected = pb.OnTrade(
        trade_id=trade_id,
        order_book_id=book,
        timestamp=timestamp,
        buy_order_id=buy,
        sell_order_id=sell,
        price=price,
        quantity=quantity,
        aggressor_side=side,  # type: ignore[arg-type]
        aggressor_price=aggressor_price,
        sequence_number=sequence,
    ).SerializeToString()
    encoded = translate.on_trade(
        trade_id,
        book,
        timestamp,
        buy,
        sell,
        _double(price),
        quantity,
        side,
        _double(aggressor_price),
        sequence,
    )
    assert encoded == expected


@EXAMPLES
@given(int64s, int64s, int64s, doubles, int32s, id_lists, st.booleans(), int64s)
def test_on_order_amended(
    order_id: int,
    book: int,
    timestamp: int,
    price: float,
    quantity: int,
    trade_ids: tuple[int, ...],
    kept: bool,
    sequence: int,
) -> None:
    expected = pb.OnOrderAmended(
        order_id=order_id,
        order_book_id=book,
        timestamp=timestamp,
        price=price,
        quantity=quantity,
        trade_ids=trade_ids,
        kept_priority=kept,
        sequence_number=sequence,
    ).SerializeToString()
    encoded = translate.on_order_amended(
        order_id, book, timestamp, _double(price), quantity, trade_ids, kept, sequence
    )
    assert encoded == expected


# ------------------------------------------------- the event encoder on events

TICK_SIZES = (0.01, 0.5, 0.05, 1.0, 25.0, 0.001, 1e-8, 0.0001220703125)
ticks = st.one_of(st.integers(1, 20_000), st.integers(1, 2**53))


def _reference_frame(event: Any, tick_size: float) -> bytes:
    """The frame as the service built it before: a message object, then bytes."""

    def price(n: int) -> float:
        return from_ticks(n, tick_size)

    message: Any
    if isinstance(event, OnOrderInserted):
        message = pb.OnOrderInserted(
            order_id=event.order_id,
            order_book_id=event.order_book_id,
            timestamp=event.timestamp,
            side=event.side,  # type: ignore[arg-type]
            price=price(event.price_ticks),
            quantity=event.quantity,
            trade_ids=event.trade_ids,
            username=event.username,
            time_in_force=event.time_in_force,  # type: ignore[arg-type]
            sequence_number=event.sequence_number,
        )
        kind = MT.ORDER_BOOK_ON_ORDER_INSERTED
    elif isinstance(event, OnOrderCancelled):
        message = pb.OnOrderCancelled(
            order_id=event.order_id,
            cancellation_timestamp=event.timestamp,
            order_book_id=event.order_book_id,
            cancelled_quantity=event.cancelled_quantity,
            sequence_number=event.sequence_number,
        )
        kind = MT.ORDER_BOOK_ON_ORDER_CANCELLED
    elif isinstance(event, OnTrade):
        message = pb.OnTrade(
            trade_id=event.trade_id,
            order_book_id=event.order_book_id,
            timestamp=event.timestamp,
            buy_order_id=event.buy_order_id,
            sell_order_id=event.sell_order_id,
            price=price(event.price_ticks),
            quantity=event.quantity,
            aggressor_side=event.aggressor_side,  # type: ignore[arg-type]
            aggressor_price=price(event.aggressor_price_ticks),
            sequence_number=event.sequence_number,
        )
        kind = MT.ORDER_BOOK_ON_TRADE
    else:
        assert isinstance(event, OnOrderAmended)
        message = pb.OnOrderAmended(
            order_id=event.order_id,
            order_book_id=event.order_book_id,
            timestamp=event.timestamp,
            price=price(event.price_ticks),
            quantity=event.quantity,
            trade_ids=event.trade_ids,
            kept_priority=event.kept_priority,
            sequence_number=event.sequence_number,
        )
        kind = MT.ORDER_BOOK_ON_ORDER_AMENDED
    return encode_frame(kind, message.SerializeToString())


book_ids = st.integers(1, 2**14 + 5)
positive = st.one_of(st.integers(1, 2**14), st.integers(1, INT64_MAX))
quantities = st.one_of(st.integers(1, 100), st.integers(1, INT32_MAX))
events = st.one_of(
    st.builds(
        OnOrderInserted,
        positive,
        positive,
        book_ids,
        positive,
        st.sampled_from([0, 1]),
        ticks,
        quantities,
        id_lists,
        texts,
        st.sampled_from([0, 1, 2]),
    ),
    st.builds(OnOrderCancelled, positive, positive, book_ids, positive, quantities, st.just(0)),
    st.builds(
        OnTrade,
        positive,
        positive,
        book_ids,
        positive,
        positive,
        positive,
        ticks,
        quantities,
        st.sampled_from([0, 1]),
        ticks,
    ),
    st.builds(
        OnOrderAmended,
        positive,
        positive,
        book_ids,
        positive,
        ticks,
        quantities,
        id_lists,
        st.booleans(),
    ),
)


@EXAMPLES
@given(st.lists(events, min_size=1, max_size=20), st.sampled_from(TICK_SIZES))
def test_event_encoder_matches_the_message_path(event_list: list[Any], tick_size: float) -> None:
    encoder = translate.EventEncoder()
    for event in event_list:
        encoder.tick_sizes[event.order_book_id] = tick_size
    for event in event_list + event_list:  # the second time from the price memo
        assert encoder.encode(event) == _reference_frame(event, tick_size)


def test_event_of_an_unannounced_book_raises_key_error() -> None:
    with pytest.raises(KeyError):
        translate.EventEncoder().encode(OnTrade(1, 1, 7, 1, 1, 2, 100, 1, 0, 100))


# --------------------------------------- commands: responses and events together


def _reference_response(kind: int, request: Any, twin: Engine, timestamp: int) -> Any:
    """What the service answered before: the twin engine's result as a message."""
    info = twin.book_info(request.order_book_id)
    assert info is not None
    if kind == translate.CANCEL:
        result = twin.cancel(
            request.order_book_id, request.order_id, request.on_behalf_of_username, timestamp
        )
        if result.error:
            return pb.CancelOrderResponse(request_id=request.request_id, error_message=result.error)
        return pb.CancelOrderResponse(
            request_id=request.request_id, cancelled_quantity=result.cancelled_quantity
        )
    price = to_ticks(request.price, info.tick_size)
    assert isinstance(price, int)
    if kind == translate.INSERT:
        inserted = twin.insert(
            request.order_book_id,
            request.on_behalf_of_username,
            request.side,
            price,
            request.quantity,
            request.time_in_force,
            request.client_order_id,
            timestamp,
        )
        if inserted.error:
            return pb.InsertOrderResponse(
                request_id=request.request_id, error_message=inserted.error
            )
        return pb.InsertOrderResponse(
            request_id=request.request_id,
            order_id=inserted.order_id,
            timestamp=inserted.timestamp,
            trade_ids=inserted.trade_ids,
            traded_quantity=inserted.traded_quantity,
            resting_quantity=inserted.resting_quantity,
        )
    amended = twin.amend(
        request.order_book_id,
        request.order_id,
        request.on_behalf_of_username,
        price,
        request.quantity,
        timestamp,
    )
    if amended.error:
        return pb.AmendOrderResponse(request_id=request.request_id, error_message=amended.error)
    return pb.AmendOrderResponse(
        request_id=request.request_id,
        timestamp=amended.timestamp,
        trade_ids=amended.trade_ids,
        traded_quantity=amended.traded_quantity,
        resting_quantity=amended.resting_quantity,
    )


command = st.tuples(
    st.sampled_from(["insert", "insert", "insert", "cancel", "amend"]),
    st.integers(1, 40),  # price in ticks of 0.05
    st.integers(1, 30),  # quantity
    st.integers(0, 1),  # side
    st.integers(0, 2),  # time in force
    st.integers(1, 60),  # order id for cancel and amend
    st.sampled_from(["alice", "bob", "çarol"]),
)


@settings(derandomize=True, max_examples=60, deadline=None, database=None)
@given(st.lists(command, min_size=1, max_size=80), st.integers(1, 2**40))
def test_processor_frames_match_the_message_path(
    commands: list[tuple[str, int, int, int, int, int, str]], request_base: int
) -> None:
    engine, twin = Engine(), Engine()
    processor = translate.CommandProcessor(engine)
    encoder, reference_encoder = translate.EventEncoder(), translate.EventEncoder()
    start = 1_763_000_000_000_000_000
    for book_engine, book_encoder in ((engine, encoder), (twin, reference_encoder)):
        book_engine.create_book(0.05, 0, start)
        for event in book_engine.drain_events():
            book_encoder.encode(event)
    for index, (name, price, quantity, side, tif, order_id, user) in enumerate(commands):
        timestamp = start + 1 + index * 997
        request: Any
        if name == "insert":
            kind = translate.INSERT
            request = pb.InsertOrderRequest(
                request_id=request_base + index,
                order_book_id=1,
                side=side,  # type: ignore[arg-type]
                price=from_ticks(price, 0.05),
                quantity=quantity,
                time_in_force=tif,  # type: ignore[arg-type]
                on_behalf_of_username=user,
            )
        elif name == "cancel":
            kind = translate.CANCEL
            request = pb.CancelOrderRequest(
                request_id=request_base + index,
                order_book_id=1,
                order_id=order_id,
                on_behalf_of_username=user,
            )
        else:
            kind = translate.AMEND
            request = pb.AmendOrderRequest(
                request_id=request_base + index,
                order_book_id=1,
                order_id=order_id,
                price=from_ticks(price, 0.05),
                quantity=quantity,
                on_behalf_of_username=user,
            )
        frame, accepted = processor.process(kind, request, timestamp)
        expected = _reference_response(kind, request, twin, timestamp)
        assert frame == encode_frame(RESPONSE_TYPE[kind], expected.SerializeToString())
        assert accepted == (expected.error_message == "")
        got_events = [encoder.encode(e) for e in engine.drain_events()]
        assert got_events == [_reference_frame(e, 0.05) for e in twin.drain_events()]


@pytest.mark.parametrize(
    ("kind", "request_message", "error"),
    [
        (translate.INSERT, pb.InsertOrderRequest(request_id=1, side=7), "invalid side 7"),  # type: ignore[arg-type]
        (
            translate.INSERT,
            pb.InsertOrderRequest(request_id=2, time_in_force=-3),  # type: ignore[arg-type]
            "invalid time_in_force -3",
        ),
        (translate.INSERT, pb.InsertOrderRequest(request_id=3, order_book_id=9, price=1.0), ""),
        (translate.INSERT, pb.InsertOrderRequest(order_book_id=1, price=math.nan), ""),
        (translate.AMEND, pb.AmendOrderRequest(request_id=4, order_book_id=1, price=0.013), ""),
        (translate.CANCEL, pb.CancelOrderRequest(request_id=-5, order_book_id=1), ""),
    ],
)
def test_refusals_decode_to_the_same_message(kind: int, request_message: Any, error: str) -> None:
    engine = Engine()
    engine.create_book(0.01, 0, 1)
    processor = translate.CommandProcessor(engine)
    frame, accepted = processor.process(kind, request_message, 2)
    response: Any
    response, also_accepted = translate.CommandProcessor(engine).apply(kind, request_message, 2)
    assert not accepted and not also_accepted
    assert response.error_message
    if error:
        assert response.error_message == error
    assert response.request_id == request_message.request_id
    assert frame == encode_frame(RESPONSE_TYPE[kind], response.SerializeToString())


def test_snapshot_frames_match_the_message_path() -> None:
    engine = Engine()
    engine.create_book(0.01, 0, 1)
    for index in range(50):
        side = index % 2
        price = 100 - index if side == 0 else 200 + index
        engine.insert(1, ["alice", "bob", "", "名前"][index % 4], side, price, 1 + index, 0, "", 5)
    engine.drain_events()
    frames = list(translate.EventEncoder().snapshot(engine))
    assert len(frames) == 1 + 50
    for frame in frames[1:]:
        message: Any = pb.OnOrderInserted.FromString(frame[8:])
        assert message.sequence_number == 0
        assert frame == encode_frame(MT.ORDER_BOOK_ON_ORDER_INSERTED, message.SerializeToString())
        order = engine.get_order(1, message.order_id)
        assert order is not None
        assert message.price == from_ticks(order.price_ticks, 0.01)
        assert (message.username, message.quantity) == (order.username, order.quantity)


# ------------------------------------------------------------- a live session


async def test_a_live_sessions_frames_parse_back_to_the_same_bytes(tmp_path: Path) -> None:
    """Every response and event of a real session re-encodes to the bytes received,
    and carries what the engine decided (prices as the numbers clients sent)."""
    app, port = await start_app(build, make_config(OrderBookConfig, tmp_path, fsync="none"))
    assert isinstance(app, OrderBookApp)
    client = await RawClient.connect("127.0.0.1", port)
    seen: dict[int, int] = {}
    events = 0

    async def exchange(requests: list[Any]) -> list[Any]:
        """Send ``requests``; read their responses and every event they caused."""
        nonlocal events
        for request in requests:
            client.send(request)
        responses: list[Any] = []
        while len(responses) < len(requests) or events < app.engine.last_sequence_number:
            message_type, payload = await client.recv_frame()
            message: Any = MESSAGE_CLASSES[message_type].FromString(payload)
            assert message.SerializeToString() == payload
            seen[message_type] = seen.get(message_type, 0) + 1
            if message_type in EVENT_TYPES:
                events += 1
                assert message.sequence_number == events
            else:
                responses.append(message)
            if message_type == MT.ORDER_BOOK_ON_TRADE:
                assert round(message.price, 2) == message.price
                assert 99.97 <= message.price <= 100.03
        return responses

    try:
        assert (await client.login("service", SERVICE_PASSWORD)).error_message == ""
        await exchange([pb.CreateOrderBookRequest(request_id=1, tick_size=0.01)])
        inserts: list[Any] = [
            pb.InsertOrderRequest(
                request_id=10 + index,
                order_book_id=1,
                side=index % 2,  # type: ignore[arg-type]
                price=round(100 + (index % 7 - 3) * 0.01, 2),
                quantity=1 + index % 9,
                time_in_force=index % 3 if index % 5 == 0 else 0,  # type: ignore[arg-type]
                on_behalf_of_username=["alice", "bob", "ünï"][index % 3],
            )
            for index in range(40)
        ]
        answers = await exchange(inserts)
        assert all(answer.error_message == "" for answer in answers)
        resting = [order.order_id for order in app.engine.resting_orders()]
        assert len(resting) >= 2
        answers = await exchange(
            [
                pb.CancelOrderRequest(request_id=90, order_book_id=1, order_id=resting[0]),
                pb.CancelOrderRequest(request_id=91, order_book_id=1, order_id=999),
                pb.AmendOrderRequest(
                    request_id=92, order_book_id=1, order_id=resting[1], price=99.5, quantity=1
                ),
                pb.AmendOrderRequest(
                    request_id=93, order_book_id=1, order_id=resting[1], price=0.015, quantity=1
                ),
            ]
        )
        assert [bool(answer.error_message) for answer in answers] == [False, True, False, True]
        assert answers[0].cancelled_quantity > 0
        assert seen[MT.ORDER_BOOK_ON_TRADE] > 0 and seen[MT.ORDER_BOOK_ON_ORDER_AMENDED] == 1
        assert seen[MT.ORDER_BOOK_ON_ORDER_CANCELLED] > 0
    finally:
        await client.close()
        await app.stop()


def test_a_deleted_book_is_unknown_to_the_price_check() -> None:
    """The processor remembers live books' tick sizes; a delete must forget them."""
    processor = translate.CommandProcessor(Engine())
    processor.process(translate.CREATE, pb.CreateOrderBookRequest(tick_size=0.01), 1)
    insert = pb.InsertOrderRequest(request_id=1, order_book_id=1, price=10.0, quantity=1)
    assert processor.process(translate.INSERT, insert, 2)[1]
    assert processor.process(translate.DELETE, pb.DeleteOrderBookRequest(order_book_id=1), 3)[1]
    for kind, request in (
        (translate.INSERT, insert),
        (translate.AMEND, pb.AmendOrderRequest(order_book_id=1, order_id=1, price=10.5)),
    ):
        response: Any
        response, accepted = processor.apply(kind, request, 4)
        assert not accepted
        assert response.error_message == "unknown order book 1"


def test_one_id_tuple_in_a_response_and_an_event_and_a_reused_list() -> None:
    """The packed-ids memo answers for the same tuple only, under either field key."""
    ids = (7, 300, 2**40)
    response = translate.insert_order_response(1, "", 2, 3, ids, 4, 0)
    event = translate.on_order_inserted(2, 1, 3, 0, _double(1.5), 4, ids, "a", 0, 9)
    assert (
        response
        == pb.InsertOrderResponse(
            request_id=1, order_id=2, timestamp=3, trade_ids=ids, traded_quantity=4
        ).SerializeToString()
    )
    assert (
        event
        == pb.OnOrderInserted(
            order_id=2,
            order_book_id=1,
            timestamp=3,
            price=1.5,
            quantity=4,
            trade_ids=ids,
            username="a",
            sequence_number=9,
        ).SerializeToString()
    )
    listed = [1, 2]
    first = translate.amend_order_response(1, "", 3, listed, 0, 0)
    listed.append(3)
    second = translate.amend_order_response(1, "", 3, listed, 0, 0)
    assert first != second
    assert (
        second
        == pb.AmendOrderResponse(request_id=1, timestamp=3, trade_ids=[1, 2, 3]).SerializeToString()
    )
