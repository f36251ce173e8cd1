"""flash1 reference workloads: reader and report-stream adapter for the Optivex engine.

Why: 247 engines have been run on these five streams and their report streams hash
to published SHA-256 values (see ``../shared/bench/flash1/README.md``). Replaying
them through :class:`services.order_book.engine.Engine` and matching the hash is the
strongest end-to-end correctness check we have for price-time matching, cancel and
modify; the same replay, timed, is our matching benchmark. The test
(``tests/order_book/test_flash1.py``) and the benchmark (``bench/engine_bench.py``)
share this module so that they measure exactly what they check.

The adapter is deliberately thin: it maps the workload's client order ids (which may
be reused once an order is gone) to engine order ids, calls the engine with the
workload's price ticks directly (one book, tick 0.005), derives every report from the
engine's results and ``OnTrade`` events, and streams the lines into SHA-256 in
chunks instead of building one giant string.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple, TypeAlias

from services.order_book.engine import Engine
from services.order_book.events import RESTING_ORDER_PRICE, OnTrade

__all__ = [
    "MAGIC",
    "PUBLISHED_SHA256",
    "RECORD",
    "SCENARIOS",
    "TICK_SIZE",
    "Record",
    "ReplayResult",
    "ReportHasher",
    "flash1_dir",
    "load_records",
    "parse_records",
    "replay",
]

#: The five scenarios, in the README's order; file name is f"{name}.bin.xz".
SCENARIOS: Final = ("static", "normal", "swing-25", "swing-40", "flash-crash")

PUBLISHED_SHA256: Final = {
    "static": "9803843ee404fc29c9a0aa5614f8f0d5a58b5c44fcac9ef89067886fcaaa30d1",
    "normal": "e9b2e3926854410b01a035aeb25dd05f1e597c233be8263de9eb49b6713d367e",
    "swing-25": "61a84be9469661bd039e00dbc9a7c011e70b6ace37aadfe60045ea083b05f4df",
    "swing-40": "3cb0175e7982ff09ea220d1feaee3844cf9116a5ce455757879dea1d880b9b9f",
    "flash-crash": "cff8d3f94b709fc64a8b2058a6ca4fb6920364904796e46906895e362d2bb16b",
}

#: Header: u64 magic, u32 version, u32 count (little-endian).
HEADER: Final = struct.Struct("<QII")
#: Record: type, side, ioc, pad, quantity, sequence_number, order_id, price_ticks, reserved.
RECORD: Final = struct.Struct("<BBBxIQQqq")
MAGIC: Final = 0x4D4542575F303031  # b"100_WBEM" read little-endian
TICK_SIZE: Final = 0.005

NEW: Final = 0
CANCEL: Final = 1
MODIFY: Final = 2

#: (type, side, ioc, quantity, sequence_number, order_id, price_ticks, reserved)
Record: TypeAlias = tuple[int, int, int, int, int, int, int, int]

# Messages per chunk: lines are hashed and events drained once per chunk.
_CHUNK: Final = 16384


def flash1_dir() -> Path:
    """Folder of the workloads: $OPTIVEX_FLASH1_DIR, else ../shared/bench/flash1."""
    override = os.environ.get("OPTIVEX_FLASH1_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "flash1"


def parse_records(data: bytes) -> list[Record]:
    """Decode a decompressed workload: check the header, unpack every record."""
    if len(data) < HEADER.size:
        raise ValueError("flash1 file too short for its header")
    magic, version, count = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != 1:
        raise ValueError(f"not a flash1 v1 file (magic {magic:#x}, version {version})")
    body = memoryview(data)[HEADER.size :]
    if len(body) != count * RECORD.size:
        raise ValueError(f"flash1 body has {len(body)} bytes, header promises {count} records")
    records: list[Record] = list(RECORD.iter_unpack(body))
    return records


def load_records(name: str, folder: Path | None = None) -> list[Record]:
    """Read, decompress and decode ``<name>.bin.xz`` (about 2 M records)."""
    path = (folder or flash1_dir()) / f"{name}.bin.xz"
    return parse_records(lzma.decompress(path.read_bytes()))


class ReportHasher:
    """SHA-256 of report lines joined by "\\n" (no trailing newline), streamed."""

    __slots__ = ("_digest", "_first", "lines")

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._first = True
        self.lines: list[str] = []

    def flush(self) -> None:
        """Hash the buffered lines (callers flush every few thousand lines)."""
        lines = self.lines
        if not lines:
            return
        if not self._first:
            self._digest.update(b"\n")
        self._first = False
        self._digest.update("\n".join(lines).encode())
        lines.clear()

    def hexdigest(self) -> str:
        """Flush and return the digest of everything so far."""
        self.flush()
        return self._digest.hexdigest()


class ReplayResult(NamedTuple):
    """Outcome of one replay: the report hash and what the engine did."""

    sha256: str
    messages: int
    reports: int
    trades: int
    events: int


def replay(records: Sequence[Record]) -> ReplayResult:
    """Drive a fresh engine with a workload and hash its report stream.

    ``seq`` doubles as the engine timestamp, which makes the run deterministic. Every
    engine event is drained as the replay goes (those of trading messages at once,
    the rest once per chunk), as a service publishing them would.
    """
    engine = Engine()
    book = engine.create_book(TICK_SIZE, RESTING_ORDER_PRICE, 0).order_book_id
    insert = engine.insert
    cancel = engine.cancel
    amend = engine.amend
    drain = engine.drain_events
    events = len(drain())  # OnOrderBookCreated
    client_of: list[int] = [0]  # engine order id -> client order id (engine ids are dense)
    add_client = client_of.append
    engine_of: dict[int, int] = {}  # client order id -> engine id of its live order
    live_pop = engine_of.pop
    live_get = engine_of.get
    hasher = ReportHasher()
    lines = hasher.lines
    push = lines.append
    reports = 0
    trades = 0
    trade_type = OnTrade
    for start in range(0, len(records), _CHUNK):
        for kind, side, ioc, quantity, seq, cid, price, _reserved in records[
            start : start + _CHUNK
        ]:
            if kind == 0:  # NEW
                _, order_id, _, trade_ids, traded, resting = insert(
                    book, "", side, price, quantity, ioc, "", seq
                )
                add_client(cid)
                push(f"0,{seq},{side},{cid},{price},{quantity}")
                if trade_ids:
                    drained = drain()
                    events += len(drained)
                    taken = len(trade_ids)
                    trades += taken
                    for event in drained[-taken - 1 :]:
                        if type(event) is trade_type:
                            maker = event.sell_order_id if side == 0 else event.buy_order_id
                            push(
                                f"1,{seq},{event.price_ticks},{event.quantity},"
                                f"{client_of[maker]},{cid}"
                            )
                if resting:
                    engine_of[cid] = order_id
                elif ioc and traded < quantity:
                    push(f"2,{seq},{side},{cid},{price}")
            elif kind == 1:  # CANCEL
                error, _, side, price = cancel(book, live_pop(cid, 0), "", seq)
                if error:
                    push(f"4,{seq},{cid}")
                else:
                    push(f"2,{seq},{side},{cid},{price}")
            elif kind == 2:  # MODIFY
                error, _, trade_ids, _, resting, side = amend(
                    book, live_get(cid, 0), "", price, quantity, seq
                )
                if error:
                    push(f"5,{seq},{cid}")
                    continue
                if trade_ids:
                    drained = drain()
                    events += len(drained)
                    taken = len(trade_ids)
                    trades += taken
                    for event in drained[-taken:]:
                        if type(event) is trade_type:
                            maker = event.sell_order_id if side == 0 else event.buy_order_id
                            push(
                                f"1,{seq},{event.price_ticks},{event.quantity},"
                                f"{client_of[maker]},{cid}"
                            )
                push(f"3,{seq},{side},{cid},{price},{quantity}")
                if not resting:
                    del engine_of[cid]
            else:
                raise ValueError(f"unknown flash1 message type {kind} at seq {seq}")
        reports += len(lines)
        hasher.flush()
        events += len(drain())
    return ReplayResult(hasher.hexdigest(), len(records), reports, trades, events)
