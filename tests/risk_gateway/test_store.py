"""Persistence of limits, windows and client_order_ids: snapshot + journal replay,
torn last lines, times carried across a restart through the wall clock, and
the compaction while serving (its copy a bounded step per loop turn, every
crash point exact)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.risk_gateway import compaction as compaction_module
from services.risk_gateway.coids import ClientOrderIds, Outcome
from services.risk_gateway.compaction import Compaction
from services.risk_gateway.limits import (
    ADMIN,
    OWN,
    InstrumentLimits,
    RiskEngine,
    RollingLimit,
    Ticket,
    UserLimits,
)
from services.risk_gateway.store import RiskStore
from services.risk_gateway.store_format import JOURNAL_FILE, NEXT_JOURNAL_FILE, STATE_FILE
from services.risk_gateway.windows import Series


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


def _orders(engine: RiskEngine, count: int, user: str = "alice", symbol: str = "AAPL") -> None:
    for _ in range(count):
        assert isinstance(engine.check_insert(user, symbol, 1, 1, 1), Ticket)


def _restarted(path: Path, clock: ManualClock) -> tuple[int, Outcome | None]:
    """Lots alice ordered within the last minute and her ``c-1``, as a restarted
    Gateway sees them."""
    engine, coids, store = started(path, clock)
    total = engine.user("alice").accounts["AAPL"].orders.sum_since(60, clock.monotonic())
    store.close(engine, coids)
    return int(total), coids.get("alice", "c-1")


def _copy_all(compaction: Compaction) -> int:
    """Run the copy to its end as the Gateway does, a step per loop turn; the steps."""
    return sum(1 for _ in compaction.copy())


@pytest.mark.parametrize("crash_after", ["begin", "copy", "snapshot", "unlink", "switch", "finish"])
def test_a_background_compaction_loses_nothing_at_any_crash_point(
    tmp_path: Path, crash_after: str
) -> None:
    """Records keep coming while the snapshot is written elsewhere; whenever the
    process dies, a restart sees every record exactly once (the old journal is
    not replayed once the snapshot that holds it is in place)."""
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    _orders(engine, 5)
    coids.add("alice", "c-1", Outcome(7, 99, (), 0, 1))
    store.coid("alice", "c-1", Outcome(7, 99, (), 0, 1))
    compaction = store.begin_compaction(engine, coids)
    assert store.rotated and (tmp_path / NEXT_JOURNAL_FILE).exists()
    _orders(engine, 2)  # before alice's copy: the old journal, and the copy holds them
    store.flush()
    if crash_after != "begin":
        _copy_all(compaction)
        _orders(engine, 1)  # after the copy: only in the next journal
        store.flush()
    if crash_after in ("snapshot", "unlink"):
        compaction.write_snapshot()
        assert (tmp_path / JOURNAL_FILE).exists() and (tmp_path / NEXT_JOURNAL_FILE).exists()
    if crash_after == "unlink":
        (tmp_path / JOURNAL_FILE).unlink()  # switch_journals' first half
    if crash_after in ("switch", "finish"):
        compaction.write()  # the snapshot, then the switch of journals
        assert not (tmp_path / NEXT_JOURNAL_FILE).exists()
    if crash_after == "finish":
        store.finish_compaction()
        assert not store.rotated
    seen, coid = _restarted(tmp_path, clock)
    assert seen == (7 if crash_after == "begin" else 8)
    assert coid == Outcome(7, 99, (), 0, 1)
    # A restart compacts in the foreground and leaves one journal.
    assert not (tmp_path / NEXT_JOURNAL_FILE).exists()
    assert _restarted(tmp_path, clock) == (seen, coid)


def test_the_snapshot_holds_each_series_as_its_copy_ended(tmp_path: Path) -> None:
    """Records before a series' copy ended are in the snapshot (and the old
    journal), later ones only in the next journal; client_order_ids and limits
    changed after the switch are in the next journal."""
    clock = ManualClock()
    engine, coids, store = started(tmp_path, clock)
    _orders(engine, 2)
    compaction = store.begin_compaction(engine, coids)
    _orders(engine, 4)  # alice is not copied yet: these go to the old journal
    store.flush()
    _copy_all(compaction)
    _orders(engine, 3)
    coids.add("alice", "late", Outcome(1, 1, (), 0, 1))
    store.coid("alice", "late", Outcome(1, 1, (), 0, 1))
    store.user_limits(OWN, "alice", UserLimits(5))
    store.flush()
    compaction.write_snapshot()
    snapshot = json.loads((tmp_path / STATE_FILE).read_text())
    lots = sum(v for key, entries in snapshot["series"] if key[0] == "o" for _, v, _ in entries)
    assert lots == 6 and snapshot["coids"] == [] and snapshot["user_limits"][OWN] == {}
    next_records = [
        json.loads(line) for line in (tmp_path / NEXT_JOURNAL_FILE).read_text().splitlines()
    ]
    assert [r[0] for r in next_records] == ["E"] + ["w"] * 6 + ["C", "U"]
    old_records = [json.loads(line) for line in (tmp_path / JOURNAL_FILE).read_text().splitlines()]
    assert sum(r[3] for r in old_records if r[0] == "w" and r[1][0] == "o") == 6


def test_snapshot_pieces_are_the_json_of_the_whole() -> None:
    """The snapshot is written in pieces (the GIL); together they are plain JSON."""
    from services.risk_gateway.store_format import _JSON_CHUNK, entries_json, json_array

    for count in (0, 1, _JSON_CHUNK, _JSON_CHUNK + 1, 3 * _JSON_CHUNK):
        entries = [(1000.0 + i / 7, i % 3, (i * 7) % 5) for i in range(count)]
        kept = [[t, v, w] for t, v, w in entries if v or w]
        assert json.loads("".join(entries_json(entries))) == kept
        assert json.loads("".join(json_array(kept))) == kept


# ---------------------------------------------------------------- the copy, a step per turn

STEP = 64
"""COPY_STEP in these tests: many chunks from a small state."""
SPACING = 0.002
"""Between two requests: more than RESOLUTION_S, so they are separate entries."""
MERGE_S = 0.0002
"""Less than RESOLUTION_S: a record this soon after another merges into its entry."""
WINDOWS = (0.5, 1.0, 10.0, 30.0, 60.0, 3600.0)
"""Windows compared after a reload: up to 60 s only fine entries count (the same
in every representation); 3600 s is everything kept (moving entries to coarse
buckets keeps the sums)."""


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compaction_module, "COPY_STEP", STEP)


class Traffic:
    """Requests of many users on a manual clock, journalled like the Gateway does."""

    def __init__(self, path: Path) -> None:
        self.clock = ManualClock(monotonic=1000.0)
        self.engine, self.coids, self.store = started(path, self.clock)
        self.tickets: list[Ticket] = []
        self.count = 0

    def orders(self, count: int, users: int = 1, symbols: int = 1, pairs: bool = False) -> None:
        """``count`` orders, SPACING apart; ``pairs``: each with a second one
        MERGE_S later, which merges into the first one's entries."""
        for i in range(count):
            user, symbol = f"u{i % users}", f"S{i // users % symbols}"
            for second in (False, True) if pairs else (False,):
                if second:
                    self.clock.advance(MERGE_S)
                ticket = self.engine.check_insert(user, symbol, 1, 1 + i % 7, 3)
                assert isinstance(ticket, Ticket)
                self.tickets.append(ticket)
            if self.count % 5 == 0:
                self.engine.check_message(user)
            self.count += 1
            self.clock.advance(SPACING - MERGE_S if pairs else SPACING)
        self.store.flush()  # what the Gateway does before forwarding

    def limits(self, user: str, layer: str, limits: UserLimits) -> None:
        self.engine.set_user_limits(user, layer, limits)
        self.store.user_limits(layer, user, limits)
        self.store.flush()

    def instrument_limits(self, user: str, symbol: str, limits: InstrumentLimits) -> None:
        self.engine.set_instrument_limits(user, ADMIN, symbol, limits)
        self.store.instrument_limits(ADMIN, user, symbol, limits)
        self.store.flush()

    def coid(self, user: str, client_order_id: str) -> None:
        outcome = Outcome(len(self.coids) + 1, 5, (), 0, 1)
        self.coids.add(user, client_order_id, outcome)
        self.store.coid(user, client_order_id, outcome)
        self.store.flush()

    def refund(self, ticket: Ticket) -> None:
        self.engine.refund(ticket, message=True)
        self.store.flush()


def _state(
    engine: RiskEngine, coids: ClientOrderIds, now: float
) -> tuple[dict[Any, list[int]], Any, Any, set[Any]]:
    """What a reload must reproduce: window sums (both values) per series,
    both layers of limits, the client_order_ids."""
    # Half a spacing after the last request: no entry sits on a window's edge.
    now += SPACING / 2
    sums = {}
    for series in engine.series():
        row = [int(series.sum_since(d, now, second)) for d in WINDOWS for second in (False, True)]
        if any(row):
            sums[series.key] = row
    return sums, engine.user_limits, engine.instrument_limits, set(coids.items())


def _reloaded(path: Path, clock: ManualClock, into: Path) -> Any:
    """The state a Gateway started on a copy of ``path`` (a crash now) would have."""
    shutil.copytree(path, into)
    restored = RiskStore(into, clock).load()
    engine = RiskEngine(clock.monotonic)
    restored.apply(engine, clock.monotonic())
    return _state(engine, restored.coids, clock.monotonic())


def _assert_reloads_exactly(traffic: Traffic, tmp_path: Path) -> None:
    live = _state(traffic.engine, traffic.coids, traffic.clock.monotonic())
    crash = tmp_path / f"crash{len(list(tmp_path.iterdir()))}"
    assert _reloaded(traffic.store.data_dir, traffic.clock, crash) == live


def test_the_copy_takes_many_turns_of_bounded_work(
    tmp_path: Path, small_steps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying the whole window history in one turn held the loop 13-25 ms at
    10,000 orders/s: each step copies about COPY_STEP entries."""
    traffic = Traffic(tmp_path / "data")
    traffic.orders(3000, users=40, symbols=3)  # 160 series, ~20-75 entries each
    traffic.orders(1000)  # u0's messages and S0 orders: many chunks
    for number in range(300):
        traffic.coid(f"u{number % 3}", f"c{number}")
    entries = sum(len(series) for series in traffic.engine.series())
    copied = [0]
    for name in ("copy_fine", "copy_coarse"):
        original = getattr(Series, name)

        def counting(*args: Any, original: Any = original) -> Any:
            result = original(*args)
            copied[0] += len(result[0] if isinstance(result, tuple) else result)
            return result

        monkeypatch.setattr(Series, name, counting)
    original_copy_user = ClientOrderIds.copy_user

    def copy_user(self: ClientOrderIds, username: str) -> dict[str, bytes]:
        table = original_copy_user(self, username)
        copied[0] += len(table)
        return table

    monkeypatch.setattr(ClientOrderIds, "copy_user", copy_user)
    compaction = traffic.store.begin_compaction(traffic.engine, traffic.coids)
    assert copied[0] == 0  # the switch copies limits only
    per_step = []
    for _ in compaction.copy():
        per_step.append(copied[0])
        copied[0] = 0
    per_step.append(copied[0])
    assert sum(per_step) == entries + 300
    assert len(per_step) >= (entries + 300) // (2 * STEP)
    assert max(per_step) <= 2 * STEP


def test_changes_during_the_copy_are_all_there_after_a_reload(
    tmp_path: Path, small_steps: None
) -> None:
    """Between any two steps of the copy: new window entries (of users copied,
    being copied, not yet taken up, and new), refunds (of entries copied and
    not), trims, limit changes (one adds a long window, which brings coarse
    buckets back), client_order_ids. A crash after any step, and the finished
    compaction, reload exactly the state in memory."""
    traffic = Traffic(tmp_path / "data")
    engine = traffic.engine
    traffic.orders(2000, users=4, symbols=2)  # 4 s; u0..u3 with 2 symbols
    traffic.clock.advance(57)
    traffic.orders(1000, users=4, symbols=2, pairs=True)
    engine.trim()  # the first second in coarse buckets now, the rest soon
    traffic.coid("u1", "before")
    compaction = traffic.store.begin_compaction(engine, traffic.coids)

    def trim_later() -> None:
        traffic.clock.advance(1.0)
        engine.trim()

    changes: list[Callable[[], None]] = [
        lambda: traffic.orders(50, users=6, symbols=3),  # u4, u5 are new
        lambda: traffic.refund(traffic.tickets[-3]),  # a recent entry
        lambda: traffic.refund(traffic.tickets[2100]),  # an old one, maybe copied
        trim_later,
        lambda: traffic.limits("u2", OWN, UserLimits(10**9, RollingLimit(10**6, 30))),
        lambda: traffic.instrument_limits(
            "u3", "S1", InstrumentLimits(0, 0.0, RollingLimit(10**6, 600))
        ),
        lambda: traffic.coid("u0", f"c{traffic.count}"),
        lambda: traffic.coid("u9", f"c{traffic.count}"),
        lambda: traffic.orders(3, users=1, pairs=True),
        lambda: traffic.instrument_limits("u0", "S0", InstrumentLimits()),  # removed again
    ]
    steps = 0
    for steps, _ in enumerate(compaction.copy(), 1):
        changes[steps % len(changes)]()
        _assert_reloads_exactly(traffic, tmp_path)
    assert steps > 2 * len(changes)
    traffic.orders(20, users=6, symbols=3)
    compaction.write_snapshot()
    _assert_reloads_exactly(traffic, tmp_path)  # the old journal is not replayed
    compaction.switch_journals()
    _assert_reloads_exactly(traffic, tmp_path)
    traffic.store.finish_compaction()
    traffic.orders(20, users=6, symbols=3)
    _assert_reloads_exactly(traffic, tmp_path)
    assert sorted(p.name for p in traffic.store.data_dir.iterdir()) == [JOURNAL_FILE, STATE_FILE]


def test_a_trim_into_the_entries_not_copied_yet_starts_the_series_again(
    tmp_path: Path, small_steps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A series copied in chunks is trimmed past its first chunk (its oldest
    entries go to coarse buckets, merged with ones not copied yet): its copy
    starts again, and the reload is exact."""
    traffic = Traffic(tmp_path / "data")
    long_window = InstrumentLimits(0, 0.0, RollingLimit(10**6, 600))
    traffic.instrument_limits("u0", "S0", long_window)  # keeps 600 s of fine entries
    for _ in range(300):  # 0.5 s apart: 150 s of u0's orders, all fine entries
        traffic.orders(1)
        traffic.clock.advance(0.5)
    attempts: dict[Any, int] = {}
    original = Series.copy_coarse

    def copy_coarse(self: Series) -> list[tuple[float, int, int]]:
        attempts[self.key] = attempts.get(self.key, 0) + 1
        return original(self)

    monkeypatch.setattr(Series, "copy_coarse", copy_coarse)
    compaction = traffic.store.begin_compaction(traffic.engine, traffic.coids)
    steps = compaction.copy()
    orders = ("o", "u0", "S0")
    while orders not in attempts:
        next(steps)  # u0's messages, then (with a pause after it) a chunk of its orders
    assert traffic.engine.user("u0").accounts["S0"].orders.fine_range() == (0, 300)
    traffic.instrument_limits("u0", "S0", InstrumentLimits())  # 60 s of fine entries
    traffic.engine.trim()  # moves the 180 entries older than 60 s: 64 were copied
    assert traffic.engine.user("u0").accounts["S0"].orders.fine_range()[0] > STEP
    for _ in steps:
        traffic.orders(1)
    assert attempts[orders] == 2
    _assert_reloads_exactly(traffic, tmp_path)
    compaction.write()
    traffic.store.finish_compaction()
    _assert_reloads_exactly(traffic, tmp_path)


def test_refunds_of_copied_entries_start_the_series_again_a_bounded_number_of_times(
    tmp_path: Path, small_steps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refund of an entry already copied makes that copy stale: the series is
    copied again; when that keeps happening, in one turn."""
    traffic = Traffic(tmp_path / "data")
    traffic.orders(1000)
    attempts = [0]
    original = Series.copy_coarse

    def copy_coarse(self: Series) -> list[tuple[float, int, int]]:
        if self.key == ("o", "u0", "S0"):
            attempts[0] += 1
        return original(self)

    monkeypatch.setattr(Series, "copy_coarse", copy_coarse)
    compaction = traffic.store.begin_compaction(traffic.engine, traffic.coids)
    steps = 0
    for steps, _ in enumerate(compaction.copy(), 1):
        if steps < 12:
            traffic.refund(traffic.tickets[steps])  # the oldest: copied first
        traffic.orders(1)
    assert attempts[0] == compaction_module._COPY_ATTEMPTS + 1
    _assert_reloads_exactly(traffic, tmp_path)
    compaction.write()
    traffic.store.finish_compaction()
    _assert_reloads_exactly(traffic, tmp_path)


def test_a_compaction_abandoned_half_way_is_tidied_by_the_next_compact(
    tmp_path: Path, small_steps: None
) -> None:
    """The Gateway stopped in the middle of the copy: the final (blocking)
    compaction writes everything and leaves one journal."""
    traffic = Traffic(tmp_path / "data")
    traffic.orders(600, users=3)
    compaction = traffic.store.begin_compaction(traffic.engine, traffic.coids)
    steps = compaction.copy()
    next(steps)
    traffic.orders(10, users=3)
    traffic.store.close(traffic.engine, traffic.coids)
    assert sorted(p.name for p in traffic.store.data_dir.iterdir()) == [JOURNAL_FILE, STATE_FILE]
    _assert_reloads_exactly(traffic, tmp_path)
    with pytest.raises(RuntimeError, match="abandoned"):
        for _ in steps:
            pass
    with pytest.raises(RuntimeError, match="not copied"):
        compaction.write_snapshot()
