"""The compaction while serving: a snapshot of the risk state built a bounded
step per event-loop turn while the Gateway goes on journaling.

Why incremental: compaction (the journal passed
:data:`~services.risk_gateway.store.COMPACT_BYTES`) must not stop the Gateway.
A snapshot of a busy minute's window history is ~20 MB of JSON and took 1.3 s
to build and write on the event loop (measured at 10,000 orders/s), and even
copying that history in one go held the loop 10-30 ms (and the cyclic GC's
passes over the copied lists came on top). So it is split in three:

1. :meth:`RiskStore.begin_compaction` (one quick loop turn) copies the limits,
   notes the users there are, and *switches*: new records go to a second
   journal, ``risk_journal.next.jsonl``, whose first record names it with a
   random id that the snapshot will carry too.
2. :meth:`Compaction.copy` copies the window history and client_order_ids a
   bounded amount (:data:`COPY_STEP` entries) per loop turn. A series is
   copied in chunks of fine entries, oldest first; until it is completely
   copied, its window records still go to the *old* journal, since the copy
   will include them; after, they go to the next journal. So the snapshot
   holds each series as it was when its copy ended, the old journal everything
   before, the next journal everything after, and no record is in both the
   snapshot and the next journal (see :class:`Routing` for why the chunks
   stay exact while trims run and refunds arrive). Limit changes and
   client_order_ids go to the next journal from the switch on: replaying them
   on a later copy gives the same result (limits: the last change wins;
   client_order_ids: only ever added, a known one is kept).
3. :meth:`Compaction.write`, on a worker thread, builds and writes the
   snapshot from the copies, then drops the old journal and renames the next
   one into its place (file work only: the loop goes on appending to the next
   journal, whose open file follows the rename); back on the loop,
   :meth:`RiskStore.finish_compaction` ends the compaction.

Loading (:meth:`RiskStore.load`) replays the snapshot and both journals, except
that the old journal is skipped when the snapshot carries the next journal's id
(the snapshot of this compaction is in place and already holds all of it). So
every crash point is exact: before the new snapshot, old snapshot + old journal
+ next journal (each record in exactly one of the journals); after it, new
snapshot + next journal.

The blocking compaction of :meth:`RiskStore.compact` (at start, at stop, after
a failed or abandoned attempt) uses the same :class:`Snapshot` and
:class:`Copier`, without a :class:`Routing`: each series in one go.

Who does what: :class:`~services.risk_gateway.store.RiskStore` owns the
journal files and their buffers and asks :class:`Routing` which journal a
window record goes to; this module owns the copies, their order, the snapshot
they make and the final rename. No asyncio, no protobuf: the steps are a
generator the Gateway drives, the file work plain I/O.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Hashable, Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias, cast

from services.risk_gateway.accounts import UserState
from services.risk_gateway.coids import ClientOrderIds, unpacked
from services.risk_gateway.limits import LAYERS, RiskEngine
from services.risk_gateway.store_format import (
    JOURNAL_FILE,
    NEXT_JOURNAL_FILE,
    VERSION,
    SeriesKey,
    dumps,
    entries_json,
    instrument_limits_to_json,
    json_array,
    key_parts,
    outcome_to_json,
    user_limits_to_json,
    write_atomically,
)
from services.risk_gateway.windows import Series

if TYPE_CHECKING:
    from services.risk_gateway.store import RiskStore

__all__ = ["COPY_STEP", "Compaction", "Copier", "Routing", "Snapshot"]

COPY_STEP: Final = 8192
"""Window entries (or client_order_ids) a compaction copies per loop turn.

Copying this many fine entries (times, v and w) into arrays takes ~0.55 ms; a
turn may also copy a series' coarse tier (at most a few thousand buckets) and
finish small series, up to about twice this many entries. Measured at
10,000 orders/s (~500,000 entries, 55 turns): median 0.8 ms, longest 1.7 ms a
turn, where the copy in one go took 10-30 ms.
"""
_COPY_ATTEMPTS: Final = 3
"""Chunked copies of one series before the next one is taken in one turn."""

_Fine: TypeAlias = "tuple[array[float], Sequence[int], Sequence[int]]"
"""A chunk of fine entries: times, ``v`` and ``w``."""


class _Progress:
    """How far the chunked copy of one series has got."""

    __slots__ = ("stale", "through")

    def __init__(self) -> None:
        self.through = -math.inf
        """Time of the newest fine entry copied so far."""
        self.stale = False
        """A record changed an entry already copied: copy the series again."""


class Routing:
    """Which journal a window record goes to while a compaction copies.

    A record whose series is copied completely goes to the next journal (the
    snapshot does not hold it); one whose series is not (its user is not
    taken up yet, or its copy is under way) to the old journal: the copy will
    hold it, and the old journal is dropped once the snapshot is in place.
    Series created after the switch (new users, a user's new instruments once
    the user is taken up) are in no snapshot: next journal. Records of
    different series are independent (loading sums them per time), so a batch
    split between the two files is replayed the same in any order.

    A series is copied oldest entries first, in chunks, and never a chunk that
    ends with its newest entry (that one still merges new records): the last
    chunk, with the newest entry, is copied in the same turn as the series is
    marked done. Between two chunks the series goes on changing:

    * a new record has the current time, later than every copied entry, so it
      lands in an entry not copied yet (new, or the newest);
    * a refund (a negative record with the original time) of an entry copied
      already would make the copy stale: a record not later than the newest
      copied entry is one (an entry's time is the latest of its records, and
      the next entry's records are all later), and it marks the series stale;
    * a trim moves the oldest fine entries to the coarse tier (merged into
      buckets), and a window set with a new length moves coarse buckets back.
      As long as the newest copied entry is still a fine entry, with its time,
      at its sequence number, every entry from there on is uncopied and
      unchanged (a bucket holding both copied and uncopied entries would be
      stamped later than it). If it is not, a trim reached into the entries
      not copied yet.

    A stale or overtaken copy starts again (every record of that series went
    to the old journal meanwhile, so the fresh copy holds all of them); after
    :data:`_COPY_ATTEMPTS` attempts the series is copied in one turn. Neither
    happens at a steady rate: a chunk is :data:`COPY_STEP` entries, seconds of
    history, refunds concern the last milliseconds and a trim the oldest half
    second.
    """

    __slots__ = ("copying", "pending_users")

    def __init__(self, users: Iterable[str]) -> None:
        self.pending_users = set(users)
        """Users of the switch whose series are not taken up yet."""
        self.copying: dict[Hashable, _Progress] = {}
        """The series of the user being copied that are not done yet."""

    def to_old(self, key: Hashable, t: float) -> bool:
        """Whether the record ``(key, t, ...)`` goes to the old journal."""
        progress = self.copying.get(key)
        if progress is None:
            return _owner(key) in self.pending_users
        if t <= progress.through:
            progress.stale = True
        return True


class Snapshot:
    """Copies of the state, taken on the event loop; :meth:`write` writes them.

    Nothing here is shared with the live state (limit values are frozen), so
    :meth:`write` may run on another thread while the loop serves.
    """

    def __init__(
        self, path: Path, mono: float, wall_ns: int, journal_id: str, engine: RiskEngine
    ) -> None:
        self.path = path
        self.epoch = [mono, wall_ns]
        self.journal_id = journal_id
        self.user_limits = {layer: dict(engine.user_limits[layer]) for layer in LAYERS}
        self.instrument_limits = {
            layer: {u: dict(by_symbol) for u, by_symbol in engine.instrument_limits[layer].items()}
            for layer in LAYERS
        }
        self.coids: list[tuple[str, dict[str, bytes]]] = []
        """Per user, the packed outcomes (unpacked only here, on the writer's thread)."""
        self.series: list[tuple[Hashable, list[tuple[float, int, int]], list[_Fine]]] = []

    def write(self, yield_gil: bool) -> None:
        """Build the snapshot's JSON in pieces and replace the file (see
        :func:`write_atomically`)."""
        head = {
            "version": VERSION,
            "epoch": self.epoch,
            "journal": self.journal_id,
            "user_limits": {
                layer: {u: user_limits_to_json(lim) for u, lim in by_user.items()}
                for layer, by_user in self.user_limits.items()
            },
            "instrument_limits": {
                layer: {
                    u: {s: instrument_limits_to_json(lim) for s, lim in by_symbol.items()}
                    for u, by_symbol in by_user.items()
                }
                for layer, by_user in self.instrument_limits.items()
            },
        }
        coid_items = (
            [u, c, outcome_to_json(unpacked(o))]
            for u, table in self.coids
            for c, o in table.items()
        )

        def pieces() -> Iterator[str]:
            yield dumps(head)[:-1] + ',"coids":'
            yield from json_array(coid_items)
            yield ',"series":['
            for number, (key, coarse, fine) in enumerate(self.series):
                yield ("," if number else "") + "[" + dumps(list(key_parts(key))) + ","
                yield from entries_json(
                    chain(coarse, *(zip(t, v, w, strict=True) for t, v, w in fine))
                )
                yield "]"
            yield "]}"

        write_atomically(self.path, pieces(), yield_gil=yield_gil)

    def release(self) -> None:
        """Drop the copies a piece at a time (on the writer's thread), rather than
        all at once wherever the last reference goes: a large client_order_id
        table takes milliseconds to free, holding the GIL."""
        while self.coids:
            self.coids.pop()
            time.sleep(0)
        self.series.clear()  # arrays of numbers: quick to free


class Copier:
    """Copies the window history and client_order_ids into a :class:`Snapshot`,
    :data:`COPY_STEP` entries or so between two ``yield`` (see :class:`Routing`;
    without one, a foreground compaction, each series in one go)."""

    def __init__(
        self,
        snapshot: Snapshot,
        users: list[UserState],
        coids: ClientOrderIds,
        routing: Routing | None,
    ) -> None:
        self.snapshot = snapshot
        self.users = users
        self.coids = coids
        self.coid_users = coids.users()
        """Users with client_order_ids at the switch (later ones: all in the
        next journal)."""
        self.routing = routing
        self.work = 0

    def steps(self) -> Iterator[None]:
        routing = self.routing
        for user in self.users:
            series = [user.messages, *(account.orders for account in user.accounts.values())]
            if routing is not None:
                for one in series:
                    routing.copying[one.key] = _Progress()
                routing.pending_users.discard(user.name)
            self.work += len(series)
            for one in series:
                yield from self._series(one)
        for username in self.coid_users:
            # Any copy from the switch on will do: client_order_ids are only
            # added, and replaying the next journal's adds keeps known ones.
            table = self.coids.copy_user(username)
            self.snapshot.coids.append((username, table))
            self.work += 1 + len(table)
            yield from self._pause()

    def _series(self, series: Series) -> Iterator[None]:
        routing = self.routing
        progress = _Progress() if routing is None else routing.copying[series.key]
        attempts = 0
        while True:
            attempts += 1
            progress.stale = False
            progress.through = -math.inf
            coarse = series.copy_coarse()
            start, end = series.fine_range()
            fine: list[_Fine] = []
            self.work += len(coarse)
            while end - start > COPY_STEP and routing is not None and attempts <= _COPY_ATTEMPTS:
                # Never the newest entry: the remaining ones are more than a chunk.
                chunk = _packed(series.copy_fine(start, start + COPY_STEP))
                fine.append(chunk)
                start += COPY_STEP
                progress.through = chunk[0][-1]
                self.work += COPY_STEP
                yield from self._pause()
                if progress.stale or series.time_at(start - 1) != progress.through:
                    break  # changed under the copy (see Routing): again
                end = series.fine_range()[1]
            else:
                # The rest, newest entry included, and done in the same turn.
                fine.append(_packed(series.copy_fine(start, end)))
                self.work += end - start
                if routing is not None:
                    del routing.copying[series.key]
                if coarse or any(len(times) for times, _, _ in fine):
                    self.snapshot.series.append((series.key, coarse, fine))
                yield from self._pause()
                return

    def _pause(self) -> Iterator[None]:
        """Let the event loop run if this turn's share of work is done."""
        if self.work >= COPY_STEP:
            self.work = 0
            yield


class Compaction:
    """A compaction while serving, from :meth:`RiskStore.begin_compaction` to
    :meth:`RiskStore.finish_compaction` (see the module docstring)."""

    def __init__(self, store: RiskStore, copier: Copier, snapshot: Snapshot) -> None:
        self._store = store
        self._copier = copier
        self._snapshot = snapshot
        self.copied = False
        """True once :meth:`copy` has run to its end (then :meth:`write` may run)."""
        self.written = False
        """True once the snapshot is in place (then the journals may switch)."""

    def copy(self) -> Iterator[None]:
        """Copy the window history and client_order_ids, a bounded step per
        ``next``; the event loop must run between two steps (the Gateway:
        ``await asyncio.sleep(0)``), the state must only change between them.
        Its last step closes the old journal (nothing more goes there); raises
        OSError if what was still buffered for it cannot be written.
        """
        yield from self._copier.steps()
        self._store.finish_copy(self._copier.routing)
        self.copied = True

    def write(self) -> None:
        """The slow half, file work only, for a worker thread (after :meth:`copy`):
        :meth:`write_snapshot`, then :meth:`switch_journals`. Then call
        :meth:`RiskStore.finish_compaction` on the loop."""
        self.write_snapshot()
        self.switch_journals()

    def write_snapshot(self) -> None:
        """Build and write the snapshot from the copies (any thread)."""
        if not self.copied:
            raise RuntimeError("the state is not copied yet")
        self._snapshot.write(yield_gil=True)
        self.written = True
        self._snapshot.release()

    def switch_journals(self) -> None:
        """The snapshot is in place: drop the old journal, rename the next one into
        its place (any thread; the loop may go on appending to the next journal,
        its open file follows the rename).

        Not on the loop: unlinking a 64 MiB journal took ~7-8 ms on this disk
        (the file system frees its blocks). A crash between the two leaves the
        snapshot and the next journal: loaded as they are.
        """
        if not self.written:
            raise RuntimeError("the snapshot is not written yet")
        data_dir = self._store.data_dir
        (data_dir / JOURNAL_FILE).unlink(missing_ok=True)
        os.replace(data_dir / NEXT_JOURNAL_FILE, data_dir / JOURNAL_FILE)


def _owner(key: Hashable) -> str:
    """The user a series key names: ``("m", user)`` or ``("o", user, symbol)``
    (:meth:`RiskEngine.series_for`)."""
    return cast(SeriesKey, key)[1]


def _packed(fine: tuple[list[float], list[int], list[int]]) -> _Fine:
    """A chunk of fine entries as arrays of numbers, not lists of objects.

    Lists would be traversed by the cyclic garbage collector in every young
    collection until promoted, and the floats they point to lie all over the
    heap: one collection over a few hundred thousand copied entries held the
    loop ~12 ms. Arrays are not tracked (building one costs ~0.3 ms more per
    :data:`COPY_STEP` entries). An amount too large for 64 bits stays a list.
    """
    times, v, w = fine
    return array("d", times), _ints(v), _ints(w)


def _ints(values: list[int]) -> Sequence[int]:
    try:
        return array("q", values)
    except OverflowError:
        return values
