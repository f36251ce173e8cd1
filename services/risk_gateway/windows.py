"""Rolling-window sums: one time series per (user, measure), many window views on it.

Why this shape:

* **Record from the start.** PROTOCOL.md wants a limit set later to apply to the
  trailing window at once, so every forwarded request is recorded whether or not
  a limit is configured. A :class:`Series` therefore keeps history on its own,
  not only while a window is in force.
* **Amortised O(1) checks.** Entries live in two parallel lists (times, values)
  addressed by an absolute sequence number. Each configured window length is a
  :class:`View`: a cursor to its oldest live entry plus a running total. A check
  moves the cursor past expired entries (subtracting them) and reads the total;
  every entry is passed at most once per view. Recording adds to every view.
* **Un-recording.** A request the Order Book refuses is taken out again
  (PROTOCOL.md "check, then record"): :meth:`Series.sub` finds the entry by its
  sequence number and fixes the totals of the views that still include it.
* **Bounded memory, conservative when coarse.** Entries less than
  :data:`RESOLUTION_S` apart are merged into one, stamped with the *later* time,
  so merged quantities expire slightly late (a user can only be refused a little
  early, never let through early). Entries older than every view in force (and
  than :data:`FINE_MIN_S`) move to a coarse tier (buckets of at least one second,
  again stamped late) that is only kept to seed windows configured later, up to
  ``keep_s`` of history. So memory is bounded by the entries inside the largest
  window in force plus ``keep_s / coarse resolution`` buckets.

Expiry rule: an entry recorded at ``t`` counts toward a window of ``w`` seconds
while ``now - w < t``, i.e. "within the last ``w`` seconds" excludes exactly ``w``
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

#: Entries closer together than this are merged (stamped with the later time).
RESOLUTION_S: Final = 0.001
#: History younger than this always stays exact (so short windows configured
#: later are exact at once), whatever windows are in force.
FINE_MIN_S: Final = 60.0
#: The coarse tier holds at most about this many buckets.
COARSE_BUCKETS: Final = 4096
#: Compaction is considered once the fine tier has at least this many entries.
_COMPACT_MIN: Final = 64


class View:
    """One window length over a series: the running total of its live entries."""

    __slots__ = ("cursor", "total", "window_s")

    def __init__(self, window_s: float, cursor: int, total: int) -> None:
        self.window_s = window_s
        self.cursor = cursor
        """Sequence number of the oldest entry still inside the window."""
        self.total = total

    def __repr__(self) -> str:
        return f"View(window_s={self.window_s!r}, total={self.total!r})"


class Series:
    """Time-stamped values with window views (see the module docstring)."""

    __slots__ = (
        "_anchor",
        "_base",
        "_coarse",
        "_coarse_res",
        "_fine_s",
        "_keep_s",
        "_times",
        "_values",
        "key",
        "views",
    )

    def __init__(self, key: Hashable, keep_s: float) -> None:
        self.key = key
        """Identifies the series to the caller (journal records carry it)."""
        self._keep_s = float(keep_s)
        self._coarse_res = max(1.0, self._keep_s / COARSE_BUCKETS)
        self._times: list[float] = []
        self._values: list[int] = []
        self._base = 0
        """Sequence number of ``_times[0]``."""
        self._anchor = float("-inf")
        """Time of the first record merged into the last entry (merging never
        chains past RESOLUTION_S from it, however steady the stream)."""
        self._coarse: deque[list[float]] = deque()
        """Older buckets, oldest first: ``[first time, stamp (last time), value]``."""
        self._fine_s = FINE_MIN_S
        self.views: list[View] = []

    # ------------------------------------------------------------------ recording

    def add(self, t: float, value: int) -> int:
        """Record ``value`` at time ``t`` (never earlier than the last record); returns
        its sequence number, for :meth:`sub`."""
        times = self._times
        if times:
            last = len(times) - 1
            if t - self._anchor < RESOLUTION_S:
                seq = self._base + last
                self._values[last] += value
                if t > times[last]:
                    times[last] = t
                for view in self.views:
                    if view.cursor <= seq:
                        view.total += value
                return seq
            if last >= _COMPACT_MIN and times[last >> 1] <= t - self._fine_s:
                self._compact(t)
        self._anchor = t
        times.append(t)
        self._values.append(value)
        for view in self.views:
            view.total += value
        return self._base + len(times) - 1

    def sub(self, seq: int, value: int) -> None:
        """Take ``value`` out of the entry ``seq`` again (a refused request).

        An entry already moved to the coarse tier is left alone: it is older than
        every window in force, so it no longer counts anywhere that matters, and
        leaving it can only make the seeding of a later window conservative.
        """
        index = seq - self._base
        if index < 0 or index >= len(self._values):
            return
        self._values[index] -= value
        for view in self.views:
            if view.cursor <= seq:
                view.total -= value

    # ------------------------------------------------------------------ reading

    def total(self, view: View, now: float) -> int:
        """The sum of the entries of ``view``'s window ending at ``now``."""
        cutoff = now - view.window_s
        times = self._times
        index = view.cursor - self._base
        if index < len(times) and times[index] <= cutoff:
            values = self._values
            total = view.total
            end = len(times)
            while index < end and times[index] <= cutoff:
                total -= values[index]
                index += 1
            view.total = total
            view.cursor = index + self._base
        return view.total

    def sum_since(self, window_s: float, now: float) -> int:
        """Naive sum over the last ``window_s`` seconds (both tiers); for tests and seeding."""
        cutoff = now - window_s
        total = sum(int(v) for _, t, v in self._coarse if t > cutoff)
        start = bisect_right(self._times, cutoff)
        return total + sum(self._values[start:])

    def entries(self) -> Iterator[tuple[float, int]]:
        """Every kept ``(time, value)``, oldest first (coarse buckets, then fine)."""
        for _, t, v in self._coarse:
            yield t, int(v)
        yield from zip(self._times, self._values, strict=True)

    def __len__(self) -> int:
        return len(self._times) + len(self._coarse)

    # ------------------------------------------------------------------ views

    def set_windows(self, windows: Iterable[float], now: float) -> dict[float, View]:
        """Make the views exactly ``windows`` (seconds); returns them by length.

        Existing views of a kept length stay as they are; a new one starts with
        the history already kept (coarse buckets included), so a limit set now
        applies to the trailing window at once.
        """
        wanted = sorted({float(w) for w in windows if w > 0})
        by_length = {view.window_s: view for view in self.views}
        self.views = [by_length.get(w) or self._new_view(w, now) for w in wanted]
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
            self._times[:0] = [t for _, t, _ in moved]
            self._values[:0] = [int(v) for _, _, v in moved]
            self._base -= len(moved)
        start = bisect_right(self._times, cutoff)
        return View(window_s, self._base + start, sum(self._values[start:]))

    # ------------------------------------------------------------------ memory

    def _compact(self, now: float) -> None:
        """Move entries older than every view (and FINE_MIN_S) to the coarse tier."""
        times = self._times
        values = self._values
        count = bisect_right(times, now - self._fine_s)
        if count == 0:
            return
        end_seq = self._base + count
        for view in self.views:
            # Every view is no longer than _fine_s, so these entries have expired
            # for all of them; settle the totals before dropping the entries.
            if view.cursor < end_seq:
                index = view.cursor - self._base
                view.total -= sum(values[index:count])
                view.cursor = end_seq
        coarse = self._coarse
        res = self._coarse_res
        for t, v in zip(times[:count], values[:count], strict=True):
            if coarse and t - coarse[-1][0] < res:
                bucket = coarse[-1]
                bucket[1] = t
                bucket[2] += v
            else:
                coarse.append([t, t, v])
        del times[:count]
        del values[:count]
        self._base = end_seq
        cutoff = now - self._keep_s
        while coarse and coarse[0][1] <= cutoff:
            coarse.popleft()

    def trim(self, now: float) -> None:
        """Drop history beyond what is kept (called now and then by the owner)."""
        if self._times and self._times[0] <= now - self._fine_s:
            self._compact(now)
        cutoff = now - self._keep_s
        coarse = self._coarse
        while coarse and coarse[0][1] <= cutoff:
            coarse.popleft()

    def load(self, entries: Iterable[tuple[float, int]], now: float) -> None:
        """Replace the content with ``entries`` (any order; restored from disk).

        Views are re-seeded from the loaded history (the same objects).
        """
        merged: dict[float, int] = {}
        for t, v in entries:
            if t > now - self._keep_s:
                merged[t] = merged.get(t, 0) + int(v)
        self._times = []
        self._values = []
        self._base = 0
        self._anchor = float("-inf")
        self._coarse.clear()
        for t in sorted(merged):
            if merged[t]:
                self._times.append(t)
                self._values.append(merged[t])
        # Re-seed the existing views in place: their owners hold on to them.
        for view in self.views:
            fresh = self._new_view(view.window_s, now)
            view.cursor = fresh.cursor
            view.total = fresh.total
        self._fine_s = max([FINE_MIN_S, *(view.window_s for view in self.views)])
