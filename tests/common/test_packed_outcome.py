"""Packed insert outcomes: exact round trips, and invisible to the cyclic GC."""

from __future__ import annotations

import gc
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.packed_outcome import pack_outcome, unpack_outcome
from services.risk_gateway.coids import ClientOrderIds, Outcome

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


@given(INT64, INT64, st.lists(INT64, max_size=40).map(tuple), INT32, INT32)
def test_round_trip_is_exact(
    order_id: int, timestamp: int, trade_ids: tuple[int, ...], traded: int, resting: int
) -> None:
    data = pack_outcome(order_id, timestamp, trade_ids, traded, resting)
    assert isinstance(data, bytes) and len(data) == 24 + 8 * len(trade_ids)
    assert unpack_outcome(data) == (order_id, timestamp, trade_ids, traded, resting)


def test_a_value_that_does_not_fit_is_refused_not_stored_wrongly() -> None:
    with pytest.raises(struct.error):
        pack_outcome(1, 2, (), 2**31, 0)  # quantities are int32 on the wire
    with pytest.raises(struct.error):
        pack_outcome(2**63, 2, (), 1, 0)


def test_gateway_table_answers_as_before_and_is_not_tracked() -> None:
    """The Risk Gateway's client_order_id table only grows; its per-user tables
    and entries must cost the collector's full passes nothing."""
    coids = ClientOrderIds()
    first = Outcome(7, 1_700_000_000_000_000_001, (3, 4), 2, 5)
    assert coids.add("alice", "c-1", first)
    assert not coids.add("alice", "c-1", Outcome(8, 0, (), 0, 1))  # kept as is
    for number in range(100):
        coids.add("alice", f"n-{number}", Outcome(100 + number, 5, (), 0, 1))
    gc.collect()
    coids.add("alice", "late", Outcome(1000, 6, (9,), 1, 0))
    assert coids.get("alice", "c-1") == first
    assert coids.get("alice", "late") == Outcome(1000, 6, (9,), 1, 0)
    assert coids.get("bob", "c-1") is None
    table = coids._table["alice"]  # white-box: what the collector would see
    assert not gc.is_tracked(table)
    assert not any(gc.is_tracked(value) for value in table.values())
    assert len(coids) == 102
    assert ("alice", "c-1", first) in list(coids.items())
