"""``optivex admin bootstrap FILE``: list every instrument of a listings CSV.

The file is in the public ``nasdaq-listings`` format: a header with ``Symbol``
and ``Company Name`` (other columns are ignored), one listing per row. The
company name becomes the description; tick size, price rule, currency and
multiplier come from options (defaults 0.01, resting, USD, 1).

What happens to each row, in file order:

* a symbol the protocol does not allow (``BRK/B``, ``abc``, 17+ characters)
  is *skipped* with a warning, as is a repeat of a symbol earlier in the file;
* a symbol that is already live is reported as *existing* (not an error, so a
  bootstrap can be re-run safely);
* everything else is created; a refusal is reported as *failed* and the run
  goes on. The exit status is 1 if anything failed, 3 if the connection broke.

Creates are pipelined (``--concurrency`` in flight, default 16): the Admin
service runs creates of different symbols concurrently, so thousands of
listings take seconds, not minutes. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from clients import admin_cli_format as fmt
from clients.admin_cli_common import PROG, Command, Target, UsageError
from clients.wireclient import WireClientError
from services.admin.model import MAX_DESCRIPTION_CHARS, PriceRule, check_symbol
from services.common.pb import admin_pb2, common_pb2

__all__ = ["BootstrapReport", "ListingRow", "Progress", "add_command", "read_listings"]

MT = common_pb2.MessageType
SYMBOL_COLUMN = "Symbol"
NAME_COLUMN = "Company Name"
PRICE_RULES = {rule.label: rule for rule in PriceRule}


@dataclass(frozen=True, slots=True)
class ListingRow:
    line: int
    symbol: str
    name: str


def read_listings(path: Path) -> list[ListingRow]:
    """The rows of a listings CSV; a missing file or column is a usage error."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]
            missing = [c for c in (SYMBOL_COLUMN, NAME_COLUMN) if c not in header]
            if missing:
                raise UsageError(
                    f"{path}: not a listings file (no {', '.join(repr(m) for m in missing)} "
                    f"column in the header; expected '{SYMBOL_COLUMN},{NAME_COLUMN}')"
                )
            symbol_at, name_at = header.index(SYMBOL_COLUMN), header.index(NAME_COLUMN)
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                symbol = cells[symbol_at].strip() if symbol_at < len(cells) else ""
                name = cells[name_at].strip() if name_at < len(cells) else ""
                rows.append(ListingRow(reader.line_num, symbol, name))
            return rows
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: not a readable CSV file ({exc})") from None


@dataclass
class BootstrapReport:
    created: list[dict[str, Any]] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"bootstrap: {len(self.created)} created, {len(self.existing)} existing, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "existing": self.existing,
            "skipped": self.skipped,
            "failed": self.failed,
            "counts": {
                "created": len(self.created),
                "existing": len(self.existing),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
            },
        }


class Progress:
    """A counter on stderr: one rewritten line on a terminal, else a line per 10%."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.done = 0
        self._last_draw = 0.0
        self._next_step = 1

    def advance(self) -> None:
        self.done += 1
        if self.total == 0:
            return
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._last_draw = now
                self.stream.write(f"\rbootstrap: {self.done}/{self.total}")
                self.stream.flush()
        elif self.total >= 50 and self.done * 10 >= self._next_step * self.total:
            while self.done * 10 >= self._next_step * self.total:
                self._next_step += 1
            print(f"bootstrap: {self.done}/{self.total}", file=self.stream)

    def finish(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


def _plan(rows: list[ListingRow], live: set[str], report: BootstrapReport) -> list[ListingRow]:
    """Sort rows into skipped / existing / to create, warning about skips on stderr."""
    seen: set[str] = set()
    todo = []
    for row in rows:
        problem = check_symbol(row.symbol)
        if problem is None and row.symbol in seen:
            problem = "repeated earlier in the file"
        if problem is not None:
            report.skipped.append({"symbol": row.symbol, "line": row.line, "reason": problem})
            print(f"{PROG}: warning: line {row.line}: skipping: {problem}", file=sys.stderr)
            continue
        seen.add(row.symbol)
        if row.symbol in live:
            report.existing.append(row.symbol)
            continue
        todo.append(row)
    return todo


def _request(row: ListingRow, args: argparse.Namespace) -> admin_pb2.CreateInstrumentRequest:
    return admin_pb2.CreateInstrumentRequest(
        instrument=common_pb2.Instrument(
            symbol=row.symbol,
            description=row.name[:MAX_DESCRIPTION_CHARS],
            currency=args.currency,
            multiplier=args.multiplier,
        ),
        tick_size=args.tick_size,
        price_rule=int(PRICE_RULES[args.price_rule]),  # type: ignore[arg-type]
    )


async def cmd_bootstrap(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    rows = read_listings(Path(args.file))
    report = BootstrapReport()
    async with await target.admin() as client:
        listed = await client.call(
            MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
        )
        todo = _plan(rows, {e.instrument.symbol for e in listed.instruments}, report)
        progress = Progress(len(todo), sys.stderr)
        pending: deque[tuple[ListingRow, Any]] = deque()

        async def settle() -> None:
            row, future = pending.popleft()
            response = await client.result(future)
            progress.advance()
            if not response.error_message:
                report.created.append(
                    {"symbol": row.symbol, "order_book_id": response.order_book_id}
                )
                if not target.json:
                    print(f"created {row.symbol} (order book {response.order_book_id})", file=out)
            elif response.error_message.endswith("already exists"):
                report.existing.append(row.symbol)  # created meanwhile by someone else
            else:
                report.failed.append({"symbol": row.symbol, "error": response.error_message})
                print(f"{PROG}: failed {row.symbol}: {response.error_message}", file=sys.stderr)

        try:
            for row in todo:
                if len(pending) >= args.concurrency:
                    await settle()
                pending.append(
                    (row, client.submit(MT.ADMIN_CREATE_INSTRUMENT_REQUEST, _request(row, args)))
                )
            while pending:
                await settle()
        except WireClientError:
            progress.finish()
            print(f"{PROG}: {report.summary()} before the error below", file=sys.stderr)
            raise
        progress.finish()
    if target.json:
        print(fmt.dump_json(report.as_json()), file=out)
    else:
        for symbol in report.existing:
            print(f"exists  {symbol}", file=out)
    print(f"{PROG}: {report.summary()}", file=sys.stderr)
    return 1 if report.failed else 0


def add_command(command: Any) -> None:
    """Add ``bootstrap`` to the admin CLI's parser (``command`` makes a subparser)."""
    run: Command = cmd_bootstrap
    sub: argparse.ArgumentParser = command(
        "bootstrap", run, "create every instrument of a listings CSV (nasdaq-listings format)"
    )
    sub.add_argument("file", metavar="FILE", help="CSV with 'Symbol' and 'Company Name' columns")
    sub.add_argument("--tick-size", type=float, default=0.01, metavar="X", help="default 0.01")
    sub.add_argument("--price-rule", choices=sorted(PRICE_RULES), default="resting")
    sub.add_argument("--currency", default="USD")
    sub.add_argument("--multiplier", type=float, default=1.0)
    sub.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="creates in flight (default 16)"
    )
