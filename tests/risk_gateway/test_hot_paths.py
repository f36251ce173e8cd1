"""The shortcuts taken on the Gateway's per-order path (issue #9) change nothing.

Each shortcut is compared with the plain computation it replaces: the inline
sequence check of ``translate.apply_event`` with ``OrderTable.sequence``, the
price memos with ``to_ticks``, the memo of valid symbols with the pattern, and
the journal (now written as bytes, unbuffered) with what older Gateways wrote
(text), which must still replay.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.clock import ManualClock
from services.common.pb import order_book_pb2
from services.common.prices import PriceError, tick_memo, to_ticks
from services.risk_gateway import execution, instruments, translate
from services.risk_gateway.limits import RiskEngine, Ticket
from services.risk_gateway.orders import OrderTable
from services.risk_gateway.store import RiskStore
from services.risk_gateway.store_format import JOURNAL_FILE
from tests.risk_gateway.test_store import started

EXAMPLES = settings(derandomize=True, max_examples=200, deadline=None, database=None)
pb = order_book_pb2


# ---------------------------------------------------------------------- events


@EXAMPLES
@given(st.lists(st.one_of(st.just(0), st.integers(1, 12)), max_size=30))
def test_the_inline_sequence_check_is_order_tables(numbers: list[int]) -> None:
    """Gaps, snapshot-after-live and the last number seen agree for any stream."""
    applied = OrderTable(RiskEngine(ManualClock().monotonic).exposure)
    reference = OrderTable(RiskEngine(ManualClock().monotonic).exposure)
    for number in numbers:
        event = pb.OnOrderBookCreated(order_book_id=1, tick_size=0.01, sequence_number=number)
        effect = translate.apply_event(applied, translate.ON_BOOK_CREATED, event)
        assert effect.in_sequence == reference.sequence(number)
        assert applied.last_sequence == reference.last_sequence


def test_prices_are_remembered_per_book() -> None:
    """The same price is a different number of ticks in books of different tick
    sizes, and a book created again with another tick size starts afresh."""
    risk = RiskEngine(ManualClock().monotonic)
    table = OrderTable(risk.exposure)
    table.book_created(1, 0.01)
    table.book_created(2, 0.5)
    table.inserted(10, 1, 0, 2.5, 3, "alice", 0, False)
    table.inserted(11, 2, 0, 2.5, 3, "alice", 0, False)
    table.inserted(12, 1, 0, 2.5, 3, "bob", 0, False)
    first, second, third = table.get(10), table.get(11), table.get(12)
    assert first is not None and second is not None and third is not None
    assert (first.price_ticks, second.price_ticks, third.price_ticks) == (250, 5, 250)
    assert first.unit_price == third.unit_price == 250 * 10**10
    table.book_created(1, 0.1)
    table.inserted(13, 1, 0, 2.5, 3, "alice", 0, False)
    fourth = table.get(13)
    assert fourth is not None and fourth.price_ticks == 25
    # One exposure object per (owner, book), shared with the engine.
    assert first.exposure is fourth.exposure is risk.exposure("alice", 1)
    assert risk.exposure("alice", 1).quantity == 6


# ---------------------------------------------------------------------- requests


@EXAMPLES
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-5, 10**6).map(lambda k: round(k * 0.01, 10)),
        st.sampled_from([0.0, -0.0, 100.05, 100.055, 1e-12, math.inf]),
    ),
    st.sampled_from([0.01, 0.05, 0.5, 1.0, 1e-12]),
)
def test_the_request_price_memo_is_to_ticks(price: float, tick_size: float) -> None:
    for _ in range(2):  # the second time from the memo, if it was accepted
        got, expected = execution._ticks(price, tick_size), to_ticks(price, tick_size)
        if isinstance(expected, PriceError):
            assert isinstance(got, PriceError) and got.message == expected.message
        else:
            assert got == expected


def test_refused_prices_are_not_remembered() -> None:
    assert isinstance(execution._ticks(100.005, 0.01), PriceError)
    assert 100.005 not in tick_memo(0.01)
    assert isinstance(execution._ticks(math.nan, 0.01), PriceError)


def test_the_valid_symbol_memo_is_the_pattern() -> None:
    for symbol in ["AAPL", "BRK.B", "X-1", "A" * 16, "A" * 17, "aapl", "", "A B", "É"]:
        expected = instruments._SYMBOL_RE.fullmatch(symbol) is not None
        assert instruments.valid_symbol(symbol) == expected
        assert instruments.valid_symbol(symbol) == expected  # from the memo
    assert "aapl" not in instruments._VALID


# ---------------------------------------------------------------------- the journal


def test_a_journal_written_as_text_by_an_older_gateway_replays(tmp_path: Path) -> None:
    """Older Gateways wrote the journal through a text file; the lines are the same."""
    clock = ManualClock()
    mono, wall = clock.monotonic(), clock.now_ns()
    lines = [
        ["E", mono, wall],
        ["w", ["m", "zoë"], mono - 1.0, 1, 0],
        ["w", ["o", "zoë", "AAPL"], mono - 1.0, 7, 700],
        ["w", ["m", "zoë"], mono - 0.5, 1, 0],
        ["C", "zoë", "c-1", [5, 99, [1], 2, 5]],
    ]
    text = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in lines)
    with open(tmp_path / JOURNAL_FILE, "w", encoding="utf-8") as handle:
        handle.write(text)
    restored = RiskStore(tmp_path, clock).load()
    assert [v for _, v, _ in restored.series[("m", "zoë")]] == [1, 1]
    assert restored.series[("o", "zoë", "AAPL")][0][1:] == (7, 700)
    assert restored.coids.get("zoë", "c-1") is not None


def test_the_journal_is_utf8_lines_and_counts_its_bytes(tmp_path: Path) -> None:
    clock = ManualClock()
    engine, _, store = started(tmp_path, clock)
    assert isinstance(engine.check_insert("zoë", "AAPL", 1, 3, 10), Ticket)
    store.flush()
    data = (tmp_path / JOURNAL_FILE).read_bytes()
    assert store.journal_bytes == len(data)
    records = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert [r[0] for r in records] == ["E", "w", "w"]
    assert records[1][1] == ["m", "zoë"] and records[2][1] == ["o", "zoë", "AAPL"]
    # And it replays after a crash (no close()).
    engine2, _, _ = started(tmp_path, clock)
    series = {s.key: s for s in engine2.series()}
    assert len(series[("m", "zoë")]) == 1 and len(series[("o", "zoë", "AAPL")]) == 1
