"""Durable risk state: limits (both layers), window history and client_order_ids.

PROTOCOL.md wants limits and windows to survive a Gateway restart, and a resend
of a ``client_order_id`` to return its original outcome also after a restart.
(Outstanding quantities need no storage: they are rebuilt from the Order Book's
login snapshot.) Two files in ``data_dir``:

* ``risk_state.json`` -- a snapshot of everything, replaced atomically
  (temporary file, fsync, rename);
* ``risk_journal.jsonl`` -- one JSON array per change since that snapshot:
  window records, limit changes, accepted client_order_ids. Lines are buffered
  and written (``flush``) before the request that caused them is forwarded,
  so what the Order Book may have seen is on disk first (write-ahead). With
  ``fsync="always"`` they are also fsynced; the default only survives a process
  crash, not a power cut.

At start the snapshot is read and the journal replayed on top; then a fresh
snapshot is written and the journal truncated. A torn last line (a crash in the
middle of a write) is ignored.

Compaction while serving (the journal passed ``COMPACT_BYTES``) must not stop
the Gateway: a snapshot of a busy minute's window history is ~20 MB of JSON and
took 1.3 s to build and write on the event loop (measured at 10,000 orders/s),
and even copying that history in one go held the loop 10-30 ms (and the cyclic
GC's passes over the copied lists came on top). So it is split in three:

1. :meth:`RiskStore.begin_compaction` (one quick loop turn) copies the limits,
   notes the users there are, and *switches*: new records go to a second
   journal, ``risk_journal.next.jsonl``, whose first record names it with a
   random id that the snapshot will carry too.
2. :meth:`Compaction.copy` copies the window history and client_order_ids a
   bounded amount (:data:`COPY_STEP` entries) per loop turn. A series is
   copied in chunks of fine entries, oldest first; until it is completely
   copied, its window records still go to the *old* journal, since the copy
   will include them; after, they go to the next journal. So the snapshot
   holds each series as it was when its copy ended, the old journal everything
   before, the next journal everything after, and no record is in both the
   snapshot and the next journal (see :class:`_Routing` for why the chunks
   stay exact while trims run and refunds arrive). Limit changes and client_order_ids go to the next journal from the
   switch on: replaying them on a later copy gives the same result (limits: the
   last change wins; client_order_ids: only ever added, a known one is kept).
3. :meth:`Compaction.write`, on a worker thread, builds and writes the
   snapshot from the copies, then drops the old journal and renames the next
   one into its place (file work only: the loop goes on appending to the next
   journal, whose open file follows the rename); back on the loop,
   :meth:`RiskStore.finish_compaction` ends the compaction.

Loading replays the snapshot and both journals, except that the old journal is
skipped when the snapshot carries the next journal's id (the snapshot of this
compaction is in place and already holds all of it). So every crash point is
exact: before the new snapshot, old snapshot + old journal + next journal (each
record in exactly one of the journals); after it, new snapshot + next journal.

Times: windows run on the monotonic clock, which does not survive a restart.
Each file records an *epoch* (a monotonic reading and the wall-clock time at the
same moment); loading maps stored times through wall-clock time onto the new
process's monotonic clock.

No asyncio, no protobuf: plain file I/O, called from the event loop (only the
slow half of a background compaction runs on a worker thread).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from array import array
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, cast

from services.common.clock import Clock
from services.risk_gateway.accounts import UserState
from services.risk_gateway.coids import ClientOrderIds, Outcome
from services.risk_gateway.limits import (
    LAYERS,
    InstrumentLimits,
    RiskEngine,
    RollingLimit,
    UserLimits,
)
from services.risk_gateway.windows import Series

__all__ = [
    "COPY_STEP",
    "JOURNAL_FILE",
    "NEXT_JOURNAL_FILE",
    "STATE_FILE",
    "Compaction",
    "Restored",
    "RiskStore",
]

STATE_FILE: Final = "risk_state.json"
JOURNAL_FILE: Final = "risk_journal.jsonl"
NEXT_JOURNAL_FILE: Final = "risk_journal.next.jsonl"
"""Takes new records while a background compaction writes the snapshot."""
VERSION: Final = 1
COMPACT_BYTES: Final = 64 << 20
"""Journal size at which the state is snapshotted and the journal truncated."""

log = logging.getLogger("optivex.risk_gateway.store")

SeriesKey = tuple[str, ...]


# ---------------------------------------------------------------------- (de)serialising


def _rolling(value: RollingLimit) -> list[int]:
    return [value.limit, value.window_s]


def _rolling_from(data: Any) -> RollingLimit:
    return RollingLimit(int(data[0]), int(data[1]))


def user_limits_to_json(limits: UserLimits) -> dict[str, Any]:
    return {
        "max_outstanding_quantity": limits.max_outstanding_quantity,
        "message_rate_rolling_limit": _rolling(limits.message_rate_rolling_limit),
    }


def user_limits_from_json(data: dict[str, Any]) -> UserLimits:
    return UserLimits(
        int(data["max_outstanding_quantity"]),
        _rolling_from(data["message_rate_rolling_limit"]),
    )


def instrument_limits_to_json(limits: InstrumentLimits) -> dict[str, Any]:
    return {
        "max_outstanding_quantity": limits.max_outstanding_quantity,
        "max_outstanding_amount": limits.max_outstanding_amount,
        "order_quantity_rolling_limit": _rolling(limits.order_quantity_rolling_limit),
        "order_amount_rolling_limit": _rolling(limits.order_amount_rolling_limit),
    }


def instrument_limits_from_json(data: dict[str, Any]) -> InstrumentLimits:
    return InstrumentLimits(
        int(data["max_outstanding_quantity"]),
        float(data["max_outstanding_amount"]),
        _rolling_from(data["order_quantity_rolling_limit"]),
        _rolling_from(data["order_amount_rolling_limit"]),
    )


def _outcome_to_json(outcome: Outcome) -> list[Any]:
    return [
        outcome.order_id,
        outcome.timestamp,
        list(outcome.trade_ids),
        outcome.traded_quantity,
        outcome.resting_quantity,
    ]


def _outcome_from_json(data: Any) -> Outcome:
    return Outcome(
        int(data[0]), int(data[1]), tuple(int(t) for t in data[2]), int(data[3]), int(data[4])
    )


# ---------------------------------------------------------------------- state


@dataclass
class Restored:
    """What a previous run left behind, times already on this process's clock."""

    user_limits: dict[str, dict[str, UserLimits]] = field(
        default_factory=lambda: {layer: {} for layer in LAYERS}
    )
    instrument_limits: dict[str, dict[str, dict[str, InstrumentLimits]]] = field(
        default_factory=lambda: {layer: {} for layer in LAYERS}
    )
    coids: ClientOrderIds = field(default_factory=ClientOrderIds)
    series: dict[SeriesKey, list[tuple[float, int, int]]] = field(default_factory=dict)

    def apply(self, engine: RiskEngine, now: float) -> None:
        """Load limits and window history into a fresh engine."""
        for layer, users in self.user_limits.items():
            for username, limits in users.items():
                engine.set_user_limits(username, layer, limits)
        for layer, by_user in self.instrument_limits.items():
            for username, by_symbol in by_user.items():
                for symbol, instrument_limits in by_symbol.items():
                    engine.set_instrument_limits(username, layer, symbol, instrument_limits)
        for key, entries in self.series.items():
            series = engine.series_for(key)
            if series is not None:
                series.load(entries, now)


class _TimeMap:
    """Maps times of a stored epoch onto this process's monotonic clock."""

    def __init__(self, epoch: Any, clock: Clock) -> None:
        stored_mono, stored_wall_ns = float(epoch[0]), int(epoch[1])
        # time_here = now_mono - (now_wall - (stored_wall + (t - stored_mono)))
        self.offset = clock.monotonic() - clock.now_ns() / 1e9 + stored_wall_ns / 1e9 - stored_mono

    def __call__(self, t: float) -> float:
        return t + self.offset


class RiskStore:
    """The two files in ``data_dir`` (see the module docstring)."""

    def __init__(
        self, data_dir: Path, clock: Clock, fsync: Literal["always", "none"] = "none"
    ) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.fsync = fsync == "always"
        self._pending: list[str] = []
        self._prefixes: dict[Hashable, str] = {}
        self._last_t = -1.0
        self._last_t_text = ""
        """``repr`` of the last window time: one request writes several records
        with the same time, and a float's repr is the line's dearest part."""
        self._journal: Any = None
        self.journal_bytes = 0
        self.rotated = False
        """True from :meth:`begin_compaction` to :meth:`finish_compaction`."""
        self._old_journal: Any = None
        """The old journal during a compaction (until :meth:`finish_compaction`)."""
        self._old_pending: list[str] = []
        """Buffered window records for the old journal (see :class:`_Routing`)."""
        self._routing: _Routing | None = None
        """Set while a compaction copies the window history: which window
        records still go to the old journal."""

    # ------------------------------------------------------------------ loading

    def load(self) -> Restored:
        """Read the snapshot and replay the journals (missing files: empty state).

        The old journal is skipped when the snapshot carries the next journal's
        id: then it is the snapshot of the compaction that started that
        journal, and it holds everything the old one has (module docstring).
        (Not the epoch: two readings of a coarse or manual clock can be equal.)
        """
        restored = Restored()
        state_path = self.data_dir / STATE_FILE
        journal_id: Any = None
        if state_path.exists():
            data = json.loads(state_path.read_text(encoding="utf-8"))
            if data.get("version") != VERSION:
                raise ValueError(f"{state_path}: unsupported version {data.get('version')!r}")
            self._load_snapshot(data, restored)
            journal_id = data.get("journal")
        skip_old = (
            journal_id is not None and _journal_id(self.data_dir / NEXT_JOURNAL_FILE) == journal_id
        )
        if skip_old:
            log.info("%s is in the snapshot already: not replayed", JOURNAL_FILE)
        for name in (JOURNAL_FILE, NEXT_JOURNAL_FILE):
            journal_path = self.data_dir / name
            if journal_path.exists() and not (skip_old and name == JOURNAL_FILE):
                self._replay(journal_path, restored)
        return restored

    def _load_snapshot(self, data: dict[str, Any], restored: Restored) -> None:
        to_here = _TimeMap(data["epoch"], self.clock)
        for layer in LAYERS:
            for username, limits in data["user_limits"].get(layer, {}).items():
                restored.user_limits[layer][username] = user_limits_from_json(limits)
            for username, by_symbol in data["instrument_limits"].get(layer, {}).items():
                restored.instrument_limits[layer][username] = {
                    symbol: instrument_limits_from_json(limits)
                    for symbol, limits in by_symbol.items()
                }
        for username, client_order_id, outcome in data["coids"]:
            restored.coids.add(username, client_order_id, _outcome_from_json(outcome))
        for key, entries in data["series"]:
            restored.series[tuple(key)] = [(to_here(t), int(v), int(w)) for t, v, w in entries]

    def _replay(self, path: Path, restored: Restored) -> None:
        to_here: _TimeMap | None = None
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                kind = record[0]
                if kind == "E":
                    to_here = _TimeMap(record[1:], self.clock)
                elif kind == "w":
                    if to_here is None:
                        raise ValueError("window record before the epoch record")
                    key = tuple(record[1])
                    entry = (to_here(record[2]), int(record[3]), int(record[4]))
                    restored.series.setdefault(key, []).append(entry)
                elif kind == "U":
                    limits = user_limits_from_json(record[3])
                    restored.user_limits[record[1]][record[2]] = limits
                elif kind == "I":
                    layer, username, symbol = record[1], record[2], record[3]
                    entries = restored.instrument_limits[layer].setdefault(username, {})
                    instrument_limits = instrument_limits_from_json(record[4])
                    if instrument_limits.is_zero:
                        entries.pop(symbol, None)
                    else:
                        entries[symbol] = instrument_limits
                elif kind == "C":
                    restored.coids.add(record[1], record[2], _outcome_from_json(record[3]))
                else:
                    raise ValueError(f"unknown record kind {kind!r}")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                if number >= len(lines) - 1:
                    log.warning("%s: ignoring a torn last line (%s)", path, exc)
                else:
                    log.error("%s:%d: skipping a bad record (%s)", path, number, exc)

    # ------------------------------------------------------------------ writing

    def open(self, engine: RiskEngine, coids: ClientOrderIds) -> None:
        """Write a fresh snapshot of the current state and start an empty journal."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.compact(engine, coids)

    def compact(self, engine: RiskEngine, coids: ClientOrderIds) -> None:
        """Snapshot everything, then truncate the journal (blocking; at start and stop,
        and after a background compaction failed or was abandoned half-way).

        The snapshot is in place before the journal is truncated: if writing it
        fails, the journal stays as it was (and keeps growing). A crash between
        the two replays the old journal on top of the new snapshot, which can
        only count window records twice (conservative).
        """
        if self._journal is not None:
            self.flush()
        self._routing = None  # an abandoned copy: the state in memory is complete
        mono, wall_ns, journal_id = self.clock.monotonic(), self.clock.now_ns(), _new_id()
        snapshot = _Snapshot(self.data_dir / STATE_FILE, mono, wall_ns, journal_id, engine)
        for _ in _Copier(snapshot, list(engine.users()), coids, None).steps():
            pass
        snapshot.write(yield_gil=False)
        self._close_journals()
        (self.data_dir / NEXT_JOURNAL_FILE).unlink(missing_ok=True)
        self.rotated = False
        self._journal = self._start_journal(JOURNAL_FILE, mono, wall_ns, journal_id)

    def begin_compaction(self, engine: RiskEngine, coids: ClientOrderIds) -> Compaction:
        """The switch that starts a compaction while serving (module docstring).

        Copies the limits (small), notes the users whose window history is to
        be copied, and sends new records to ``NEXT_JOURNAL_FILE``; the window
        history and client_order_ids are copied by :meth:`Compaction.copy`, a
        step per loop turn. Call :meth:`finish_compaction` once
        :meth:`Compaction.write` returned. Not while :attr:`rotated`.
        """
        if self.rotated:
            raise RuntimeError("a compaction is already under way")
        if self._journal is not None:
            self.flush()
        mono, wall_ns, journal_id = self.clock.monotonic(), self.clock.now_ns(), _new_id()
        snapshot = _Snapshot(self.data_dir / STATE_FILE, mono, wall_ns, journal_id, engine)
        users = list(engine.users())
        routing = _Routing(user.name for user in users)
        # If this raises, nothing has changed yet.
        journal = self._start_journal(NEXT_JOURNAL_FILE, mono, wall_ns, journal_id)
        self._old_journal, self._journal = self._journal, journal
        self.rotated = True
        self._routing = routing
        return Compaction(self, _Copier(snapshot, users, coids, routing), snapshot)

    def finish_compaction(self) -> None:
        """:meth:`Compaction.write` has returned: the compaction is over (the
        journal being written is the one named ``JOURNAL_FILE`` again)."""
        self._routing = None
        self.rotated = False

    def _close_old_journal(self) -> None:
        """The copy is complete: write what is still buffered for the old journal
        (normally nothing: every batch is flushed in its turn) and close it."""
        journal = self._old_journal
        if journal is None:
            return
        if self._old_pending:
            data = "".join(self._old_pending).encode()
            self._old_pending = []
            _write_all(journal, data)
            if self.fsync:
                os.fsync(journal.fileno())
        journal.close()
        self._old_journal = None

    def _start_journal(self, name: str, mono: float, wall_ns: int, journal_id: str) -> Any:
        """A new journal file with its epoch record (and id) written; returns the file."""
        # Unbuffered bytes: each flush is one write(2) of the batch's lines, without
        # the text layer and its buffer in between (those cost more than the call).
        journal = open(self.data_dir / name, "wb", buffering=0)  # noqa: SIM115
        data = _line(["E", mono, wall_ns, journal_id]).encode()
        try:
            _write_all(journal, data)
            if self.fsync:
                os.fsync(journal.fileno())
        except BaseException:
            journal.close()
            raise
        self.journal_bytes = len(data)
        return journal

    def _close_journals(self) -> None:
        for journal in (self._journal, self._old_journal):
            if journal is not None:
                journal.close()
        self._journal = self._old_journal = None
        self._old_pending = []

    def window(self, key: Hashable, t: float, v: int, w: int) -> None:
        """Journal hook of the :class:`RiskEngine`: one window record (buffered).

        On every forwarded request's path, so the line is formatted by hand
        (the key's JSON is cached; ``repr`` of a float round-trips exactly).
        """
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = '["w",' + json.dumps(list(_key(key))) + ","
        if t != self._last_t:
            self._last_t = t
            self._last_t_text = repr(t)
        routing = self._routing
        if routing is not None and routing.to_old(key, t):
            self._old_pending.append(f"{prefix}{self._last_t_text},{v},{w}]\n")
        else:
            self._pending.append(f"{prefix}{self._last_t_text},{v},{w}]\n")

    def user_limits(self, layer: str, username: str, limits: UserLimits) -> None:
        self._pending.append(_line(["U", layer, username, user_limits_to_json(limits)]))

    def instrument_limits(
        self, layer: str, username: str, symbol: str, limits: InstrumentLimits
    ) -> None:
        self._pending.append(
            _line(["I", layer, username, symbol, instrument_limits_to_json(limits)])
        )

    def coid(self, username: str, client_order_id: str, outcome: Outcome) -> None:
        self._pending.append(_line(["C", username, client_order_id, _outcome_to_json(outcome)]))

    @property
    def pending(self) -> bool:
        """Whether records are buffered (a flush would write something)."""
        return bool(self._pending or self._old_pending)

    def flush(self) -> None:
        """Write what is buffered (and fsync if configured); raises OSError on failure.

        While a compaction copies, a batch's records may be split between the
        old and the next journal: two writes (which one comes first does not
        matter, see :class:`_Routing`).
        """
        if self._old_pending and self._old_journal is not None:
            data = "".join(self._old_pending).encode()
            self._old_pending = []
            _write_all(self._old_journal, data)
            if self.fsync:
                os.fsync(self._old_journal.fileno())
        if not self._pending or self._journal is None:
            return
        data = "".join(self._pending).encode()
        self._pending = []
        _write_all(self._journal, data)
        if self.fsync:
            os.fsync(self._journal.fileno())
        self.journal_bytes += len(data)

    def discard_pending(self) -> None:
        """Drop buffered records (their request was refused before being forwarded)."""
        self._pending = []
        self._old_pending = []

    def close(self, engine: RiskEngine, coids: ClientOrderIds) -> None:
        """Final snapshot (so the next start replays nothing) and close."""
        if self._journal is None:
            return
        try:
            self.compact(engine, coids)
        finally:
            self._close_journals()


COPY_STEP: Final = 8192
"""Window entries (or client_order_ids) a compaction copies per loop turn.

Copying this many fine entries (times, v and w) into arrays takes ~0.55 ms; a
turn may also copy a series' coarse tier (at most a few thousand buckets) and
finish small series, up to about twice this many entries. Measured at
10,000 orders/s (~500,000 entries, 55 turns): median 0.8 ms, longest 1.7 ms a
turn, where the copy in one go took 10-30 ms.
"""
_COPY_ATTEMPTS: Final = 3
"""Chunked copies of one series before the next one is taken in one turn."""

_Fine: TypeAlias = "tuple[array[float], Sequence[int], Sequence[int]]"
"""A chunk of fine entries: times, ``v`` and ``w``."""


class _Progress:
    """How far the chunked copy of one series has got."""

    __slots__ = ("stale", "through")

    def __init__(self) -> None:
        self.through = -math.inf
        """Time of the newest fine entry copied so far."""
        self.stale = False
        """A record changed an entry already copied: copy the series again."""


class _Routing:
    """Which journal a window record goes to while a compaction copies.

    A record whose series is copied completely goes to the next journal (the
    snapshot does not hold it); one whose series is not (its user is not
    taken up yet, or its copy is under way) to the old journal: the copy will
    hold it, and the old journal is dropped once the snapshot is in place.
    Series created after the switch (new users, a user's new instruments once
    the user is taken up) are in no snapshot: next journal. Records of
    different series are independent (loading sums them per time), so a batch
    split between the two files is replayed the same in any order.

    A series is copied oldest entries first, in chunks, and never a chunk that
    ends with its newest entry (that one still merges new records): the last
    chunk, with the newest entry, is copied in the same turn as the series is
    marked done. Between two chunks the series goes on changing:

    * a new record has the current time, later than every copied entry, so it
      lands in an entry not copied yet (new, or the newest);
    * a refund (a negative record with the original time) of an entry copied
      already would make the copy stale: a record not later than the newest
      copied entry is one (an entry's time is the latest of its records, and
      the next entry's records are all later), and it marks the series stale;
    * a trim moves the oldest fine entries to the coarse tier (merged into
      buckets), and a window set with a new length moves coarse buckets back.
      As long as the newest copied entry is still a fine entry, with its time,
      at its sequence number, every entry from there on is uncopied and
      unchanged (a bucket holding both copied and uncopied entries would be
      stamped later than it). If it is not, a trim reached into the entries
      not copied yet.

    A stale or overtaken copy starts again (every record of that series went
    to the old journal meanwhile, so the fresh copy holds all of them); after
    :data:`_COPY_ATTEMPTS` attempts the series is copied in one turn. Neither
    happens at a steady rate: a chunk is :data:`COPY_STEP` entries, seconds of
    history, refunds concern the last milliseconds and a trim the oldest half
    second.
    """

    __slots__ = ("copying", "pending_users")

    def __init__(self, users: Iterable[str]) -> None:
        self.pending_users = set(users)
        """Users of the switch whose series are not taken up yet."""
        self.copying: dict[Hashable, _Progress] = {}
        """The series of the user being copied that are not done yet."""

    def to_old(self, key: Hashable, t: float) -> bool:
        """Whether the record ``(key, t, ...)`` goes to the old journal."""
        progress = self.copying.get(key)
        if progress is None:
            return _owner(key) in self.pending_users
        if t <= progress.through:
            progress.stale = True
        return True


class _Snapshot:
    """Copies of the state, taken on the event loop; :meth:`write` writes them.

    Nothing here is shared with the live state (limit values are frozen), so
    :meth:`write` may run on another thread while the loop serves.
    """

    def __init__(
        self, path: Path, mono: float, wall_ns: int, journal_id: str, engine: RiskEngine
    ) -> None:
        self.path = path
        self.epoch = [mono, wall_ns]
        self.journal_id = journal_id
        self.user_limits = {layer: dict(engine.user_limits[layer]) for layer in LAYERS}
        self.instrument_limits = {
            layer: {u: dict(by_symbol) for u, by_symbol in engine.instrument_limits[layer].items()}
            for layer in LAYERS
        }
        self.coids: list[tuple[str, dict[str, Outcome]]] = []
        self.series: list[tuple[Hashable, list[tuple[float, int, int]], list[_Fine]]] = []

    def write(self, yield_gil: bool) -> None:
        """Build the snapshot's JSON in pieces and replace the file (see
        :func:`_write_atomically`)."""
        head = {
            "version": VERSION,
            "epoch": self.epoch,
            "journal": self.journal_id,
            "user_limits": {
                layer: {u: user_limits_to_json(lim) for u, lim in by_user.items()}
                for layer, by_user in self.user_limits.items()
            },
            "instrument_limits": {
                layer: {
                    u: {s: instrument_limits_to_json(lim) for s, lim in by_symbol.items()}
                    for u, by_symbol in by_user.items()
                }
                for layer, by_user in self.instrument_limits.items()
            },
        }
        coid_items = (
            [u, c, _outcome_to_json(o)] for u, table in self.coids for c, o in table.items()
        )

        def pieces() -> Iterator[str]:
            yield _dumps(head)[:-1] + ',"coids":'
            yield from _json_array(coid_items)
            yield ',"series":['
            for number, (key, coarse, fine) in enumerate(self.series):
                yield ("," if number else "") + "[" + _dumps(list(_key(key))) + ","
                yield from _entries_json(
                    chain(coarse, *(zip(t, v, w, strict=True) for t, v, w in fine))
                )
                yield "]"
            yield "]}"

        _write_atomically(self.path, pieces(), yield_gil=yield_gil)

    def release(self) -> None:
        """Drop the copies a piece at a time (on the writer's thread), rather than
        all at once wherever the last reference goes: a large client_order_id
        table takes milliseconds to free, holding the GIL."""
        while self.coids:
            self.coids.pop()
            time.sleep(0)
        self.series.clear()  # arrays of numbers: quick to free


class _Copier:
    """Copies the window history and client_order_ids into a :class:`_Snapshot`,
    :data:`COPY_STEP` entries or so between two ``yield`` (see :class:`_Routing`;
    without one, a foreground compaction, each series in one go)."""

    def __init__(
        self,
        snapshot: _Snapshot,
        users: list[UserState],
        coids: ClientOrderIds,
        routing: _Routing | None,
    ) -> None:
        self.snapshot = snapshot
        self.users = users
        self.coids = coids
        self.coid_users = coids.users()
        """Users with client_order_ids at the switch (later ones: all in the
        next journal)."""
        self.routing = routing
        self.work = 0

    def steps(self) -> Iterator[None]:
        routing = self.routing
        for user in self.users:
            series = [user.messages, *(account.orders for account in user.accounts.values())]
            if routing is not None:
                for one in series:
                    routing.copying[one.key] = _Progress()
                routing.pending_users.discard(user.name)
            self.work += len(series)
            for one in series:
                yield from self._series(one)
        for username in self.coid_users:
            # Any copy from the switch on will do: client_order_ids are only
            # added, and replaying the next journal's adds keeps known ones.
            table = self.coids.copy_user(username)
            self.snapshot.coids.append((username, table))
            self.work += 1 + len(table)
            yield from self._pause()

    def _series(self, series: Series) -> Iterator[None]:
        routing = self.routing
        progress = _Progress() if routing is None else routing.copying[series.key]
        attempts = 0
        while True:
            attempts += 1
            progress.stale = False
            progress.through = -math.inf
            coarse = series.copy_coarse()
            start, end = series.fine_range()
            fine: list[_Fine] = []
            self.work += len(coarse)
            while end - start > COPY_STEP and routing is not None and attempts <= _COPY_ATTEMPTS:
                # Never the newest entry: the remaining ones are more than a chunk.
                chunk = _packed(series.copy_fine(start, start + COPY_STEP))
                fine.append(chunk)
                start += COPY_STEP
                progress.through = chunk[0][-1]
                self.work += COPY_STEP
                yield from self._pause()
                if progress.stale or series.time_at(start - 1) != progress.through:
                    break  # changed under the copy (see _Routing): again
                end = series.fine_range()[1]
            else:
                # The rest, newest entry included, and done in the same turn.
                fine.append(_packed(series.copy_fine(start, end)))
                self.work += end - start
                if routing is not None:
                    del routing.copying[series.key]
                if coarse or any(len(times) for times, _, _ in fine):
                    self.snapshot.series.append((series.key, coarse, fine))
                yield from self._pause()
                return

    def _pause(self) -> Iterator[None]:
        """Let the event loop run if this turn's share of work is done."""
        if self.work >= COPY_STEP:
            self.work = 0
            yield


class Compaction:
    """A compaction while serving, from :meth:`RiskStore.begin_compaction` to
    :meth:`RiskStore.finish_compaction` (see the module docstring)."""

    def __init__(self, store: RiskStore, copier: _Copier, snapshot: _Snapshot) -> None:
        self._store = store
        self._copier = copier
        self._snapshot = snapshot
        self.copied = False
        """True once :meth:`copy` has run to its end (then :meth:`write` may run)."""
        self.written = False
        """True once the snapshot is in place (then the journals may switch)."""

    def copy(self) -> Iterator[None]:
        """Copy the window history and client_order_ids, a bounded step per
        ``next``; the event loop must run between two steps (the Gateway:
        ``await asyncio.sleep(0)``), the state must only change between them.
        Its last step closes the old journal (nothing more goes there); raises
        OSError if what was still buffered for it cannot be written.
        """
        store = self._store
        routing = self._copier.routing
        yield from self._copier.steps()
        if store._routing is not routing:
            raise RuntimeError("the compaction was abandoned (RiskStore.compact ran)")
        store._routing = None
        store._close_old_journal()
        self.copied = True

    def write(self) -> None:
        """The slow half, file work only, for a worker thread (after :meth:`copy`):
        :meth:`write_snapshot`, then :meth:`switch_journals`. Then call
        :meth:`RiskStore.finish_compaction` on the loop."""
        self.write_snapshot()
        self.switch_journals()

    def write_snapshot(self) -> None:
        """Build and write the snapshot from the copies (any thread)."""
        if not self.copied:
            raise RuntimeError("the state is not copied yet")
        self._snapshot.write(yield_gil=True)
        self.written = True
        self._snapshot.release()

    def switch_journals(self) -> None:
        """The snapshot is in place: drop the old journal, rename the next one into
        its place (any thread; the loop may go on appending to the next journal,
        its open file follows the rename).

        Not on the loop: unlinking a 64 MiB journal took ~7-8 ms on this disk
        (the file system frees its blocks). A crash between the two leaves the
        snapshot and the next journal: loaded as they are.
        """
        if not self.written:
            raise RuntimeError("the snapshot is not written yet")
        data_dir = self._store.data_dir
        (data_dir / JOURNAL_FILE).unlink(missing_ok=True)
        os.replace(data_dir / NEXT_JOURNAL_FILE, data_dir / JOURNAL_FILE)


def _key(key: Hashable) -> Iterable[str]:
    assert isinstance(key, tuple)
    return key


def _owner(key: Hashable) -> str:
    """The user a series key names: ``("m", user)`` or ``("o", user, symbol)``
    (:meth:`RiskEngine.series_for`)."""
    return cast(SeriesKey, key)[1]


def _new_id() -> str:
    """Names a journal and the snapshot taken with it (see :meth:`RiskStore.load`)."""
    return os.urandom(8).hex()


def _journal_id(path: Path) -> Any:
    """The id in the epoch record a journal starts with; None if there is none."""
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.readline())
        return record[3] if record[0] == "E" and len(record) > 3 else None
    except (OSError, ValueError, IndexError, TypeError, KeyError):
        return None


def _packed(fine: tuple[list[float], list[int], list[int]]) -> _Fine:
    """A chunk of fine entries as arrays of numbers, not lists of objects.

    Lists would be traversed by the cyclic garbage collector in every young
    collection until promoted, and the floats they point to lie all over the
    heap: one collection over a few hundred thousand copied entries held the
    loop ~12 ms. Arrays are not tracked (building one costs ~0.3 ms more per
    :data:`COPY_STEP` entries). An amount too large for 64 bits stays a list.
    """
    times, v, w = fine
    return array("d", times), _ints(v), _ints(w)


def _ints(values: list[int]) -> Sequence[int]:
    try:
        return array("q", values)
    except OverflowError:
        return values


def _write_all(journal: Any, data: bytes) -> None:
    written = journal.write(data)
    while written < len(data):  # a short write (rare for a file): the rest
        written += journal.write(data[written:])


_SYNC_EVERY: Final = 1 << 20
"""Characters of a snapshot written between two syncs (see :func:`_write_atomically`)."""
_JSON_CHUNK: Final = 2000
"""Items per ``json.dumps`` call when writing a snapshot (see :func:`_json_array`)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_array(items: Iterable[Any]) -> Iterator[str]:
    """The JSON text of ``[*items]``, in pieces of a few thousand items.

    Why not one ``json.dumps``: it holds the GIL for its whole run, ~600 ms for
    a busy minute's window history, and the event loop's thread would wait
    that long although the snapshot is written on another thread. Between
    small calls the interpreter lets the loop run.
    """
    yield "["
    batch: list[Any] = []
    separator = ""
    for item in items:
        batch.append(item)
        if len(batch) >= _JSON_CHUNK:
            yield separator + _dumps(batch)[1:-1]
            separator = ","
            batch = []
    if batch:
        yield separator + _dumps(batch)[1:-1]
    yield "]"


def _entries_json(entries: Iterable[tuple[float, int, int]]) -> Iterator[str]:
    """``[[t, v, w], ...]`` of the entries with a value, as JSON text in pieces.

    Formatted as strings rather than through lists for ``json.dumps``: a
    million short-lived lists set off the cyclic garbage collector, whose full
    passes hold the GIL for tens of milliseconds. ``repr`` of a float is what
    ``json`` writes for it (times are finite).
    """
    yield "["
    chunk: list[str] = []
    separator = ""
    for t, v, w in entries:
        if v or w:
            chunk.append(f"[{t!r},{v},{w}]")
            if len(chunk) >= _JSON_CHUNK:
                yield separator + ",".join(chunk)
                separator = ","
                chunk = []
    if chunk:
        yield separator + ",".join(chunk)
    yield "]"


def _line(record: list[Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def _write_atomically(path: Path, text: str | Iterable[str], yield_gil: bool = False) -> None:
    """Replace ``path`` with ``text``, or with its pieces written one by one.

    Pieces, because joining and encoding 20 MB at once would hold the GIL for
    ~25 ms; synced every :data:`_SYNC_EVERY` characters, because one sync of
    20 MB at the end kept the disk busy for ~0.5 s, and the Order Book's
    journal sync, on the same disk, waited behind it (measured: a 0.46 s stall
    of the whole exchange at each Gateway compaction under 10,000 orders/s).

    ``yield_gil`` (a snapshot written on a worker thread while the event loop
    serves): give the GIL away after each piece. Two busy threads otherwise
    take turns of 5 ms, and a loop getting half the interpreter for the
    second or so the snapshot takes fell 150-230 ms behind at 10,000 orders/s.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            unsynced = 0
            for piece in [text] if isinstance(text, str) else text:
                handle.write(piece)
                unsynced += len(piece)
                if yield_gil:
                    time.sleep(0)
                if unsynced >= _SYNC_EVERY:
                    handle.flush()
                    os.fdatasync(handle.fileno())
                    unsynced = 0
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
