"""Info across failures: its own restart, Order Book restarts, lost and gapped streams,
and subscribers that stop reading."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.config import InfoConfig
from services.common.pb import common_pb2, info_pb2, order_book_pb2
from services.common.users import Role
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session
from services.info.app import InfoApp
from services.info.app import build as build_info
from services.info.store import FILE_NAME
from tests.info.conftest import BUY, MT, SELL, Exchange
from tests.info.test_service import levels, top
from tests.support.inprocess import demo_users, make_config, start_app

TOB, DEPTH = 0, 1


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition of the system under test (checked every 10 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- Info restarts


async def test_registry_and_quotes_survive_an_info_restart(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    await exchange.instrument("XYZ", 0.5)
    await exchange.insert(book, SELL, 10.0, 5)
    await exchange.insert(book, BUY, 10.0, 2)
    info = exchange.info
    assert info is not None
    abc = info.registry.get("ABC")
    assert abc is not None
    await until(lambda: abc.stats.trade_count == 1)
    await exchange.stop_info()
    saved = json.loads((exchange.tmp_path / "info" / FILE_NAME).read_text())
    assert [i["symbol"] for i in saved["instruments"]] == ["ABC", "XYZ"]

    await exchange.start_info()
    client = await exchange.client()
    first = await client.next(MT.INFO_ON_INSTRUMENT)
    second = await client.next(MT.INFO_ON_INSTRUMENT)
    assert (first.instrument.symbol, first.order_book_id) == ("ABC", book)
    assert (second.instrument.symbol, second.tick_size) == ("XYZ", 0.5)
    state = await exchange.subscribe(client, "ABC", TOB)
    assert top(state) == (0.0, 0, 10.0, 3)  # rebuilt from the Order Book's snapshot
    quotes = await client.request(info_pb2.QuotesRequest(request_id=1))
    assert [(q.instrument_symbol, q.traded_volume) for q in quotes.quotes] == [
        ("ABC", 2),
        ("XYZ", 0),
    ]
    await exchange.insert(book, BUY, 10.0, 1)
    trade = await client.next(25)
    assert trade.sequence_number == 2  # numbering continues with the saved count


async def test_instruments_whose_book_vanished_are_dropped(exchange: Exchange) -> None:
    keep = await exchange.instrument("KEEP")
    gone = await exchange.instrument("GONE")
    await exchange.stop_info()
    assert exchange.ob is not None
    await exchange.ob.request(
        MT.ORDER_BOOK_DELETE_REQUEST, order_book_pb2.DeleteOrderBookRequest(order_book_id=gone)
    )
    await exchange.start_info()
    assert exchange.info is not None
    assert [(i.symbol, i.order_book_id) for i in exchange.info.registry] == [("KEEP", keep)]
    client = await exchange.client()
    assert (await client.next(MT.INFO_ON_INSTRUMENT)).instrument.symbol == "KEEP"
    await client.expect_silence(0.1)
    saved = json.loads((exchange.tmp_path / "info" / FILE_NAME).read_text())
    assert [i["symbol"] for i in saved["instruments"]] == ["KEEP"]


async def test_info_starts_without_the_order_book_and_catches_up(tmp_path: Path) -> None:
    ex = Exchange(tmp_path, {"upstream_wait_s": 0.2})
    await ex.start_order_book()
    port = ex.order_book_port
    await ex.stop_order_book()
    try:
        await ex.start_info()  # nothing listens on the Order Book port yet
        assert ex.info is not None and not ex.info.feed.synced.is_set()
        ex.order_book_port = port
        await ex.start_order_book()
        await until(ex.info.feed.synced.is_set)
        book = await ex.instrument("ABC")
        assert book == 1
    finally:
        await ex.stop()


# ---------------------------------------------------------------------- Order Book losses


async def test_order_book_restart_rebuilds_instead_of_adding(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    await exchange.insert(book, BUY, 10.0, 5)
    await exchange.insert(book, SELL, 10.1, 3)
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    assert top(await exchange.subscribe(client, "ABC", TOB)) == (10.0, 5, 10.1, 3)
    info = exchange.info
    assert info is not None
    await exchange.stop_order_book()
    await until(lambda: not info.feed.connected)
    await exchange.start_order_book()  # same port, same journal
    await until(lambda: info.feed.resyncs == 1 and info.feed.connected)
    await exchange.insert(book, BUY, 10.0, 1)
    after = await client.next(23)
    # Same state after the snapshot (no message for it), then one change: had the
    # snapshot been added to the old mirror, quantities would have doubled.
    assert (after.sequence_number, top(after)) == (2, (10.0, 6, 10.1, 3))


async def test_lost_events_are_repaired_by_a_fresh_snapshot(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    await exchange.insert(book, BUY, 10.0, 5)
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    await exchange.subscribe(client, "ABC", DEPTH)
    info = exchange.info
    assert info is not None
    upstream = info.feed.link.conn
    assert upstream is not None and upstream.transport is not None
    upstream.transport.pause_reading()
    await exchange.insert(book, BUY, 10.1, 1)  # these events are never read ...
    await exchange.insert(book, SELL, 10.3, 2)
    order = await exchange.insert(book, SELL, 10.2, 7)
    await exchange.cancel(book, order.order_id)
    upstream.transport.abort()  # ... the connection dies with them
    repaired = await client.next(24)
    assert (repaired.sequence_number, levels(repaired)) == (
        2,
        ([(10.1, 1), (10.0, 5)], [(10.3, 2)]),
    )
    await exchange.insert(book, SELL, 10.2, 1)
    following = await client.next(24)
    assert (following.sequence_number, levels(following)[1]) == (3, [(10.2, 1), (10.3, 2)])


class FakeOrderBook:
    """Speaks just enough Order Book to script snapshots and live events."""

    def __init__(self, barrier: bool = True) -> None:
        self.logins = 0
        self.snapshot: list[tuple[int, Message]] = []
        self.session: Session | None = None
        stats = Route(MT.ORDER_BOOK_GET_STATS_REQUEST, self.stats, frozenset({int(Role.SERVICE)}))
        self.server = WireServer(
            "fake_order_book",
            self,
            [stats] if barrier else [],
            login_roles={int(Role.SERVICE)},
            authenticator=Authenticator(demo_users(), SystemClock()),
            clock=SystemClock(),
        )

    def on_login(self, session: Session) -> None:
        self.logins += 1
        self.session = session
        for kind, message in self.snapshot:
            session.send(kind, message)

    def on_close(self, session: Session) -> None:
        if self.session is session:
            self.session = None

    def stats(self, session: Session, request: Any) -> Any:
        return order_book_pb2.GetStatsResponse(request_id=request.request_id)

    def push(self, kind: int, message: Message) -> None:
        assert self.session is not None
        self.session.send(kind, message)


def created(book: int) -> tuple[int, Message]:
    return MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED, order_book_pb2.OnOrderBookCreated(
        order_book_id=book, tick_size=0.01
    )


def inserted(order: int, side: int, price: float, qty: int, seq: int = 0) -> tuple[int, Message]:
    return MT.ORDER_BOOK_ON_ORDER_INSERTED, order_book_pb2.OnOrderInserted(
        order_id=order,
        order_book_id=1,
        timestamp=1_000 + seq,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=qty,
        sequence_number=seq,
    )


@pytest.fixture
async def fake_exchange(tmp_path: Path) -> AsyncIterator[tuple[FakeOrderBook, Exchange]]:
    fake = FakeOrderBook()
    fake.snapshot = [created(1), inserted(1, BUY, 10.00, 5)]
    _, port = await fake.server.start("127.0.0.1", 0)
    ex = Exchange(tmp_path, {})
    ex.order_book_port = port
    await ex.start_info()
    try:
        yield fake, ex
    finally:
        await ex.stop()
        await fake.server.stop()


async def test_sequence_gap_triggers_a_replacing_resync(
    fake_exchange: tuple[FakeOrderBook, Exchange],
) -> None:
    fake, ex = fake_exchange
    assert (await ex.create_instrument_raw("ABC", 1)).error_message == ""
    client = await ex.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    assert top(await ex.subscribe(client, "ABC", TOB)) == (10.0, 5, 0.0, 0)
    fake.push(*inserted(2, BUY, 10.01, 1, seq=41))
    assert top(await client.next(23)) == (10.01, 1, 0.0, 0)
    # The truth moved on; the next event Info sees skips a number.
    fake.snapshot = [created(1), inserted(1, BUY, 10.02, 2), inserted(3, SELL, 10.05, 3)]
    fake.push(*inserted(9, BUY, 9.0, 1, seq=43))
    corrected = await client.next(23)
    assert (corrected.sequence_number, top(corrected)) == (3, (10.02, 2, 10.05, 3))
    assert fake.logins == 2 and ex.info is not None and ex.info.feed.resyncs == 1
    fake.push(*inserted(4, SELL, 10.04, 1, seq=50))  # a new connection may start anywhere
    following = await client.next(23)
    assert (following.sequence_number, top(following)) == (4, (10.02, 2, 10.04, 1))


async def test_contradicting_event_triggers_a_resync(
    fake_exchange: tuple[FakeOrderBook, Exchange],
) -> None:
    fake, ex = fake_exchange
    info = ex.info
    assert info is not None
    fake.push(
        MT.ORDER_BOOK_ON_ORDER_CANCELLED,
        order_book_pb2.OnOrderCancelled(order_id=99, order_book_id=1, sequence_number=1),
    )
    await until(lambda: fake.logins == 2 and info.feed.resyncs == 1)


async def test_snapshot_completes_without_a_barrier_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.info.feed.SNAPSHOT_FALLBACK_S", 0.3)
    fake = FakeOrderBook(barrier=False)  # answers 146 with ON_ERROR, no request id
    fake.snapshot = [created(1), inserted(1, BUY, 10.00, 5)]
    _, port = await fake.server.start("127.0.0.1", 0)
    ex = Exchange(tmp_path, {"upstream_wait_s": 2.0})
    ex.order_book_port = port
    try:
        await ex.start_info()
        assert ex.info is not None and ex.info.feed.synced.is_set()
        assert ex.info.feed.mirror.books[1].top() == (1000, 5, 0, 0)
    finally:
        await ex.stop()
        await fake.server.stop()


# ---------------------------------------------------------------------- slow readers

SMALL_BUFFERS = {
    "max_frame_bytes": 16384,
    "max_frame_bytes_before_login": 4096,
    "max_output_buffer_bytes": 65536,
}


def shrink_send_buffer(info: InfoApp, username: str) -> Session:
    """Make the server side of ``username``'s connection congest quickly."""
    [session] = [s for s in info.server.sessions if s.username == username]
    assert session.transport is not None
    sock = session.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return session


@pytest.mark.parametrize("info_overrides", [SMALL_BUFFERS])
async def test_a_stalled_subscriber_is_conflated_and_delays_nobody(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    for level in range(60):
        await exchange.insert(book, BUY, 5.0 + level / 100, 10)
    info = exchange.info
    assert info is not None
    slow = await exchange.client("bob", rcvbuf=4096)
    fast = await exchange.client("carol")
    await slow.next(MT.INFO_ON_INSTRUMENT), await fast.next(MT.INFO_ON_INSTRUMENT)
    slow_session = shrink_send_buffer(info, "bob")
    await exchange.subscribe(slow, "ABC", DEPTH)
    await exchange.subscribe(fast, "ABC", DEPTH)
    cap = SMALL_BUFFERS["max_output_buffer_bytes"]
    peak = 0
    changes = 300
    for index in range(changes):  # every change rewrites a ~1.5 KB depth book
        await exchange.insert(book, SELL, 20.0 + index / 100, 1)
        message = await fast.next(24, timeout=2.0)  # the fast reader keeps pace
        assert message.sequence_number == index + 2
        peak = max(peak, slow_session.output_bytes)
    assert peak <= cap
    assert not slow_session.closed and slow_session in info.server.sessions
    assert slow_session.congested
    final = levels(message)
    # The stalled reader now reads: consecutive numbers, fewer messages, latest state.
    numbers = []
    while True:
        depth = await slow.next(24, timeout=2.0)
        numbers.append(depth.sequence_number)
        if levels(depth) == final:
            break
    assert numbers == list(range(2, 2 + len(numbers)))
    assert len(numbers) < changes
    await slow.expect_silence(0.2)


@pytest.mark.parametrize("info_overrides", [SMALL_BUFFERS])
async def test_a_stalled_trade_subscriber_is_disconnected_at_its_cap(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    info = exchange.info
    assert info is not None and exchange.ob is not None
    slow = await exchange.client("bob", rcvbuf=4096)
    fast = await exchange.client("carol")
    await slow.next(MT.INFO_ON_INSTRUMENT), await fast.next(MT.INFO_ON_INSTRUMENT)
    slow_session = shrink_send_buffer(info, "bob")
    await exchange.subscribe(slow, "ABC", TOB)
    await exchange.subscribe(fast, "ABC", TOB)
    await exchange.insert(book, SELL, 10.0, 1_000_000)
    await fast.next(23)
    # The slow reader's client still takes in about 128 KiB (its stream reader's
    # buffer) before it stops reading, so 6,000 trades (~45 bytes each, plus book
    # messages) are needed to push its session past the 64 KiB cap.
    trades = 6000
    # Sent in chunks, each published before the next is sent, while the fast
    # reader reads along: the trades of one read of the Order Book stream are
    # written to every connection in one loop turn, so a read carrying more than
    # the cap's worth (~1,450 trades) drops the fast reader too, which is the cap
    # working. With everything sent at once, how many trades one read carried was
    # a matter of scheduling in this one-process set-up.
    chunk = 500
    instrument = info.registry.get("ABC")
    assert instrument is not None
    received = 0

    async def read_fast() -> None:
        nonlocal received
        while received < trades:
            kind, message = await fast.recv(timeout=10.0)
            if kind == 25:
                received += 1
                assert message.sequence_number == received

    reader = asyncio.create_task(read_fast())
    for sent in range(chunk, trades + 1, chunk):
        futures = [
            exchange.ob.request(
                MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
                order_book_pb2.InsertOrderRequest(
                    order_book_id=book,
                    side=common_pb2.BUY,
                    price=10.0,
                    quantity=1,
                    on_behalf_of_username="a",
                ),
            )
            for _ in range(chunk)
        ]
        await asyncio.gather(*futures)
        await until(functools.partial(lambda n: instrument.stats.trade_count >= n, sent))
    await asyncio.wait_for(reader, 20.0)
    assert received == trades
    await until(lambda: slow_session.closed)
    assert slow_session not in info.server.sessions
    assert fast.writer.transport is not None and not fast.writer.transport.is_closing()


async def test_saved_registry_that_cannot_be_read_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "info").mkdir()
    (tmp_path / "info" / FILE_NAME).write_text("garbage", encoding="utf-8")
    with pytest.raises(OSError, match="cannot load the instrument registry"):
        await start_app(build_info, make_config(InfoConfig, tmp_path / "info", order_book_port=1))
