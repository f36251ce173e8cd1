"""Clocks: the manual one moves only when told; both satisfy the Protocol."""

from __future__ import annotations

import time

import pytest

from services.common.clock import Clock, ManualClock, SystemClock


def test_manual_clock_advances_both_readings() -> None:
    clock = ManualClock(monotonic=10.0, wall_ns=1_000)
    assert clock.monotonic() == 10.0
    assert clock.now_ns() == 1_000
    clock.advance(1.5)
    assert clock.monotonic() == 11.5
    assert clock.now_ns() == 1_000 + 1_500_000_000


def test_manual_clock_wall_can_be_set_independently() -> None:
    clock = ManualClock()
    clock.set_wall_ns(42)
    assert clock.now_ns() == 42
    assert clock.monotonic() == 0.0
    clock.set_wall_ns(7)  # a wall clock may step backwards...
    assert clock.now_ns() == 7


def test_manual_clock_refuses_to_go_backwards() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)  # ...the monotonic clock never does


def test_system_clock_reads_real_time() -> None:
    clock = SystemClock()
    before = time.time_ns()
    assert abs(clock.now_ns() - before) < 5 * 10**9
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_both_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
