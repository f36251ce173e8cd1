"""Faults of the Order Book under steady load: crashes, a damaged journal, a freeze.

Pass means: no acknowledged order lost, none duplicated, every journaled order
was acknowledged to its client, a replay of the journal rebuilds exactly the
live state, and Info's book equals the Order Book's at the end.
"""

from __future__ import annotations

import asyncio
import random
import signal
import struct
import time
import zlib
from pathlib import Path

from services.order_book.journal import FILE_NAME, encode_record, scan
from services.order_book.translate import INSERT
from tests.reliability.cluster import DEMO_PASSWORDS, Cluster
from tests.reliability.ledger import Traders, percentile
from tests.reliability.observe import check_info_mirrors, order_book_state, replay

USERS = [(name, DEMO_PASSWORDS[name]) for name in ("alice", "bob", "carol", "dave")]
SYMBOLS = ["REL.A", "REL.B", "REL-C"]


async def _start(tmp_path: Path, **options: tuple[str, ...]) -> tuple[Cluster, dict[str, int]]:
    cluster = await asyncio.to_thread(Cluster(tmp_path, **options).start)
    books = {symbol: await cluster.create(symbol) for symbol in SYMBOLS}
    return cluster, books


async def _verify(cluster: Cluster, traders: Traders, books: dict[str, int]) -> None:
    """The pass criteria shared by every Order Book fault (see the module docstring)."""
    ledger = traders.ledger
    print(ledger.summary())
    assert not ledger.undecided, ledger.summary()
    live = await order_book_state(cluster.book.port)
    journal = replay(cluster.book.data_dir)
    assert journal.tail_problem == ""
    assert ledger.problems(journal) == []
    assert journal.state() == live, "the journal does not rebuild the live state"
    assert replay(cluster.book.data_dir).engine.state_hash() == journal.engine.state_hash()
    await check_info_mirrors(cluster.info.port, live, books)


async def test_order_book_killed_ten_times_loses_and_duplicates_nothing(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    cluster, books = await _start(tmp_path, order_book=("--fsync", "batch"))
    traders = await Traders(cluster.gateway.port, USERS, SYMBOLS, seed=seed, rate=150).connect()
    try:
        traders.start()
        await traders.wait_acked(30)
        for _ in range(10):
            # Random crash timing (a seeded fault schedule, not a synchronisation).
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            await asyncio.to_thread(cluster.book.restart)
            await traders.wait_acked(10)  # the exchange recovered and trades again
        await traders.stop()
        await _verify(cluster, traders, books)
        assert traders.ledger.retries > 0, "no order was ever resent: the faults missed"
        # A clean restart rebuilds the same state from the journal.
        before = await order_book_state(cluster.book.port)
        await asyncio.to_thread(cluster.book.restart)
        assert await order_book_state(cluster.book.port) == before
    finally:
        await traders.close()
        await asyncio.to_thread(cluster.stop)


def _corrupt_tail(journal: Path, kind: str, rng: random.Random) -> int:
    """Append a torn record (``torn``) or a whole record with one bit flipped.

    Either is what a crash in the middle of a write leaves: a record that was
    never acknowledged (the Order Book answers only after the write).  Returns
    the journal's size before the damage.
    """
    data = journal.read_bytes()
    records, valid, problem = scan(data)
    assert problem == "" and valid == len(data)
    last = records[-1]
    record = encode_record(INSERT, last.timestamp + 1, last.payload)
    if kind == "torn":
        damaged = record[: rng.randrange(1, len(record))]
    else:
        flipped = bytearray(record)
        bit = rng.randrange(8 * 8, 8 * len(record))  # in the body, so only the CRC tells
        flipped[bit // 8] ^= 1 << (bit % 8)
        damaged = bytes(flipped)
        assert struct.unpack_from(">I", damaged, 4)[0] != zlib.crc32(damaged[8:])
    with journal.open("ab") as f:
        f.write(damaged)
    return len(data)


async def test_torn_and_bit_flipped_journal_tails_are_truncated_and_logged(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    cluster, books = await _start(tmp_path)
    traders = await Traders(cluster.gateway.port, USERS, SYMBOLS, seed=seed, rate=100).connect()
    journal = cluster.book.data_dir / FILE_NAME
    try:
        traders.start()
        for kind in ("torn", "bit flip"):
            await traders.wait_acked(20)
            cluster.book.kill9()
            intact = journal.read_bytes()
            size = _corrupt_tail(journal, kind, rng)
            lines = len(cluster.book.log)
            await asyncio.to_thread(cluster.book.start)
            new_lines = cluster.book.log[lines:]
            problem = "torn record" if kind == "torn" else "CRC mismatch"
            assert any(problem in line and "truncating" in line for line in new_lines), new_lines
            # Everything before the damage is kept, byte for byte.
            assert journal.read_bytes()[:size] == intact
            await traders.wait_acked(20)
        await traders.stop()
        await _verify(cluster, traders, books)
    finally:
        await traders.close()
        await asyncio.to_thread(cluster.stop)


async def test_frozen_order_book_is_reported_unavailable_quickly_then_recovers(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    idle_s = 2.0
    idle = ("--heartbeat-interval-s", "0.5", "--idle-timeout-s", str(idle_s))
    cluster, books = await _start(tmp_path, common=idle)
    # The participants use the same idle timeout as the Gateway's link to the
    # Order Book: the Gateway keeps sending them heartbeats while their requests
    # wait on the frozen Order Book, so they stay connected and get the answer.
    traders = await Traders(
        cluster.gateway.port,
        USERS,
        SYMBOLS,
        seed=seed,
        rate=100,
        heartbeat_interval_s=0.5,
        idle_timeout_s=idle_s,
    ).connect()
    ledger = traders.ledger
    try:
        traders.start()
        await traders.wait_acked(20)
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # seeded fault timing
        cluster.book.signal(signal.SIGSTOP)
        frozen_at = time.perf_counter()
        try:
            # Wait until requests sent well after the Gateway must have noticed
            # (idle timeout + one heartbeat tick + slack) have been answered.
            noticed_by = frozen_at + idle_s + 1.0
            while sum(1 for sent, _ in ledger.unavailable if sent > noticed_by) < 30:
                assert time.perf_counter() - frozen_at < 15, ledger.summary()
                await asyncio.sleep(0.05)
        finally:
            cluster.book.signal(signal.SIGCONT)
        late = [latency for sent, latency in ledger.unavailable if sent > noticed_by]
        assert percentile(late, 0.9) < 0.2, late
        # Requests caught by the freeze were answered within the idle timeout + a tick.
        assert max(latency for _, latency in ledger.unavailable) < idle_s + 1.0
        await traders.wait_acked(30, timeout=30)  # recovered
        await traders.stop()
        assert sum(client.reconnects for client in traders.clients) == 0
        await _verify(cluster, traders, books)
    finally:
        await traders.close()
        await asyncio.to_thread(cluster.stop)
