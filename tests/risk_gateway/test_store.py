"""Persistence of limits, windows and client_order_ids: snapshot + journal replay,
torn last lines, and times carried across a restart through the wall clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.clock import ManualClock
from services.risk_gateway.coids import ClientOrderIds, Outcome
from services.risk_gateway.limits import (
    ADMIN,
    OWN,
    InstrumentLimits,
    RiskEngine,
    RollingLimit,
    Ticket,
    UserLimits,
)
from services.risk_gateway.store import JOURNAL_FILE, NEXT_JOURNAL_FILE, STATE_FILE, RiskStore


def started(path: Path, clock: ManualClock) -> tuple[RiskEngine, ClientOrderIds, RiskStore]:
    """What the app does at start: load, apply, snapshot, journal from here on."""
    store = RiskStore(path, clock)
    restored = store.load()
    engine = RiskEngine(clock.monotonic)
    restored.apply(engine, clock.monotonic())
    store.open(engine, restored.coids)
    engine.journal = store.window
    return engine, restored.coids, store


def test_everything_survives_a_restart_from_the_journal(tmp_path: Path) -> None:
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    engine.set_user_limits("alice", OWN, UserLimits(100, RollingLimit(6, 60)))
    store.user_limits(OWN, "alice", UserLimits(100, RollingLimit(6, 60)))
    limits = InstrumentLimits(0, 0.0, RollingLimit(50, 60))
    engine.set_instrument_limits("alice", ADMIN, "AAPL", limits)
    store.instrument_limits(ADMIN, "alice", "AAPL", limits)
    for _ in range(3):
        assert isinstance(engine.check_insert("alice", "AAPL", 1, 10, 1), Ticket)
    refunded = engine.check_insert("alice", "AAPL", 1, 10, 1)
    assert isinstance(refunded, Ticket)
    engine.refund(refunded, message=False)
    coids.add("alice", "c-1", Outcome(7, 99, (1, 2), 3, 4))
    store.coid("alice", "c-1", Outcome(7, 99, (1, 2), 3, 4))
    store.flush()
    # Crash: no close(), the journal is all there is besides the first snapshot.
    clock.advance(30)
    engine2, coids2, store2 = started(tmp_path, clock)
    assert engine2.get_user_limits("alice", OWN) == UserLimits(100, RollingLimit(6, 60))
    assert engine2.get_instrument_limits("alice", ADMIN) == {"AAPL": limits}
    assert coids2.get("alice", "c-1") == Outcome(7, 99, (1, 2), 3, 4)
    # 4 messages and 30 lots in the windows, still 30 s old.
    assert isinstance(engine2.check_insert("alice", "AAPL", 1, 20, 1), Ticket)  # 5th message
    assert "order_quantity_rolling_limit" in str(engine2.check_insert("alice", "AAPL", 1, 1, 1))
    assert isinstance(engine2.check_message("alice"), Ticket)  # 6th
    assert "message_rate_rolling_limit" in str(engine2.check_message("alice"))
    clock.advance(30)  # the first records leave the window
    assert isinstance(engine2.check_message("alice"), Ticket)
    store2.close(engine2, coids2)


def test_close_writes_a_snapshot_and_an_empty_journal(tmp_path: Path) -> None:
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    engine.check_insert("bob", "MSFT", 2, 5, 1)
    store.close(engine, coids)
    assert (tmp_path / STATE_FILE).exists()
    lines = (tmp_path / JOURNAL_FILE).read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith('["E"')
    clock.advance(1)
    engine2, _, _ = started(tmp_path, clock)
    engine2.set_instrument_limits(
        "bob", OWN, "MSFT", InstrumentLimits(order_quantity_rolling_limit=RollingLimit(5, 10))
    )
    assert "order_quantity_rolling_limit" in str(engine2.check_insert("bob", "MSFT", 2, 1, 1))


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    clock = ManualClock()
    _, _, store = started(tmp_path, clock)
    store.user_limits(OWN, "alice", UserLimits(7))
    store.flush()
    with open(tmp_path / JOURNAL_FILE, "a", encoding="utf-8") as handle:
        handle.write('["U","own","bob",{"max_outs')
    engine2, _, _ = started(tmp_path, clock)
    assert engine2.get_user_limits("alice", OWN) == UserLimits(7)
    assert engine2.get_user_limits("bob", OWN) == UserLimits()


def test_times_map_through_the_wall_clock(tmp_path: Path) -> None:
    clock = ManualClock(monotonic=1000.0)
    engine, _, store = started(tmp_path, clock)
    engine.check_message("alice")
    store.flush()
    # A new process: its monotonic clock starts elsewhere; 5 s of wall time passed.
    later = ManualClock(monotonic=7.0, wall_ns=clock.now_ns() + 5_000_000_000)
    engine2, _, _ = started(tmp_path, later)
    engine2.set_user_limits("alice", OWN, UserLimits(0, RollingLimit(1, 6)))
    assert "message_rate_rolling_limit" in str(engine2.check_message("alice"))
    later.advance(1)  # now 6 s after the record
    assert isinstance(engine2.check_message("alice"), Ticket)


# ---------------------------------------------------------------- compaction while serving


def _orders(engine: RiskEngine, count: int) -> None:
    for _ in range(count):
        assert isinstance(engine.check_insert("alice", "AAPL", 1, 1, 1), Ticket)


def _restarted(path: Path, clock: ManualClock) -> tuple[int, Outcome | None]:
    """Lots alice ordered within the last minute and her ``c-1``, as a restarted
    Gateway sees them."""
    engine, coids, store = started(path, clock)
    total = engine.user("alice").accounts["AAPL"].orders.sum_since(60, clock.monotonic())
    store.close(engine, coids)
    return int(total), coids.get("alice", "c-1")


@pytest.mark.parametrize("crash_after", ["begin", "write", "finish"])
def test_a_background_compaction_loses_nothing_at_any_crash_point(
    tmp_path: Path, crash_after: str
) -> None:
    """Records keep coming while the snapshot is written elsewhere; whenever the
    process dies, a restart sees every record (the old journal at most twice,
    which only makes windows stricter)."""
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    _orders(engine, 5)
    coids.add("alice", "c-1", Outcome(7, 99, (), 0, 1))
    store.coid("alice", "c-1", Outcome(7, 99, (), 0, 1))
    write = store.begin_compaction(engine, coids)
    assert store.rotated and (tmp_path / NEXT_JOURNAL_FILE).exists()
    _orders(engine, 3)  # after the copy: only in the next journal
    store.flush()
    if crash_after in ("write", "finish"):
        write()
    if crash_after == "finish":
        store.finish_compaction()
        assert not store.rotated and not (tmp_path / NEXT_JOURNAL_FILE).exists()
    seen, coid = _restarted(tmp_path, clock)
    if crash_after == "write":
        assert seen in (8, 13)  # the old journal may count twice, never less
    else:
        assert seen == 8
    assert coid == Outcome(7, 99, (), 0, 1)
    # A restart compacts in the foreground and leaves one journal.
    assert not (tmp_path / NEXT_JOURNAL_FILE).exists()
    assert _restarted(tmp_path, clock) == (seen, coid)


def test_the_snapshot_is_written_from_copies(tmp_path: Path) -> None:
    """What happens after begin_compaction does not leak into its snapshot."""
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    _orders(engine, 2)
    write = store.begin_compaction(engine, coids)
    _orders(engine, 4)
    coids.add("alice", "late", Outcome(1, 1, (), 0, 1))
    write()
    snapshot = json.loads((tmp_path / STATE_FILE).read_text())
    lots = sum(v for key, entries in snapshot["series"] if key[0] == "o" for _, v, _ in entries)
    assert lots == 2 and snapshot["coids"] == []


def test_snapshot_pieces_are_the_json_of_the_whole() -> None:
    """The snapshot is written in pieces (the GIL); together they are plain JSON."""
    from services.risk_gateway.store import _JSON_CHUNK, _entries_json, _json_array

    for count in (0, 1, _JSON_CHUNK, _JSON_CHUNK + 1, 3 * _JSON_CHUNK):
        entries = [(1000.0 + i / 7, i % 3, (i * 7) % 5) for i in range(count)]
        kept = [[t, v, w] for t, v, w in entries if v or w]
        assert json.loads("".join(_entries_json(entries))) == kept
        assert json.loads("".join(_json_array(kept))) == kept
