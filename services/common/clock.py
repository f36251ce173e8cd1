"""Time, read through one injectable object.

Everything time-dependent in the services (heartbeats, idle and login timeouts,
rolling risk windows, login throttling, event timestamps) asks a :class:`Clock`
instead of calling :mod:`time` directly. Production code passes a
:class:`SystemClock`; tests pass a :class:`ManualClock` and *advance* time instead
of sleeping, which keeps the suite fast and deterministic (the same idea as
nautilus' ``TestClock`` and trio's ``MockClock``).

Two readings are offered because they answer different questions:

* :meth:`Clock.monotonic` -- seconds from an arbitrary origin that never jumps
  backwards. Use it for durations: timeouts, windows, delays.
* :meth:`Clock.now_ns` -- wall-clock nanoseconds since the Unix epoch. Use it for
  timestamps that leave the process (``timestamp`` fields on the wire). It may jump
  when the system clock is adjusted, so never subtract two of them to time things.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]

_NS_PER_S = 1_000_000_000


@runtime_checkable
class Clock(Protocol):
    """The time source services depend on."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary origin; never decreases."""
        ...

    def now_ns(self) -> int:
        """Wall-clock time in integer nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.time_ns`."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def now_ns(self) -> int:
        return time.time_ns()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when a test tells it to.

    :meth:`advance` moves both readings forward together, as real time would.
    :meth:`set_wall_ns` changes only the wall clock (to simulate an NTP step or to
    pin timestamps to a known value); the monotonic reading is unaffected, just as
    on a real machine.
    """

    __slots__ = ("_monotonic", "_wall_ns")

    def __init__(self, monotonic: float = 0.0, wall_ns: int = 1_700_000_000 * _NS_PER_S) -> None:
        self._monotonic = float(monotonic)
        self._wall_ns = int(wall_ns)

    def monotonic(self) -> float:
        return self._monotonic

    def now_ns(self) -> int:
        return self._wall_ns

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock backwards (got {seconds!r} s)")
        self._monotonic += seconds
        self._wall_ns += round(seconds * _NS_PER_S)

    def set_wall_ns(self, wall_ns: int) -> None:
        """Set the wall clock (may go backwards, like a real clock adjustment)."""
        self._wall_ns = int(wall_ns)

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self._monotonic!r}, wall_ns={self._wall_ns!r})"
