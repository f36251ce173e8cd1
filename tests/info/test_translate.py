"""Outbound encoding: the hand-made depth payload is byte-identical to protobuf's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.pb import info_pb2
from services.common.prices import from_ticks
from services.info.translate import depth_payload, with_sequence

levels = st.lists(
    st.tuples(st.integers(1, 2**53), st.integers(1, 2**31 - 1)),
    max_size=30,
    unique_by=lambda x: x[0],
)


@given(
    symbol=st.text(alphabet="ABCXYZ019.-", min_size=1, max_size=16),
    timestamp=st.integers(-(2**63), 2**63 - 1),
    bids=levels,
    asks=levels,
    tick=st.sampled_from([0.01, 0.05, 0.5, 1.0, 0.0001, 0.25]),
    sequence=st.integers(1, 2**62),
)
def test_depth_payload_matches_protobuf(
    symbol: str,
    timestamp: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    tick: float,
    sequence: int,
) -> None:
    view = (tuple(bids), tuple(asks))
    expected = info_pb2.OnPriceDepthBook(
        instrument_symbol=symbol,
        timestamp=timestamp,
        bids=[info_pb2.PriceLevel(price=from_ticks(p, tick), quantity=q) for p, q in bids],
        asks=[info_pb2.PriceLevel(price=from_ticks(p, tick), quantity=q) for p, q in asks],
    )
    payload = depth_payload(symbol, timestamp, view, tick)
    assert payload == expected.SerializeToString()
    expected.sequence_number = sequence
    frame = with_sequence(24, payload, sequence)
    assert frame[8:] == expected.SerializeToString()
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
