"""Output of the admin CLI: aligned tables for people, stable JSON for scripts.

Why one module: every command prints the same kinds of things (instruments,
figures, limits) and the JSON keys are an interface scripts depend on, so they
are defined once, here, and documented in docs/admin.md.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.admin.model import PriceRule

__all__ = [
    "dump_json",
    "format_float",
    "format_timestamp",
    "instrument_json",
    "instruments_table",
    "key_value_table",
    "price_rule_label",
    "rolling_text",
    "table",
]


def dump_json(value: Any) -> str:
    """Compact-but-readable, key-sorted JSON (stable for diffs and scripts)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def format_float(value: float) -> str:
    """The shortest text that reads back as ``value`` (``100`` not ``100.0``)."""
    if not math.isfinite(value):
        return str(value)
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch as UTC, to the millisecond; ``-`` for none."""
    if ns <= 0:
        return "-"
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def price_rule_label(value: int) -> str:
    try:
        return PriceRule(value).label
    except ValueError:
        return f"unknown({value})"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing blanks."""
    rows = [list(row) for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def key_value_table(pairs: Mapping[str, str]) -> str:
    width = max((len(k) for k in pairs), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in pairs.items())


def instrument_json(entry: Any) -> dict[str, Any]:
    """An ``OnInstrument`` as the stable JSON object of ``list --json``."""
    return {
        "symbol": entry.instrument.symbol,
        "description": entry.instrument.description,
        "currency": entry.instrument.currency,
        "multiplier": entry.instrument.multiplier,
        "tick_size": entry.tick_size,
        "price_rule": price_rule_label(int(entry.price_rule)),
        "order_book_id": entry.order_book_id,
        "created_timestamp": entry.created_timestamp,
    }


def instruments_table(entries: Sequence[Any]) -> str:
    if not entries:
        return "no instruments"
    rows = [
        [
            e.instrument.symbol,
            str(e.order_book_id),
            format_float(e.tick_size),
            price_rule_label(int(e.price_rule)),
            e.instrument.currency or "-",
            format_float(e.instrument.multiplier),
            format_timestamp(e.created_timestamp),
            e.instrument.description,
        ]
        for e in entries
    ]
    headers = ["SYMBOL", "BOOK", "TICK", "RULE", "CURRENCY", "MULT", "CREATED", "DESCRIPTION"]
    return table(headers, rows)


def rolling_text(limit: float, window: int) -> str:
    """``100/1s``, or ``none`` when either part is 0 (PROTOCOL.md: 0 means no limit)."""
    if not limit or not window:
        return "none"
    return f"{format_float(limit)}/{window}s"
