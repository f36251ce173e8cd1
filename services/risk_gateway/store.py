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
the Gateway, so it is incremental: :meth:`RiskStore.begin_compaction` switches
new records to a second journal, ``risk_journal.next.jsonl``, and returns a
:class:`~services.risk_gateway.compaction.Compaction` that copies the state a
bounded step per loop turn and writes the snapshot on a worker thread; until a
series is copied completely its window records still go to the old journal
(:class:`~services.risk_gateway.compaction.Routing`). Why and how, and why
every crash point reloads exactly: :mod:`services.risk_gateway.compaction`.
Loading replays the snapshot and both journals, except that the old journal is
skipped when the snapshot carries the next journal's id (it holds all of it).
The files' names and JSON: :mod:`services.risk_gateway.store_format`.

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
import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from services.common.clock import Clock
from services.risk_gateway.coids import ClientOrderIds, Outcome
from services.risk_gateway.compaction import Compaction, Copier, Routing, Snapshot
from services.risk_gateway.limits import LAYERS, InstrumentLimits, RiskEngine, UserLimits
from services.risk_gateway.store_format import (
    JOURNAL_FILE,
    NEXT_JOURNAL_FILE,
    STATE_FILE,
    VERSION,
    SeriesKey,
    instrument_limits_from_json,
    instrument_limits_to_json,
    key_parts,
    outcome_from_json,
    outcome_to_json,
    user_limits_from_json,
    user_limits_to_json,
)

__all__ = ["COMPACT_BYTES", "Restored", "RiskStore"]

COMPACT_BYTES: Final = 64 << 20
"""Journal size at which the state is snapshotted and the journal truncated."""

log = logging.getLogger("optivex.risk_gateway.store")


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
        """Buffered window records for the old journal (see :class:`Routing`)."""
        self._routing: Routing | None = None
        """Set while a compaction copies the window history: which window
        records still go to the old journal."""

    # ------------------------------------------------------------------ loading

    def load(self) -> Restored:
        """Read the snapshot and replay the journals (missing files: empty state).

        The old journal is skipped when the snapshot carries the next journal's
        id: then it is the snapshot of the compaction that started that
        journal, and it holds everything the old one has
        (:mod:`services.risk_gateway.compaction`).
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
            restored.coids.add(username, client_order_id, outcome_from_json(outcome))
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
                    restored.coids.add(record[1], record[2], outcome_from_json(record[3]))
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
        snapshot = Snapshot(self.data_dir / STATE_FILE, mono, wall_ns, journal_id, engine)
        for _ in Copier(snapshot, list(engine.users()), coids, None).steps():
            pass
        snapshot.write(yield_gil=False)
        self._close_journals()
        (self.data_dir / NEXT_JOURNAL_FILE).unlink(missing_ok=True)
        self.rotated = False
        self._journal = self._start_journal(JOURNAL_FILE, mono, wall_ns, journal_id)

    def begin_compaction(self, engine: RiskEngine, coids: ClientOrderIds) -> Compaction:
        """The switch that starts a compaction while serving (see
        :mod:`services.risk_gateway.compaction`).

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
        snapshot = Snapshot(self.data_dir / STATE_FILE, mono, wall_ns, journal_id, engine)
        users = list(engine.users())
        routing = Routing(user.name for user in users)
        # If this raises, nothing has changed yet.
        journal = self._start_journal(NEXT_JOURNAL_FILE, mono, wall_ns, journal_id)
        self._old_journal, self._journal = self._journal, journal
        self.rotated = True
        self._routing = routing
        return Compaction(self, Copier(snapshot, users, coids, routing), snapshot)

    def finish_compaction(self) -> None:
        """:meth:`Compaction.write` has returned: the compaction is over (the
        journal being written is the one named ``JOURNAL_FILE`` again)."""
        self._routing = None
        self.rotated = False

    def finish_copy(self, routing: Routing | None) -> None:
        """The last step of :meth:`Compaction.copy`: window records go to the next
        journal only from here on. Writes what is still buffered for the old
        journal (normally nothing: every batch is flushed in its turn) and closes
        it; raises OSError if that write fails, RuntimeError if the compaction
        was abandoned (:meth:`compact` ran meanwhile)."""
        if self._routing is not routing:
            raise RuntimeError("the compaction was abandoned (RiskStore.compact ran)")
        self._routing = None
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
            prefix = self._prefixes[key] = '["w",' + json.dumps(list(key_parts(key))) + ","
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
        self._pending.append(_line(["C", username, client_order_id, outcome_to_json(outcome)]))

    @property
    def pending(self) -> bool:
        """Whether records are buffered (a flush would write something)."""
        return bool(self._pending or self._old_pending)

    def flush(self) -> None:
        """Write what is buffered (and fsync if configured); raises OSError on failure.

        While a compaction copies, a batch's records may be split between the
        old and the next journal: two writes (which one comes first does not
        matter, see :class:`Routing`).
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


def _write_all(journal: Any, data: bytes) -> None:
    written = journal.write(data)
    while written < len(data):  # a short write (rare for a file): the rest
        written += journal.write(data[written:])


def _line(record: list[Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
