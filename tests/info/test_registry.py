"""Instrument rules, the persisted form, and the atomic store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.info.registry import Instrument, Registry, RegistryError, check_symbol
from services.info.store import FILE_NAME, RegistryStore


def make(symbol: str = "ABC", book: int = 1, tick: float = 0.01) -> Instrument:
    return Instrument(symbol, "desc", "EUR", 1.0, tick, book, 0, 123)


@pytest.mark.parametrize("symbol", ["A", "ABC", "BRK.B", "X-1", "0123456789ABCDEF"])
def test_valid_symbols(symbol: str) -> None:
    assert check_symbol(symbol) is None


@pytest.mark.parametrize("symbol", ["", "abc", "A B", "A_B", "0123456789ABCDEFG", "É", "A\n"])
def test_invalid_symbols(symbol: str) -> None:
    assert check_symbol(symbol) is not None


@given(st.text(max_size=20))
def test_symbol_rule_is_exactly_the_protocol(symbol: str) -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
    expected = 1 <= len(symbol) <= 16 and set(symbol) <= allowed
    assert (check_symbol(symbol) is None) == expected


def test_check_new_rules() -> None:
    registry = Registry()
    assert registry.check_new("ABC", 0.01, 1.0, 1) is None
    registry.add(make())
    assert "already exists" in (registry.check_new("ABC", 0.01, 1.0, 2) or "")
    assert "already belongs to instrument ABC" in (registry.check_new("XYZ", 0.01, 1.0, 1) or "")
    for tick in (0.0, -0.01, math.nan, math.inf):
        assert "tick_size" in (registry.check_new("XYZ", tick, 1.0, 2) or "")
    assert "multiplier" in (registry.check_new("XYZ", 0.01, math.nan, 2) or "")
    assert "multiplier" in (registry.check_new("XYZ", 0.01, -1.0, 2) or "")
    assert registry.check_new("XYZ", 0.01, 0.0, 2) is None  # unset multiplier is fine
    assert "order_book_id" in (registry.check_new("XYZ", 0.01, 1.0, 0) or "")


def test_remove_frees_symbol_and_book() -> None:
    registry = Registry()
    registry.add(make())
    assert registry.remove("ABC") is not None
    assert registry.remove("ABC") is None
    assert registry.by_book(1) is None
    assert registry.check_new("ABC", 0.01, 1.0, 1) is None


def test_round_trip_keeps_order_and_stats() -> None:
    registry = Registry()
    for index, symbol in enumerate(["ZZZ", "AAA", "MMM"], start=1):
        registry.add(make(symbol, index))
    registry.get("AAA").stats.record(101, 5, 77)  # type: ignore[union-attr]
    again = Registry.from_dict(json.loads(json.dumps(registry.to_dict())))
    assert [i.symbol for i in again] == ["ZZZ", "AAA", "MMM"]
    stats = again.get("AAA").stats  # type: ignore[union-attr]
    assert (stats.trade_count, stats.last_price_ticks, stats.traded_volume) == (1, 101, 5)


@pytest.mark.parametrize(
    "data",
    [
        {"version": 99, "instruments": []},
        {"version": 1},
        {"version": 1, "instruments": [{"symbol": "ABC"}]},
        {"version": 1, "instruments": [make("bad symbol").to_dict()]},
        {"version": 1, "instruments": [make().to_dict(), make().to_dict()]},
        [],
    ],
)
def test_from_dict_refuses_bad_data(data: object) -> None:
    with pytest.raises(RegistryError):
        Registry.from_dict(data)  # type: ignore[arg-type]


def test_store_round_trip_is_atomic(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "info")
    assert len(store.load()) == 0
    registry = Registry()
    registry.add(make())
    store.save(registry)
    assert [p.name for p in (tmp_path / "info").iterdir()] == [FILE_NAME]
    assert [i.symbol for i in store.load()] == ["ABC"]


def test_store_refuses_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(OSError, match="cannot load the instrument registry"):
        RegistryStore(tmp_path).load()


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    old_registry = Registry()
    old_data, old_number = store.encode(old_registry)
    registry = Registry()
    registry.add(make())
    store.save(registry)  # newer snapshot written first
    store.write(old_data, old_number)  # the slow, older write lands afterwards
    assert [i.symbol for i in store.load()] == ["ABC"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_stale_temporary_files_are_removed_on_load(tmp_path: Path) -> None:
    (tmp_path / f".{FILE_NAME}.7.tmp").write_text("{", encoding="utf-8")
    assert len(RegistryStore(tmp_path).load()) == 0
    assert list(tmp_path.iterdir()) == []
