"""Robustness: split and coalesced frames, floods, slow readers, broken peers
(PROTOCOL.md section 1 reader rules; DESIGN "a broken peer is disconnected without
disturbing anyone else", "slow subscribers are bounded and never slow the matcher")."""

from __future__ import annotations

import asyncio
import random
import time

from system_tests.harness.checks import BUY, IOC, PRICE_DEPTH_BOOK, SELL, eq, has, ok
from system_tests.harness.conn import Conn
from system_tests.harness.framing import encode_frame, encode_header
from system_tests.harness.messages import ON_ERROR
from system_tests.harness.world import World, insert, subscribe
from system_tests.pb import common_pb2, execution_pb2, info_pb2


async def test_thousand_frames_in_one_write(world: World) -> None:
    """Many frames may arrive in one read: 1,000 pipelined inserts in one write are all answered, in order."""
    instrument = await world.create_instrument()
    alice = await world.gateway(0)
    requests = [
        execution_pb2.InsertOrderRequest(
            instrument_symbol=instrument.symbol,
            side=BUY,
            price=instrument.px(1000 + i % 50),
            quantity=1,
        )
        for i in range(1000)
    ]
    ids = [Conn.assign_id(r) for r in requests]
    alice.send_raw(b"".join(encode_frame(40, r.SerializeToString()) for r in requests))
    order_ids = []
    for request_id in ids:
        frame = await alice.expect_frame(
            lambda f: True, f"the answer to request {request_id}", timeout=30
        )
        assert frame.type == 41 and frame.msg.request_id == request_id, (
            f"1,000 coalesced frames: expected InsertOrderResponse {request_id} next, received {frame.describe()}"
        )
        order_ids.append(ok(frame.msg, f"insert {request_id}").order_id)
    eq(len(set(order_ids)), 1000, "distinct order ids of 1,000 inserts")


async def test_one_byte_writes(world: World) -> None:
    """Read exactly `length` bytes, however the TCP stream splits them: a login and requests written one byte at a time."""
    user, password = world.participant(0)
    conn = await world.connect(world.target.info)
    login = common_pb2.LoginRequest(request_id=1, username=user, password=password)
    quotes = [info_pb2.QuotesRequest(request_id=2 + i) for i in range(3)]
    data = encode_frame(0, login.SerializeToString()) + b"".join(
        encode_frame(60, q.SerializeToString()) for q in quotes
    )
    for i in range(len(data)):
        conn.send_raw(data[i : i + 1])
        await conn.drain()
        if i % 7 == 0:
            await asyncio.sleep(0.001)  # give each byte its own segment now and then
    ok(
        await conn.expect(1, what="LoginResponse to a login sent byte by byte"),
        "byte-by-byte login",
    )
    for q in quotes:
        ok(
            await conn.expect(61, has(request_id=q.request_id), f"QuotesResponse {q.request_id}"),
            "byte-by-byte request",
        )


async def test_random_splits_and_coalescing(world: World) -> None:
    """Frames split and coalesced at random points all arrive whole and in order."""
    rng = random.Random(world.seed)
    print(f"split seed {world.seed}")
    conn = await world.info(0)
    requests = [info_pb2.QuotesRequest(request_id=10_000 + i) for i in range(200)]
    data = b"".join(encode_frame(60, r.SerializeToString()) for r in requests)
    position = 0
    while position < len(data):
        size = rng.choice((1, 2, 3, 5, 8, 13, 64, 500))
        conn.send_raw(data[position : position + size])
        await conn.drain()
        position += size
    for r in requests:
        frame = await conn.expect_frame(lambda f: True, f"QuotesResponse {r.request_id}")
        assert frame.type == 61 and frame.msg.request_id == r.request_id, (
            f"random splits (seed {world.seed}): expected QuotesResponse {r.request_id} next, received {frame.describe()}"
        )


async def test_flood_of_bad_frames_keeps_the_connection_and_disturbs_nobody(world: World) -> None:
    """A payload that does not parse gets ON_ERROR and the connection is kept: 300 of them in one write, then a valid request works; another client is unaffected."""
    bad = await world.info(0)
    other = await world.info(1)
    bad.send_raw(encode_frame(60, b"\x0a\x05ab") * 300)
    ok(await other.request(info_pb2.QuotesRequest()), "another client's request during the flood")
    for i in range(300):
        await bad.expect(ON_ERROR, what=f"ON_ERROR #{i + 1} of 300")
    ok(await bad.request(info_pb2.QuotesRequest()), "a valid request after 300 bad frames")


async def test_flood_from_one_client_does_not_starve_another(world: World) -> None:
    """One client pipelining 5,000 requests does not stop another client from being served promptly."""
    flooder = await world.info(0)
    other = await world.info(1)
    flooder.send_raw(
        b"".join(
            encode_frame(60, info_pb2.QuotesRequest(request_id=i + 1).SerializeToString())
            for i in range(5000)
        )
    )
    started = time.monotonic()
    ok(await other.request(info_pb2.QuotesRequest(), timeout=10), "the other client's request")
    waited = time.monotonic() - started
    assert waited < 5.0, (
        f"flood fairness: expected the other client's answer within 5 s, received it after {waited:.1f} s"
    )
    await flooder.expect(
        61, lambda m: m.request_id == 5000, "the flooder's last answer", timeout=60
    )


async def test_half_frames_and_abrupt_disconnects_disturb_nobody(world: World) -> None:
    """A broken peer (half a frame, then gone; or an oversized header) is dropped without disturbing anyone else."""
    instrument = await world.create_instrument()
    steady = await world.gateway(0)
    for i in range(20):
        conn = await world.connect(world.target.gateway if i % 2 else world.target.info)
        if i % 3 == 0:
            conn.send_raw(encode_header(1000, 0) + b"\x0a\x03")  # half a frame
        elif i % 3 == 1:
            conn.send_raw(encode_header(0x7FFFFFF0, 40))
        else:
            conn.send_raw(b"\x00\x00")
        await conn.close()
        ok(
            await insert(steady, instrument.symbol, BUY, instrument.px(100 + i), 1),
            f"insert after broken peer #{i + 1}",
        )


async def test_many_connections_at_once(world: World) -> None:
    """Many clients logging in and asking at the same time are all served."""
    user, password = world.participant(1)

    async def one(i: int) -> None:
        conn = await world.logged_in(world.target.info, user, password, label=f"Info client #{i}")
        ok(await conn.request(info_pb2.QuotesRequest(), timeout=20), f"client #{i}")

    await asyncio.gather(*(one(i) for i in range(30)))


async def test_client_gone_with_requests_in_flight(world: World) -> None:
    """A client that disconnects with unanswered requests disturbs nothing: its user can log in again and trade."""
    instrument = await world.create_instrument()
    gone = await world.gateway(1)
    gone.send_raw(
        b"".join(
            encode_frame(
                40,
                execution_pb2.InsertOrderRequest(
                    request_id=i + 1,
                    instrument_symbol=instrument.symbol,
                    side=SELL,
                    price=instrument.px(2000),
                    quantity=1,
                ).SerializeToString(),
            )
            for i in range(300)
        )
    )
    await gone.close()
    again = await world.gateway(1)
    ok(
        await insert(again, instrument.symbol, SELL, instrument.px(2000), 1),
        "insert on a new connection",
    )
    taker = await world.gateway(0)
    sweep = ok(
        await insert(taker, instrument.symbol, BUY, instrument.px(2000), 1000, IOC),
        "IOC over what rests",
    )
    assert 1 <= sweep.traded_quantity <= 301, (
        f"orders resting after the abrupt disconnect: expected between 1 and 301, received {sweep.traded_quantity}"
    )


async def test_slow_reader_is_bounded_and_does_not_slow_anyone(world: World) -> None:
    """Slow subscribers are bounded (conflation, then disconnect) and never slow the matcher: while one subscriber reads nothing, trading and other subscribers go on; when it reads again it gets gap-free numbering ending at the current book, or was disconnected."""
    instrument = await world.create_instrument()
    user, password = world.participant(1)
    slow = await world.logged_in(
        world.target.info, user, password, label="slow reader", rcvbuf=4096
    )
    ok(await subscribe(slow, instrument.symbol, PRICE_DEPTH_BOOK, 0), "slow subscribe")
    fast = await world.info(0)
    ok(await subscribe(fast, instrument.symbol, PRICE_DEPTH_BOOK, 5), "fast subscribe")
    slow.pause()
    alice = await world.gateway(0)
    started = time.monotonic()
    total = 1200
    for start in range(0, total, 200):
        pending = []
        for i in range(start, start + 200):
            msg = execution_pb2.InsertOrderRequest(
                instrument_symbol=instrument.symbol,
                side=BUY,
                price=instrument.px(1000 + i),
                quantity=1,
            )
            pending.append((msg, alice.send_request(msg)))
        for msg, request_id in pending:
            ok(
                (await alice.response_to(msg, request_id, timeout=30)).msg,
                "insert while a subscriber is stalled",
            )
    elapsed = time.monotonic() - started
    assert elapsed < 30, (
        f"trading with a stalled subscriber: expected {total} inserts within 30 s, received {elapsed:.1f} s"
    )
    best = [(1000 + total - 1 - i, 1) for i in range(5)]
    await fast.expect(
        24,
        lambda m: (
            m.instrument_symbol == instrument.symbol
            and [(round(lv.price / instrument.tick), lv.quantity) for lv in m.bids] == best
        ),
        "the fast subscriber's view of the final top 5 levels",
        timeout=30,
    )
    slow.resume()
    final_levels = total
    try:
        await slow.expect(
            24,
            lambda m: m.instrument_symbol == instrument.symbol and len(m.bids) == final_levels,
            "the slow reader's last message: the whole current book",
            timeout=30,
        )
    except AssertionError:
        if not slow.is_closed:
            raise
        return  # disconnected for not reading: allowed ("then disconnect")
    numbers = [
        m.sequence_number for m in slow.received(24) if m.instrument_symbol == instrument.symbol
    ]
    eq(
        numbers,
        list(range(1, len(numbers) + 1)),
        "the slow reader's sequence numbers (conflation skips states, never numbers)",
    )
