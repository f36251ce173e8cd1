"""Rolling-window sums: one time series per (user, measure), many window views on it.

Why this shape:

* **Record from the start.** PROTOCOL.md wants a limit set later to apply to the
  trailing window at once, so every forwarded request is recorded whether or not
  a limit is configured. A :class:`Series` therefore keeps history on its own,
  not only while a window is in force.
* **Two measures per entry.** An order is recorded with its quantity *and* its
  amount at the same moment, so a series carries two values per entry (``v``
  and ``w``; the message series leaves ``w`` at 0) and one expiry pass serves
  both the quantity and the amount window of the same length.
* **Amortised O(1) checks.** Entries live in parallel lists (times, v, w)
  addressed by an absolute sequence number. Each configured window length is a
  :class:`View`: a cursor to its oldest live entry, running totals, and the
  time at which that oldest entry expires. A check whose ``now`` is before
  ``expires`` reads the totals directly; otherwise :meth:`Series.expire` moves
  the cursor past expired entries. Every entry is passed at most once per view.
* **Un-recording.** A request the Order Book refuses is taken out again
  (PROTOCOL.md "check, then record"): :meth:`Series.sub` finds the entry by its
  sequence number and fixes the totals of the views that still include it.
* **Bounded memory, conservative when coarse.** Records less than
  :data:`RESOLUTION_S` after the first record of the last entry are merged into
  it, stamped with the *later* time, so merged values expire slightly late (a
  user can only be refused a little early, never let through early). Entries
  older than every view in force (and than :data:`FINE_MIN_S`) move to a coarse
  tier (buckets of at least one second, again stamped late) that is only kept to
  seed windows configured later, up to ``keep_s`` of history. So memory is
  bounded by the entries inside the largest window in force plus
  ``keep_s / coarse resolution`` buckets.

Expiry rule: an entry recorded at ``t`` counts toward a window of ``d`` seconds
while ``now - d < t``, i.e. "within the last ``d`` seconds" excludes exactly ``d``
seconds ago.

Times are floats from a monotonic clock (the caller passes them in: no clock here).
Values are ints (quantities, counts, or amounts in fixed-point units).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from typing import Final

__all__ = ["FINE_MIN_S", "RESOLUTION_S", "Series", "View"]

#: Records this close after an entry's first record merge into it (stamped later).
RESOLUTION_S: Final = 0.001
#: History younger than this always stays exact (so short windows configured
#: later are exact at once), whatever windows are in force.
FINE_MIN_S: Final = 60.0
#: The coarse tier holds at most about this many buckets.
COARSE_BUCKETS: Final = 4096
#: Compaction is considered once the fine tier has at least this many entries.
_COMPACT_MIN: Final = 64
_NEVER: Final = float("inf")


class View:
    """One window length over a series: running totals of its live entries."""

    __slots__ = ("cursor", "expires", "total", "total2", "window_s")

    def __init__(self, window_s: float, cursor: int, total: int, total2: int) -> None:
        self.window_s = window_s
        self.cursor = cursor
        """Sequence number of the oldest entry still inside the window."""
        self.total = total
        self.total2 = total2
        self.expires = _NEVER
        """When the oldest entry leaves the window (never later than the truth:
        a check at or after this time must call :meth:`Series.expire`)."""

    def __repr__(self) -> str:
        return f"View(window_s={self.window_s!r}, total={self.total!r}, total2={self.total2!r})"


class Series:
    """Time-stamped value pairs with window views (see the module docstring)."""

    __slots__ = (
        "_anchor",
        "_base",
        "_coarse",
        "_coarse_res",
        "_fine_s",
        "_keep_s",
        "_times",
        "_v",
        "_w",
        "key",
        "views",
    )

    def __init__(self, key: Hashable, keep_s: float) -> None:
        self.key = key
        """Identifies the series to the caller (journal records carry it)."""
        self._keep_s = float(keep_s)
        self._coarse_res = max(1.0, self._keep_s / COARSE_BUCKETS)
        self._times: list[float] = []
        self._v: list[int] = []
        self._w: list[int] = []
        self._base = 0
        """Sequence number of ``_times[0]``."""
        self._anchor = -_NEVER
        """Time of the first record merged into the last entry (merging never
        chains past RESOLUTION_S from it, however steady the stream)."""
        self._coarse: deque[list[float]] = deque()
        """Older buckets, oldest first: ``[first time, stamp (last time), v, w]``."""
        self._fine_s = FINE_MIN_S
        self.views: tuple[View, ...] = ()

    # ------------------------------------------------------------------ recording

    def add(self, t: float, v: int, w: int = 0) -> int:
        """Record ``(v, w)`` at time ``t`` (never earlier than the last record); returns
        its sequence number, for :meth:`sub`."""
        times = self._times
        if t - self._anchor < RESOLUTION_S:
            # Merge into the last entry (the anchor is -inf while there is none).
            # Every view still holds it: it is younger than any window.
            last = len(times) - 1
            self._v[last] += v
            self._w[last] += w
            if t > times[last]:
                times[last] = t
            for view in self.views:
                view.total += v
                view.total2 += w
            return self._base + last
        if len(times) > _COMPACT_MIN and times[len(times) >> 1] <= t - self._fine_s:
            self._compact(t)
        self._anchor = t
        seq = self._base + len(times)
        times.append(t)
        self._v.append(v)
        self._w.append(w)
        for view in self.views:
            if view.cursor == seq:  # the view was empty: this entry is its oldest
                view.expires = t + view.window_s
            view.total += v
            view.total2 += w
        return seq

    def sub(self, seq: int, v: int, w: int = 0) -> None:
        """Take ``(v, w)`` out of the entry ``seq`` again (a refused request).

        An entry already moved to the coarse tier is left alone: it is older than
        every window in force, so it no longer counts anywhere that matters, and
        leaving it can only make the seeding of a later window conservative.
        """
        index = seq - self._base
        if index < 0 or index >= len(self._v):
            return
        self._v[index] -= v
        self._w[index] -= w
        for view in self.views:
            if view.cursor <= seq:
                view.total -= v
                view.total2 -= w

    # ------------------------------------------------------------------ reading

    def expire(self, view: View, now: float) -> None:
        """Bring ``view``'s totals up to ``now`` (drop entries that left its window)."""
        cutoff = now - view.window_s
        times = self._times
        base = self._base
        index = view.cursor - base
        end = len(times)
        if index < end and times[index] <= cutoff:
            v = self._v
            w = self._w
            total = view.total
            total2 = view.total2
            while index < end and times[index] <= cutoff:
                total -= v[index]
                total2 -= w[index]
                index += 1
            view.total = total
            view.total2 = total2
            view.cursor = index + base
        view.expires = times[index] + view.window_s if index < end else _NEVER

    def total(self, view: View, now: float) -> int:
        """The sum of ``v`` over ``view``'s window ending at ``now``."""
        if now >= view.expires:
            self.expire(view, now)
        return view.total

    def total2(self, view: View, now: float) -> int:
        """The sum of ``w`` over ``view``'s window ending at ``now``."""
        if now >= view.expires:
            self.expire(view, now)
        return view.total2

    def sum_since(self, window_s: float, now: float, second: bool = False) -> int:
        """Naive sum of ``v`` (or ``w``) over the last ``window_s`` seconds, both tiers."""
        cutoff = now - window_s
        slot = 3 if second else 2
        total = sum(int(bucket[slot]) for bucket in self._coarse if bucket[1] > cutoff)
        start = bisect_right(self._times, cutoff)
        return total + sum((self._w if second else self._v)[start:])

    def entries(self) -> Iterator[tuple[float, int, int]]:
        """Every kept ``(time, v, w)``, oldest first (coarse buckets, then fine)."""
        for _, t, v, w in self._coarse:
            yield t, int(v), int(w)
        yield from zip(self._times, self._v, self._w, strict=True)

    def __len__(self) -> int:
        return len(self._times) + len(self._coarse)

    # Copies for a snapshot (services/risk_gateway/compaction.py), taken on the event
    # loop a bounded piece at a time and read later on another thread while the
    # series goes on recording. Fine entries are addressed by sequence number,
    # which stays attached to an entry for as long as it is in the fine tier.

    def copy_coarse(self) -> list[tuple[float, int, int]]:
        """The coarse tier's ``(time, v, w)``, oldest first, copied now."""
        return [(t, int(v), int(w)) for _, t, v, w in self._coarse]

    def fine_range(self) -> tuple[int, int]:
        """Sequence numbers of the oldest fine entry and one past the newest."""
        return self._base, self._base + len(self._times)

    def copy_fine(self, start: int, stop: int) -> tuple[list[float], list[int], list[int]]:
        """Copies of the times, ``v`` and ``w`` of the fine entries ``start <= seq <
        stop`` (list slices: they run in C)."""
        lo = max(start - self._base, 0)
        hi = max(stop - self._base, lo)
        return self._times[lo:hi], self._v[lo:hi], self._w[lo:hi]

    def time_at(self, seq: int) -> float | None:
        """The time of fine entry ``seq``; None if no fine entry has that number."""
        index = seq - self._base
        return self._times[index] if 0 <= index < len(self._times) else None

    # ------------------------------------------------------------------ views

    def set_windows(self, windows: Iterable[float], now: float) -> dict[float, View]:
        """Make the views exactly ``windows`` (seconds); returns them by length.

        Existing views of a kept length stay as they are; a new one starts with
        the history already kept (coarse buckets included), so a limit set now
        applies to the trailing window at once.
        """
        wanted = sorted({float(d) for d in windows if d > 0})
        by_length = {view.window_s: view for view in self.views}
        self.views = tuple(by_length.get(d) or self._new_view(d, now) for d in wanted)
        self._fine_s = max([FINE_MIN_S, *wanted])
        return {view.window_s: view for view in self.views}

    def _new_view(self, window_s: float, now: float) -> View:
        cutoff = now - window_s
        coarse = self._coarse
        if coarse and coarse[-1][1] > cutoff:
            # Bring back the buckets this window needs: they become ordinary
            # (older) entries in front of the fine tier.
            moved: list[list[float]] = []
            while coarse and coarse[-1][1] > cutoff:
                moved.append(coarse.pop())
            moved.reverse()
            self._times[:0] = [bucket[1] for bucket in moved]
            self._v[:0] = [int(bucket[2]) for bucket in moved]
            self._w[:0] = [int(bucket[3]) for bucket in moved]
            self._base -= len(moved)
        start = bisect_right(self._times, cutoff)
        view = View(window_s, self._base + start, sum(self._v[start:]), sum(self._w[start:]))
        if start < len(self._times):
            view.expires = self._times[start] + window_s
        return view

    # ------------------------------------------------------------------ memory

    def _compact(self, now: float) -> None:
        """Move entries older than every view (and FINE_MIN_S) to the coarse tier."""
        times = self._times
        count = bisect_right(times, now - self._fine_s)
        if count == 0:
            return
        for view in self.views:
            # Every view is no longer than _fine_s, so these entries have expired
            # for all of them; settle the totals before dropping the entries.
            self.expire(view, now)
        coarse = self._coarse
        res = self._coarse_res
        for t, v, w in zip(times[:count], self._v[:count], self._w[:count], strict=True):
            if coarse and t - coarse[-1][0] < res:
                bucket = coarse[-1]
                bucket[1] = t
                bucket[2] += v
                bucket[3] += w
            else:
                coarse.append([t, t, v, w])
        del times[:count]
        del self._v[:count]
        del self._w[:count]
        self._base += count
        self._drop_old(now)

    def _drop_old(self, now: float) -> None:
        cutoff = now - self._keep_s
        coarse = self._coarse
        while coarse and coarse[0][1] <= cutoff:
            coarse.popleft()

    def trim(self, now: float) -> None:
        """Drop history beyond what is kept (called now and then by the owner)."""
        if self._times and self._times[0] <= now - self._fine_s:
            self._compact(now)
        self._drop_old(now)

    def load(self, entries: Iterable[tuple[float, int, int]], now: float) -> None:
        """Replace the content with ``entries`` (any order; restored from disk).

        Views are re-seeded from the loaded history (the same objects: their
        owners hold on to them).
        """
        merged: dict[float, list[int]] = {}
        for t, v, w in entries:
            if t > now - self._keep_s:
                pair = merged.setdefault(t, [0, 0])
                pair[0] += int(v)
                pair[1] += int(w)
        self._times = []
        self._v = []
        self._w = []
        self._base = 0
        self._anchor = -_NEVER
        self._coarse.clear()
        for t in sorted(merged):
            v, w = merged[t]
            if v or w:
                self._times.append(t)
                self._v.append(v)
                self._w.append(w)
        for view in self.views:
            fresh = self._new_view(view.window_s, now)
            view.cursor = fresh.cursor
            view.total = fresh.total
            view.total2 = fresh.total2
            view.expires = fresh.expires
        self._fine_s = max([FINE_MIN_S, *(view.window_s for view in self.views)])
