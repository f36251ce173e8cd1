"""What the Risk Gateway store's files look like, and how a large one is written.

Shared by :mod:`services.risk_gateway.store` (journal records, loading) and
:mod:`services.risk_gateway.compaction` (the snapshot), so that both halves of
the format live in one place and neither module imports the other at run time:
the file names and the snapshot's version, the JSON form of limits,
client_order_id outcomes and series keys, and the writers that turn a ~20 MB
snapshot into text in pieces and replace the file atomically without holding
the GIL or the disk for long (see :func:`write_atomically`).

No asyncio, no protobuf: plain JSON and file I/O.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from services.risk_gateway.coids import Outcome
from services.risk_gateway.limits import InstrumentLimits, RollingLimit, UserLimits

__all__ = [
    "JOURNAL_FILE",
    "NEXT_JOURNAL_FILE",
    "STATE_FILE",
    "VERSION",
    "SeriesKey",
    "dumps",
    "entries_json",
    "instrument_limits_from_json",
    "instrument_limits_to_json",
    "json_array",
    "key_parts",
    "outcome_from_json",
    "outcome_to_json",
    "user_limits_from_json",
    "user_limits_to_json",
    "write_atomically",
]

STATE_FILE: Final = "risk_state.json"
JOURNAL_FILE: Final = "risk_journal.jsonl"
NEXT_JOURNAL_FILE: Final = "risk_journal.next.jsonl"
"""Takes new records while a background compaction writes the snapshot."""
VERSION: Final = 1
"""Of the snapshot's format (``"version"``); loading refuses any other."""

SeriesKey = tuple[str, ...]


# ---------------------------------------------------------------------- values


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


def outcome_to_json(outcome: Outcome) -> list[Any]:
    return [
        outcome.order_id,
        outcome.timestamp,
        list(outcome.trade_ids),
        outcome.traded_quantity,
        outcome.resting_quantity,
    ]


def outcome_from_json(data: Any) -> Outcome:
    return Outcome(
        int(data[0]), int(data[1]), tuple(int(t) for t in data[2]), int(data[3]), int(data[4])
    )


def key_parts(key: Hashable) -> Iterable[str]:
    """A series key (a tuple of strings, :meth:`RiskEngine.series_for`) for JSON."""
    assert isinstance(key, tuple)
    return key


# ---------------------------------------------------------------------- large files


_SYNC_EVERY: Final = 1 << 20
"""Characters of a snapshot written between two syncs (see :func:`write_atomically`)."""
_JSON_CHUNK: Final = 2000
"""Items per ``json.dumps`` call when writing a snapshot (see :func:`json_array`)."""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def json_array(items: Iterable[Any]) -> Iterator[str]:
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
            yield separator + dumps(batch)[1:-1]
            separator = ","
            batch = []
    if batch:
        yield separator + dumps(batch)[1:-1]
    yield "]"


def entries_json(entries: Iterable[tuple[float, int, int]]) -> Iterator[str]:
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


def write_atomically(path: Path, text: str | Iterable[str], yield_gil: bool = False) -> None:
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
