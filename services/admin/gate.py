"""Who may run at the same time: per-symbol locks and the reconciliation gate.

Why two mechanisms:

* **Per-symbol locks.** Two admin requests for the same symbol (two creates,
  or a create racing a delete) must not interleave their phases, or both
  creates could pass the "symbol is free" check. A request that arrives while
  another for the same symbol is in flight simply waits its turn; requests for
  different symbols run concurrently (a bootstrap of thousands of instruments
  pipelines freely).
* **The gate.** A reconciliation pass deletes every book that Info does not
  reference. A create between its two phases has exactly such a book, so a pass
  must never overlap an operation. Operations share the gate; a pass takes it
  exclusively, waiting for running operations to finish and holding back new
  ones (which then wait, not fail) until it is done.

Releases never await, so a cancelled task cannot leave a lock held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["KeyedLocks", "OperationGate"]


class KeyedLocks:
    """One :class:`asyncio.Lock` per key, dropped again when nobody uses it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class OperationGate:
    """Many operations at once, or one exclusive holder (a reconciliation pass)."""

    def __init__(self) -> None:
        self._active = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._exclusive = asyncio.Lock()

    @property
    def active(self) -> int:
        return self._active

    @asynccontextmanager
    async def operation(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._exclusive:
            self._open.clear()
            try:
                while self._active:
                    await self._idle.wait()
                yield
            finally:
                self._open.set()

    async def wait_idle(self) -> None:
        """Wait until no operation is running (used when stopping)."""
        while self._active:
            await self._idle.wait()
