"""The intent log: which lifecycle operations were in flight when Admin stopped.

Why it exists: reconciliation (``reconcile.py``) does not *need* it -- the rule
"an instrument must exist in both the Order Book and Info, or in neither" is
decided from the two services' own lists. The log makes the repairs
*explainable*: after a crash the operator reads "deleted order book 7 left by
an interrupted create of AAPL" instead of an anonymous book id, and it
survives restarts so that explanation is still available on the next start.

Format: a text file ``intents`` in the data directory, one open operation per
line, human-readable on purpose::

    create AAPL          (written before the Order Book is asked for a book)
    create AAPL 17       (the book exists; Info not yet confirmed)
    delete MSFT 4        (written before Info is asked to withdraw MSFT)

The whole file is rewritten atomically (temporary file, fsync, rename) on every
change, so a crash leaves either the old or the new version, never a torn one.
Open intents are few (one per operation in flight), so rewriting is cheap.

Pure: no asyncio, no protobuf.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from services.admin.model import BookId, Symbol, check_symbol

__all__ = ["INTENTS_FILE", "Intent", "IntentLog"]

INTENTS_FILE: Final = "intents"

Op = Literal["create", "delete"]


@dataclass(frozen=True, slots=True)
class Intent:
    """One lifecycle operation that had started and not yet finished."""

    op: Op
    symbol: Symbol
    book_id: BookId | None = None

    def render(self) -> str:
        """The intent's line in the log file."""
        book = "" if self.book_id is None else f" {self.book_id}"
        return f"{self.op} {self.symbol}{book}"

    def describe(self) -> str:
        """For log lines: ``interrupted create of 'AAPL'``."""
        return f"interrupted {self.op} of {self.symbol!r}"


def parse_line(line: str) -> Intent | str:
    """Parse one line of the log; returns the intent or why the line is invalid."""
    parts = line.split()
    if len(parts) not in (2, 3) or parts[0] not in ("create", "delete"):
        return f"unrecognised intent line {line[:80]!r}"
    op: Op = "create" if parts[0] == "create" else "delete"
    if check_symbol(parts[1]) is not None:
        return f"bad symbol in intent line {line[:80]!r}"
    book: BookId | None = None
    if len(parts) == 3:
        if not (parts[2].isascii() and parts[2].isdigit()):
            return f"bad order book id in intent line {line[:80]!r}"
        book = BookId(int(parts[2]))
    return Intent(op, Symbol(parts[1]), book)


class IntentLog:
    """Open lifecycle operations, mirrored to a file in ``data_dir``."""

    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self.path = Path(data_dir) / INTENTS_FILE
        self.fsync = fsync
        self._open: dict[int, Intent] = {}
        self._next_key = 1
        self.problems: list[str] = []
        """Lines of the file that could not be read (reported by the caller)."""

    def load(self) -> list[Intent]:
        """Read intents left by a previous run; they stay open until :meth:`clear`."""
        self.problems = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"cannot read {self.path}: {exc}")
            return []
        loaded: list[Intent] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                self.problems.append(parsed)
                continue
            loaded.append(parsed)
            self._open[self._next_key] = parsed
            self._next_key += 1
        return loaded

    def begin(self, op: Op, symbol: Symbol, book_id: BookId | None = None) -> int:
        """Record an operation before its first step; returns its key."""
        key = self._next_key
        self._next_key += 1
        self._open[key] = Intent(op, symbol, book_id)
        self._write()
        return key

    def set_book(self, key: int, book_id: BookId) -> None:
        """Record the book a create obtained (before asking Info)."""
        intent = self._open.get(key)
        if intent is not None:
            self._open[key] = replace(intent, book_id=book_id)
            self._write()

    def end(self, key: int) -> None:
        """The operation finished cleanly: forget it."""
        if self._open.pop(key, None) is not None:
            self._write()

    def open_intents(self) -> list[Intent]:
        return list(self._open.values())

    def clear(self, keys: list[int] | None = None) -> None:
        """Forget every open intent (``keys=None``) or the given ones.

        Called after a reconciliation pass has made both sides agree, which
        resolves whatever those operations left behind.
        """
        if keys is None:
            if not self._open:
                return
            self._open.clear()
        else:
            for key in keys:
                self._open.pop(key, None)
        self._write()

    def open_keys(self) -> list[int]:
        return list(self._open)

    def _write(self) -> None:
        """Replace the file atomically with the current open intents."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(intent.render() + "\n" for intent in self._open.values())
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        if self.fsync:
            with contextlib.suppress(OSError):
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
