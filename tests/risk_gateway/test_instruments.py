"""The instrument directory: symbols from Info, deletions, re-creation, resync."""

from __future__ import annotations

from services.risk_gateway.instruments import InstrumentDirectory, valid_symbol
from services.risk_gateway.limits import amount_unit


def test_symbols_follow_info() -> None:
    directory = InstrumentDirectory()
    directory.added("AAPL", 1, 0.01, 0)
    instrument = directory.get("AAPL")
    assert instrument is not None and instrument.order_book_id == 1
    assert instrument.unit == amount_unit(0.01)
    directory.deleted("AAPL")
    assert directory.get("AAPL") is None
    assert directory.by_book(1) is instrument and not directory.is_live_book(1)
    directory.added("AAPL", 2, 0.05, 1)  # created again: a new book
    assert directory.get("AAPL") is directory.by_book(2)
    assert directory.is_live_book(2) and not directory.is_live_book(1)


def test_a_resync_drops_what_the_new_connection_does_not_announce() -> None:
    directory = InstrumentDirectory()
    for book, symbol in enumerate(("A", "B", "C"), 1):
        directory.added(symbol, book, 0.01, 0)
    directory.begin_resync()
    directory.added("A", 1, 0.01, 0)
    directory.added("C", 3, 0.01, 0)
    directory.added("D", 4, 0.01, 0)
    assert directory.end_resync() == ["B"]
    assert sorted(i.symbol for i in directory) == ["A", "C", "D"]


def test_symbol_syntax() -> None:
    for good in ("A", "AAPL", "BRK.B", "ES-2026", "X" * 16, "0"):
        assert valid_symbol(good)
    for bad in ("", "aapl", "X" * 17, "A B", "A_B", "É"):
        assert not valid_symbol(bad)
