"""The Order Book service over real TCP: roles, responses before events,
gap-free sequence numbers, the login snapshot, the journal and replay."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.config import OrderBookConfig
from services.common.pb import common_pb2, order_book_pb2
from services.common.wire.framing import encode_frame
from services.order_book.app import OrderBookApp, build
from services.order_book.journal import FILE_NAME
from tests.support.inprocess import DEMO_PASSWORDS, SERVICE_PASSWORD, make_config, start_app
from tests.wire.rawclient import RawClient

pb = order_book_pb2
MT = common_pb2.MessageType
EVENT_TYPES = {14, 15, 16, 17, 18, 19}


async def start_book(data_dir: Path, **overrides: Any) -> tuple[OrderBookApp, int]:
    app, port = await start_app(build, make_config(OrderBookConfig, data_dir, **overrides))
    assert isinstance(app, OrderBookApp)
    return app, port


@pytest.fixture(params=["none", "batch"])
async def book(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[OrderBookApp, int]]:
    """Both commit paths: released inline (none) and synced on the worker (batch)."""
    app, port = await start_book(tmp_path, fsync=request.param)
    yield app, port
    await app.stop()


async def service_client(port: int) -> RawClient:
    client = await RawClient.connect("127.0.0.1", port)
    response = await client.login("service", SERVICE_PASSWORD)
    assert response.error_message == ""
    return client


async def read(client: RawClient, count: int) -> list[tuple[int, Any]]:
    return [await client.recv() for _ in range(count)]


def insert(
    request_id: int, side: int, price: float, quantity: int, user: str = "alice", **kw: Any
) -> Any:
    return pb.InsertOrderRequest(
        request_id=request_id,
        order_book_id=kw.pop("order_book_id", 1),
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        on_behalf_of_username=user,
        **kw,
    )


@pytest.mark.parametrize("user", ["admin", "alice", "bob"])
async def test_only_the_service_role_may_log_in(book: tuple[OrderBookApp, int], user: str) -> None:
    client = await RawClient.connect("127.0.0.1", book[1])
    response = await client.login(user, DEMO_PASSWORDS[user])
    assert "may not log in" in response.error_message
    client.send(pb.CreateOrderBookRequest(request_id=2, tick_size=0.01))
    _, refused = await client.recv()
    assert refused.error_message == "not logged in"
    assert book[0].engine.last_sequence_number == 0


async def test_participant_facing_types_are_not_served(book: tuple[OrderBookApp, int]) -> None:
    client = await service_client(book[1])
    for kind in (21, 30, 40, 130):
        client.send_raw(encode_frame(kind, b""))
        kind_seen, error = await client.recv()
        assert kind_seen == MT.ON_ERROR and error.message_type == kind
        assert "not served" in error.error_message


async def test_insert_answers_then_events_in_protocol_order(book: tuple[OrderBookApp, int]) -> None:
    client = await service_client(book[1])
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.5))
    client.send(insert(2, 0, 10.0, 5, "alice"))
    client.send(insert(3, 0, 10.5, 5, "bob"))
    client.send(insert(4, 1, 10.0, 12, "carol", time_in_force=1))  # IOC sweeps both, 2 left
    frames = await read(client, 4 + 1 + 1 + 1 + 4)
    kinds = [k for k, _ in frames]
    assert kinds[:4] == [141, 11, 11, 11]
    created, first, _second, ioc = (m for _, m in frames[:4])
    assert created.order_book_id == 1 and created.timestamp > 0
    assert (first.order_id, first.resting_quantity) == (1, 5)
    assert (ioc.traded_quantity, ioc.resting_quantity, list(ioc.trade_ids)) == (10, 0, [1, 2])
    assert kinds[4:] == [14, 15, 15, 15, 17, 17, 16]
    events = [m for _, m in frames[4:]]
    assert [e.sequence_number for e in events] == list(range(1, 8))
    inserted = events[3]
    assert (inserted.quantity, list(inserted.trade_ids), inserted.username) == (12, [1, 2], "carol")
    assert inserted.time_in_force == 1
    trade1, trade2, cancel = events[4:]
    # best price first: bob's 10.5 bid, then alice's 10.0
    assert (trade1.buy_order_id, trade1.price, trade1.aggressor_price) == (2, 10.5, 10.5)
    assert (trade2.buy_order_id, trade2.sell_order_id, trade2.price) == (1, 3, 10.0)
    assert trade1.aggressor_side == 1
    assert (cancel.order_id, cancel.cancelled_quantity, cancel.order_book_id) == (3, 2, 1)


@pytest.mark.parametrize(
    ("price", "quantity", "book_id", "text"),
    [
        (math.nan, 1, 1, "price"),
        (math.inf, 1, 1, "price"),
        (0.0, 1, 1, "price"),
        (-1.0, 1, 1, "price"),
        (10.003, 1, 1, "tick"),
        (10.0, 0, 1, "quantity"),
        (10.0, -5, 1, "quantity"),
        (10.0, 1, 99, "unknown order book 99"),
    ],
)
async def test_bad_inserts_are_refused_and_change_nothing(
    book: tuple[OrderBookApp, int], price: float, quantity: int, book_id: int, text: str
) -> None:
    app, port = book
    client = await service_client(port)
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.01))
    await read(client, 2)
    before = app.engine.state_hash()
    client.send(insert(2, 0, price, quantity, order_book_id=book_id))
    kind, response = await client.recv()
    assert kind == 11 and text in response.error_message and response.order_id == 0
    assert app.engine.state_hash() == before
    # the next accepted command gets the next sequence number: nothing was consumed
    client.send(insert(3, 0, 10.0, 1))
    frames = await read(client, 2)
    assert frames[1][1].sequence_number == 2


async def test_bad_enums_and_create_arguments(book: tuple[OrderBookApp, int]) -> None:
    client = await service_client(book[1])
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.0))
    client.send(pb.CreateOrderBookRequest(request_id=2, tick_size=math.nan))
    client.send(pb.CreateOrderBookRequest(request_id=3, tick_size=0.1, price_rule=7))  # type: ignore[arg-type]
    for _, response in await read(client, 3):
        assert response.error_message
    client.send(pb.CreateOrderBookRequest(request_id=4, tick_size=0.1))
    await read(client, 2)
    client.send(insert(5, 5, 1.0, 1))
    client.send(insert(6, 0, 1.0, 1, time_in_force=9))
    (_, bad_side), (_, bad_tif) = await read(client, 2)
    assert "side" in bad_side.error_message and "time_in_force" in bad_tif.error_message


async def test_snapshot_then_gap_free_stream_for_a_late_joiner(
    book: tuple[OrderBookApp, int],
) -> None:
    _app, port = book
    writer = await service_client(port)
    writer.send(pb.CreateOrderBookRequest(request_id=1, tick_size=1.0))
    writer.send(insert(2, 0, 100, 10, "alice"))
    writer.send(insert(3, 1, 100, 4, "bob"))  # alice's order: 6 remaining
    writer.send(insert(4, 1, 105, 7, "carol"))
    await read(writer, 4 + 5)
    late = await service_client(port)
    snapshot = await read(late, 3)
    assert [k for k, _ in snapshot] == [14, 15, 15]
    assert all(m.sequence_number == 0 for _, m in snapshot)
    assert [(m.order_id, m.quantity, m.username) for _, m in snapshot[1:]] == [
        (1, 6, "alice"),
        (3, 7, "carol"),
    ]
    assert list(snapshot[1][1].trade_ids) == []
    writer.send(pb.CancelOrderRequest(request_id=5, order_book_id=1, order_id=3))
    kind, event = await late.recv()
    assert (kind, event.sequence_number, event.order_id) == (16, 6, 3)


async def test_login_during_a_busy_stream_sees_no_gap_and_no_duplicate(
    book: tuple[OrderBookApp, int],
) -> None:
    """Snapshot + events of a connection that logs in mid-flow equals the final book."""
    app, port = book
    seed = 20261122
    print(f"seed={seed}")
    rng = random.Random(seed)
    writer = await service_client(port)
    writer.send(pb.CreateOrderBookRequest(request_id=1, tick_size=1.0))
    await read(writer, 2)

    async def flow() -> None:
        for i in range(400):
            writer.send(insert(10 + i, rng.randint(0, 1), rng.randint(95, 105), rng.randint(1, 9)))
            if i % 20 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(flow())
    await asyncio.sleep(0)
    late = await service_client(port)
    await task
    await asyncio.sleep(0.2)
    # Rebuild resting quantities from what the late joiner saw.
    resting: dict[int, int] = {}
    expected_seq = None
    try:
        while True:
            kind, message = await late.recv(timeout=0.5)
            if kind == 15:
                if message.sequence_number == 0:
                    resting[message.order_id] = message.quantity
                    continue
                resting[message.order_id] = message.quantity
            if message.sequence_number:
                if expected_seq is not None:
                    assert message.sequence_number == expected_seq
                expected_seq = message.sequence_number + 1
            if kind == 17:
                for oid in (message.buy_order_id, message.sell_order_id):
                    resting[oid] -= message.quantity
            elif kind == 16:
                resting[message.order_id] -= message.cancelled_quantity
    except TimeoutError:
        pass
    live = {oid: q for oid, q in resting.items() if q > 0}
    truth = {o.order_id: o.quantity for o in app.engine.resting_orders()}
    assert live == truth


async def test_stats_extension(book: tuple[OrderBookApp, int]) -> None:
    client = await service_client(book[1])
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.25, price_rule=1))  # type: ignore[arg-type]
    client.send(insert(2, 1, 10.0, 5, "alice"))
    client.send(insert(3, 0, 10.5, 3, "bob"))  # aggressor pays 10.5, maker gets 10.0
    await read(client, 3 + 4)
    client.send(pb.GetStatsRequest(request_id=4))
    kind, stats = await client.recv()
    assert kind == MT.ORDER_BOOK_GET_STATS_RESPONSE
    assert (stats.trade_count, stats.traded_volume, stats.resting_orders) == (1, 3, 1)
    assert stats.exchange_profit == pytest.approx(1.5)


async def test_restart_replays_the_journal_exactly(tmp_path: Path) -> None:
    seed = 4242
    print(f"seed={seed}")
    rng = random.Random(seed)
    app, port = await start_book(tmp_path, fsync="batch")
    client = await service_client(port)
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.01))
    client.send(pb.CreateOrderBookRequest(request_id=2, tick_size=0.5, price_rule=1))  # type: ignore[arg-type]
    count = 2
    for i in range(300):
        book_id = rng.choice([1, 2])
        tick = 0.01 if book_id == 1 else 0.5
        op = rng.random()
        if op < 0.7:
            client.send(
                insert(
                    100 + i,
                    rng.randint(0, 1),
                    round(rng.randint(90, 110) * tick, 2),
                    rng.randint(1, 20),
                    rng.choice(["alice", "bob"]),
                    order_book_id=book_id,
                    time_in_force=rng.choice([0, 0, 1, 2]),
                    client_order_id=f"c{i % 50}",
                )
            )
        elif op < 0.85:
            client.send(
                pb.CancelOrderRequest(
                    request_id=100 + i, order_book_id=book_id, order_id=rng.randint(1, 200)
                )
            )
        else:
            client.send(
                pb.AmendOrderRequest(
                    request_id=100 + i,
                    order_book_id=book_id,
                    order_id=rng.randint(1, 200),
                    price=round(rng.randint(90, 110) * tick, 2),
                    quantity=rng.randint(1, 20),
                )
            )
        count += 1
    client.send(pb.ClearOrderBookRequest(request_id=999, order_book_id=2))
    count += 1
    responses = 0
    while responses < count:
        kind, _ = await client.recv()
        responses += kind not in EVENT_TYPES
    state, seq = app.engine.state_hash(), app.engine.last_sequence_number
    highest_order_id = max([o.order_id for o in app.engine.resting_orders()] + [0])
    await app.stop()

    again, port = await start_book(tmp_path)
    assert again.engine.state_hash() == state
    assert again.engine.last_sequence_number == seq
    # ids and sequence numbers continue, never reused
    client = await service_client(port)
    while True:
        kind, message = await client.recv()
        if (kind == 14 and message.sequence_number == 0) or (
            kind == 15 and message.sequence_number == 0
        ):
            if kind == 14 and message.order_book_id == 2:
                break
            continue
    client.send(insert(5000, 0, 1.0, 1, order_book_id=1))
    while True:
        kind, message = await client.recv()
        if kind == 11:
            response = message
            break
    kind, event = await client.recv()
    assert event.sequence_number == seq + 1
    assert response.order_id == event.order_id
    assert response.order_id > highest_order_id
    await again.stop()


async def test_torn_and_corrupt_tails_are_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, port = await start_book(tmp_path, fsync="always")
    client = await service_client(port)
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=1.0))
    client.send(insert(2, 0, 10, 1))
    client.send(insert(3, 0, 11, 2))
    await read(client, 3 + 3)
    await app.stop()
    journal = tmp_path / FILE_NAME
    data = journal.read_bytes()

    # 1. flip a bit in the last record: it is dropped, the two before it kept
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    journal.write_bytes(bytes(flipped))
    app, _ = await start_book(tmp_path)
    assert [o.order_id for o in app.engine.resting_orders()] == [1]
    assert "CRC mismatch" in caplog.text
    await app.stop()

    # 2. a torn half record after the good ones
    good = journal.read_bytes()
    journal.write_bytes(good + data[len(good) : len(good) + 7])
    app, _ = await start_book(tmp_path)
    assert [o.order_id for o in app.engine.resting_orders()] == [1]
    assert journal.stat().st_size == len(good)
    assert "torn" in caplog.text
    await app.stop()


async def test_pipelined_requests_from_two_connections_keep_their_order(
    book: tuple[OrderBookApp, int],
) -> None:
    _, port = book
    a, b = await service_client(port), await service_client(port)
    a.send(pb.CreateOrderBookRequest(request_id=1, tick_size=1.0))
    await read(a, 2)
    await read(b, 1)
    for i in range(200):
        a.send(insert(1000 + i, 0, 10, 1, "alice"))
        b.send(insert(5000 + i, 1, 20, 1, "bob"))
    ids_a: list[int] = []
    ids_b: list[int] = []
    while len(ids_a) < 200:
        kind, message = await a.recv()
        if kind == 11:
            ids_a.append(message.request_id)
    while len(ids_b) < 200:
        kind, message = await b.recv()
        if kind == 11:
            ids_b.append(message.request_id)
    assert ids_a == list(range(1000, 1200))
    assert ids_b == list(range(5000, 5200))


async def test_resend_returns_the_original_outcome_whatever_it_says(
    book: tuple[OrderBookApp, int],
) -> None:
    """PROTOCOL.md: a client_order_id resend returns the original outcome "whatever the
    other fields of the resend say" and inserts nothing, also after its book is gone."""
    app, port = book
    client = await service_client(port)
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=1.0))
    client.send(insert(2, 1, 10, 5, "bob"))
    client.send(insert(3, 0, 10, 8, "alice", client_order_id="x-1"))  # trades 5, rests 3
    frames = await read(client, 3 + 4)  # created, bob's insert, alice's insert, trade
    original = frames[2][1]
    assert (original.traded_quantity, original.resting_quantity) == (5, 3)
    seq = app.engine.last_sequence_number
    resends = [
        insert(4, 1, 10, 8, "alice", client_order_id="x-1"),  # other side
        insert(5, 0, 10.5, 8, "alice", client_order_id="x-1"),  # off-tick price
        insert(6, 0, 10, 0, "alice", client_order_id="x-1"),  # zero quantity
        insert(7, 0, 10, 8, "alice", client_order_id="x-1", order_book_id=99),  # unknown book
    ]
    for request in resends:
        client.send(request)
    for _, response in await read(client, len(resends)):
        assert response.error_message == ""
        assert (response.order_id, list(response.trade_ids)) == (
            original.order_id,
            list(original.trade_ids),
        )
        assert (response.traded_quantity, response.resting_quantity) == (5, 3)
    client.send(pb.DeleteOrderBookRequest(request_id=8, order_book_id=1))
    await read(client, 1 + 2)
    client.send(insert(9, 0, 10, 8, "alice", client_order_id="x-1"))
    _, after_delete = await client.recv()
    assert (after_delete.error_message, after_delete.order_id) == ("", original.order_id)
    # bob's identical client_order_id is his own: a new order (book 1 is gone, so refused)
    client.send(insert(10, 0, 10, 8, "bob", client_order_id="x-1"))
    _, other_user = await client.recv()
    assert "unknown order book" in other_user.error_message
    assert app.engine.last_sequence_number == seq + 2  # only the delete's two events


async def test_the_requests_of_one_read_share_one_commit(
    book: tuple[OrderBookApp, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: a peer's pipelined requests that arrive in one read are
    journaled (and, with ``batch``, fsynced) once, and answered right after."""
    app, port = book
    client = await service_client(port)
    client.send(pb.CreateOrderBookRequest(request_id=1, tick_size=0.5))
    await read(client, 2)  # the answer and OnOrderBookCreated
    commits: list[int] = []
    commit = app.journal.commit

    def counting_commit() -> None:
        commits.append(len(app.journal._pending))
        commit()

    monkeypatch.setattr(app.journal, "commit", counting_commit)
    client.send_raw(
        b"".join(encode_frame(10, insert(i, 0, 10.0, 1).SerializeToString()) for i in range(2, 102))
    )
    frames = await read(client, 200)
    assert [m.request_id for k, m in frames if k == 11] == list(range(2, 102))
    assert sum(commits) == 100
    # 100 small frames are one read, or very few if the kernel splits them.
    assert len(commits) <= 3
