"""Rolling-window series: expiry boundary, merging, un-recording, views added later,
compaction, and a property test of every view against a naive recomputation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.risk_gateway.windows import FINE_MIN_S, RESOLUTION_S, Series


def naive(records: list[tuple[float, int]], window: float, now: float) -> int:
    return sum(v for t, v in records if t > now - window)


def test_an_entry_counts_until_exactly_its_window_has_passed() -> None:
    series = Series("k", keep_s=3600)
    (view,) = series.set_windows([10], now=0.0).values()
    series.add(0.0, 5)
    assert series.total(view, 9.999) == 5
    assert series.total(view, 10.0) == 0  # "within the last 10 s" excludes 10 s ago


def test_entries_closer_than_the_resolution_merge_and_expire_with_the_later_one() -> None:
    series = Series("k", keep_s=3600)
    (view,) = series.set_windows([1], now=0.0).values()
    first = series.add(0.0, 1)
    second = series.add(RESOLUTION_S / 2, 2)
    assert first == second and len(series) == 1
    # Stamped with the later time: conservative (expires a little late, never early).
    assert series.total(view, 1.0) == 3
    assert series.total(view, 1.0 + RESOLUTION_S) == 0


def test_sub_takes_a_record_out_of_every_view_that_still_holds_it() -> None:
    series = Series("k", keep_s=3600)
    views = series.set_windows([1, 10], now=0.0)
    seq = series.add(0.0, 7)
    series.add(0.5, 1)
    assert series.total(views[1.0], 1.2) == 1  # the 7 has left the 1 s window
    series.sub(seq, 7)
    assert series.total(views[1.0], 1.2) == 1
    assert series.total(views[10.0], 1.2) == 1


def test_a_window_set_later_sees_the_trailing_history_at_once() -> None:
    series = Series("k", keep_s=3600)
    for second in range(30):
        series.add(float(second), 1)
    (view,) = series.set_windows([10], now=30.0).values()
    assert series.total(view, 30.0) == 9  # t = 21..29 (20 is exactly 10 s ago)
    assert series.total(view, 30.0) == naive([(float(s), 1) for s in range(30)], 10, 30.0)


def test_old_history_moves_to_coarse_buckets_and_seeds_long_windows_conservatively() -> None:
    series = Series("k", keep_s=3600)
    records = [(t * 0.25, 1) for t in range(4 * 600)]  # 10 minutes, 4 per second
    for t, v in records:
        series.add(t, v)
    now = 600.0
    assert len(series) < len(records)  # compacted: older than FINE_MIN_S is bucketed
    (view,) = series.set_windows([300], now).values()
    total = series.total(view, now)
    exact = naive(records, 300, now)
    coarse = naive(records, 300 + 1.0 + RESOLUTION_S, now)
    assert exact <= total <= coarse


def test_history_beyond_keep_is_dropped() -> None:
    series = Series("k", keep_s=100)
    series.add(0.0, 1)
    for t in range(1, 300):
        series.add(float(t), 1)
    series.trim(300.0)
    assert series.sum_since(10_000, 300.0) <= 101


def test_removing_a_view_keeps_the_other() -> None:
    series = Series("k", keep_s=3600)
    views = series.set_windows([5, 50], now=0.0)
    series.add(1.0, 3)
    kept = series.set_windows([50], now=2.0)
    assert kept[50.0] is views[50.0]
    assert series.total(kept[50.0], 2.0) == 3


# Steps keep records apart by at least the resolution (or exactly together), so
# the fine tier is exact and can be compared with a naive sum.
STEPS = st.sampled_from([0.0, 2 * RESOLUTION_S, 0.01, 0.3, 1.0, 2.5, 9.0, 31.0, 61.0])
WINDOWS = st.sets(st.sampled_from([1, 2, 5, 10, 30, 60]), max_size=3)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), STEPS, st.integers(0, 1000)),
        st.tuples(st.just("sub"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("views"), WINDOWS, st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_every_view_equals_a_naive_recomputation(ops: list[tuple[str, object, int]]) -> None:
    series = Series("k", keep_s=3600)
    now = 0.0
    records: list[tuple[float, int]] = []  # w is always 7 * v
    handles: list[tuple[int, int, int]] = []  # (seq, value, index into records)
    views = series.set_windows([], now)
    for kind, arg, value in ops:
        if kind == "add":
            assert isinstance(arg, float)
            now += arg
            seq = series.add(now, value, 7 * value)
            records.append((now, value))
            handles.append((seq, value, len(records) - 1))
        elif kind == "sub" and handles:
            assert isinstance(arg, int)
            seq, amount, index = handles.pop(arg % len(handles))
            t, v = records[index]
            if t > now - FINE_MIN_S:  # older ones are in the coarse tier (left alone)
                series.sub(seq, amount, 7 * amount)
                records[index] = (t, v - amount)
        elif kind == "views":
            assert isinstance(arg, set)
            views = series.set_windows(arg, now)
        for window, view in views.items():
            expected = naive(records, window, now)
            assert series.total(view, now) == expected
            assert series.total2(view, now) == 7 * expected
            assert series.sum_since(window, now) == expected
            assert series.sum_since(window, now, second=True) == 7 * expected


def test_load_reseeds_the_same_view_objects() -> None:
    series = Series("k", keep_s=3600)
    (view,) = series.set_windows([10], now=0.0).values()
    series.load([(1.0, 2, 20), (5.0, 3, 30), (1.0, -2, -20)], now=6.0)
    assert series.total(view, 6.0) == 3 and series.total2(view, 6.0) == 30
    assert series.total(view, 15.0) == 0 and series.total2(view, 15.0) == 0
