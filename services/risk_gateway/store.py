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
took 1.3 s to build and write on the event loop (measured at 10,000 orders/s).
So it is split: :meth:`RiskStore.begin_compaction` copies the state (list and
dict copies, milliseconds) and switches new records to a second journal,
``risk_journal.next.jsonl``; the returned function builds and writes the
snapshot from the copies on a worker thread; :meth:`RiskStore.finish_compaction`
then drops the old journal and renames the second one into its place. Loading
replays both journals when both are there, so every crash point is safe: before
the new snapshot is in place, old snapshot + both journals (exact); after it,
the old journal is counted twice at worst (window records: conservative; limits
and client_order_ids: idempotent).

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
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from services.common.clock import Clock
from services.risk_gateway.coids import ClientOrderIds, Outcome
from services.risk_gateway.limits import (
    LAYERS,
    InstrumentLimits,
    RiskEngine,
    RollingLimit,
    UserLimits,
)

__all__ = ["JOURNAL_FILE", "NEXT_JOURNAL_FILE", "STATE_FILE", "Restored", "RiskStore"]

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

    # ------------------------------------------------------------------ loading

    def load(self) -> Restored:
        """Read the snapshot and replay the journal (missing files: empty state)."""
        restored = Restored()
        state_path = self.data_dir / STATE_FILE
        if state_path.exists():
            data = json.loads(state_path.read_text(encoding="utf-8"))
            if data.get("version") != VERSION:
                raise ValueError(f"{state_path}: unsupported version {data.get('version')!r}")
            self._load_snapshot(data, restored)
        for name in (JOURNAL_FILE, NEXT_JOURNAL_FILE):
            journal_path = self.data_dir / name
            if journal_path.exists():
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
        """Snapshot everything, then truncate the journal (blocking; at start and stop).

        The snapshot is in place before the journal is truncated: if writing it
        fails, the journal stays as it was (and keeps growing). A crash between
        the two replays the old journal on top of the new snapshot, which can
        only count window records twice (conservative).
        """
        if self._journal is not None:
            self.flush()
        write, mono, wall_ns = self._capture(engine, coids)
        write()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        (self.data_dir / NEXT_JOURNAL_FILE).unlink(missing_ok=True)
        self.rotated = False
        self._start_journal(JOURNAL_FILE, mono, wall_ns)

    def begin_compaction(self, engine: RiskEngine, coids: ClientOrderIds) -> Callable[[], None]:
        """The quick half of a compaction while serving (see the module docstring).

        Copies the state and sends new records to ``NEXT_JOURNAL_FILE``;
        returns the slow half, which builds and writes the snapshot from the
        copies only, so it may run on another thread. Call
        :meth:`finish_compaction` once it returned. Not while :attr:`rotated`.
        """
        if self.rotated:
            raise RuntimeError("a compaction is already under way")
        if self._journal is not None:
            self.flush()
        write, mono, wall_ns = self._capture(engine, coids)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.rotated = True
        self._start_journal(NEXT_JOURNAL_FILE, mono, wall_ns)
        return write

    def finish_compaction(self) -> None:
        """The new snapshot is in place: the old journal goes, the next takes its name."""
        (self.data_dir / JOURNAL_FILE).unlink(missing_ok=True)
        os.replace(self.data_dir / NEXT_JOURNAL_FILE, self.data_dir / JOURNAL_FILE)
        self.rotated = False  # the open file follows the rename

    def _start_journal(self, name: str, mono: float, wall_ns: int) -> None:
        # Unbuffered bytes: each flush is one write(2) of the batch's lines, without
        # the text layer and its buffer in between (those cost more than the call).
        self._journal = open(self.data_dir / name, "wb", buffering=0)  # noqa: SIM115
        self.journal_bytes = 0
        self._pending = [_line(["E", mono, wall_ns])]
        self.flush()

    def _capture(
        self, engine: RiskEngine, coids: ClientOrderIds
    ) -> tuple[Callable[[], None], float, int]:
        """Copies of the state (cheap: list and dict copies) and the function that
        writes them as the snapshot (dear: ~1 s for a busy minute's windows)."""
        mono, wall_ns = self.clock.monotonic(), self.clock.now_ns()
        user_limits = {
            layer: {u: user_limits_to_json(lim) for u, lim in engine.user_limits[layer].items()}
            for layer in LAYERS
        }
        instrument_limits = {
            layer: {
                u: {s: instrument_limits_to_json(lim) for s, lim in by_symbol.items()}
                for u, by_symbol in engine.instrument_limits[layer].items()
            }
            for layer in LAYERS
        }
        coid_table = coids.copy()
        series = [(list(_key(s.key)), s.copy_entries()) for s in engine.series() if len(s)]
        path = self.data_dir / STATE_FILE

        def write() -> None:
            head = {
                "version": VERSION,
                "epoch": [mono, wall_ns],
                "user_limits": user_limits,
                "instrument_limits": instrument_limits,
            }
            coid_items = (
                [u, c, _outcome_to_json(o)]
                for u, table in coid_table.items()
                for c, o in table.items()
            )

            def pieces() -> Iterator[str]:
                yield _dumps(head)[:-1] + ',"coids":'
                yield from _json_array(coid_items)
                yield ',"series":['
                for number, (key, entries) in enumerate(series):
                    yield ("," if number else "") + "[" + _dumps(key) + ","
                    yield from _entries_json(entries)
                    yield "]"
                yield "]}"

            _write_atomically(path, pieces(), yield_gil=True)

        return write, mono, wall_ns

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
        return bool(self._pending)

    def flush(self) -> None:
        """Write what is buffered (and fsync if configured); raises OSError on failure."""
        if not self._pending or self._journal is None:
            return
        data = "".join(self._pending).encode()
        self._pending = []
        journal = self._journal
        written = journal.write(data)
        while written < len(data):  # a short write (rare for a file): the rest
            written += journal.write(data[written:])
        if self.fsync:
            os.fsync(self._journal.fileno())
        self.journal_bytes += len(data)

    def discard_pending(self) -> None:
        """Drop buffered records (their request was refused before being forwarded)."""
        self._pending = []

    def close(self, engine: RiskEngine, coids: ClientOrderIds) -> None:
        """Final snapshot (so the next start replays nothing) and close."""
        if self._journal is None:
            return
        try:
            self.compact(engine, coids)
        finally:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


def _key(key: Hashable) -> Iterable[str]:
    assert isinstance(key, tuple)
    return key


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
