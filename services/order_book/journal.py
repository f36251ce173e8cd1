"""The Order Book's command journal: the exchange's memory across restarts.

The engine is deterministic: its state is a pure function of the commands it
accepted, in order, with their timestamps.  So the journal stores exactly that,
one record per accepted command, and a restart replays it into a fresh engine to
reach the same books, resting orders, ids and sequence numbers.

Record layout (all big-endian)::

    u32 length   bytes after the 8-byte record header
    u32 crc32    zlib.crc32 of those bytes
    u16 kind     the request's MessageType
    i64 timestamp  the time the engine used for the command
    ...          the request's protobuf payload

A record is appended *before* the response or events of its command leave the
process; :meth:`Journal.commit` writes the batch gathered in one event-loop turn
and, with the default ``batch`` policy, fsyncs once for all of it.  On open, a
torn or corrupt tail (a crash mid-write, a flipped bit) is detected by length
and CRC, truncated away and logged; everything before it is kept.

This module does file I/O only; it knows nothing of protobuf or asyncio.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal, NamedTuple

FsyncPolicy = Literal["batch", "always", "none"]

RECORD_HEADER: Final = struct.Struct(">II")
BODY_HEADER: Final = struct.Struct(">Hq")
MAX_RECORD: Final = 16 << 20
"""Sanity bound: a length above this can only be corruption."""
FILE_NAME: Final = "journal.bin"

log = logging.getLogger("optivex.order_book.journal")


class Record(NamedTuple):
    """One journaled command."""

    kind: int
    timestamp: int
    payload: bytes


def encode_record(kind: int, timestamp: int, payload: bytes) -> bytes:
    """Bytes of one record (header, CRC and body)."""
    body = BODY_HEADER.pack(kind, timestamp) + payload
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def scan(data: bytes) -> tuple[list[Record], int, str]:
    """Parse records from ``data``; returns them, the length of the valid prefix,
    and why parsing stopped early ("" when the whole buffer was valid)."""
    records: list[Record] = []
    pos = 0
    end = len(data)
    header = RECORD_HEADER.size
    while pos < end:
        if end - pos < header:
            return records, pos, f"torn record header at offset {pos}"
        length, crc = RECORD_HEADER.unpack_from(data, pos)
        if length < BODY_HEADER.size or length > MAX_RECORD:
            return records, pos, f"impossible record length {length} at offset {pos}"
        start = pos + header
        stop = start + length
        if stop > end:
            return records, pos, f"torn record at offset {pos} ({end - start} of {length} bytes)"
        body = data[start:stop]
        if zlib.crc32(body) != crc:
            return records, pos, f"CRC mismatch in record at offset {pos}"
        kind, timestamp = BODY_HEADER.unpack_from(body)
        records.append(Record(kind, timestamp, body[BODY_HEADER.size :]))
        pos = stop
    return records, pos, ""


class Journal:
    """Append-only journal file with group commit."""

    def __init__(self, directory: Path, fsync: FsyncPolicy = "batch") -> None:
        self.path = Path(directory) / FILE_NAME
        self.fsync = fsync
        self._pending: list[bytes] = []
        self._fd = -1
        self.records_written = 0

    def open(self) -> list[Record]:
        """Open (creating it and its folder), repair a bad tail, return all records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        records, valid, problem = scan(data)
        if problem:
            log.warning(
                "journal %s: %s; truncating %d bytes after %d good records",
                self.path,
                problem,
                len(data) - valid,
                len(records),
            )
            with open(self.path, "r+b") as f:
                f.truncate(valid)
                f.flush()
                os.fsync(f.fileno())
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._sync_directory()
        return records

    def append(self, kind: int, timestamp: int, payload: bytes) -> None:
        """Queue one record for the next :meth:`commit` (nothing is written yet)."""
        self._pending.append(encode_record(kind, timestamp, payload))

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def commit(self) -> None:
        """Write every queued record, then fsync per policy; raises ``OSError``."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        fd = self._fd
        if self.fsync == "always":
            for record in pending:
                _write_all(fd, record)
                os.fsync(fd)
        else:
            _write_all(fd, pending[0] if len(pending) == 1 else b"".join(pending))
            if self.fsync == "batch":
                os.fdatasync(fd)
        self.records_written += len(pending)

    def close(self) -> None:
        """Commit what is queued and close the file."""
        if self._fd >= 0:
            self.commit()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _sync_directory(self) -> None:
        """Make the file's creation itself durable."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def iter_records(path: Path) -> Iterator[Record]:
    """Read a journal file without repairing it (for tools and tests)."""
    records, _, _ = scan(path.read_bytes())
    yield from records
