"""Async iterators over pushed events, one queue per reader.

Why a queue per reader: two parts of a program (say a strategy and a logger)
may both iterate ``client.fills()``; each must see every fill, from the moment
it asked, however fast the other reads.  Streams register synchronously when
created, so ``fills = client.fills()`` followed by ``await client.buy(...)``
can never miss the fill.

Publishers hold streams weakly: a stream its reader dropped is garbage
collected and stops costing anything (its ``on_close`` runs then, on the
event loop, which is how market-data subscriptions are released).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class EventStream(Generic[T]):
    """Events delivered after this stream was created, in arrival order.

    Use as ``async for event in stream``, ``await stream.get(timeout)``, or
    ``async with stream:`` to close it deterministically.  ``maxlen`` bounds
    the backlog for *state* streams (book snapshots), where dropping the oldest
    unread state loses nothing: the newest state supersedes it.  Event streams
    (fills, trades) are unbounded because every item matters.
    """

    def __init__(
        self,
        maxlen: int | None = None,
        on_close: Callable[[], None] | None = None,
        accept: Callable[[T], bool] | None = None,
    ) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._maxlen = maxlen
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._on_close = on_close
        self._accept = accept
        self.dropped = 0
        """States dropped because the reader fell more than ``maxlen`` behind."""

    # ------------------------------------------------------------------ producer side

    def put(self, item: T) -> None:
        if self._ended:
            return
        if self._accept is not None and not self._accept(item):
            return
        if self._maxlen is not None and len(self._items) == self._maxlen:
            self.dropped += 1
        self._items.append(item)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        """End the stream: readers get what is queued, then ``error`` or the end."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reader side

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    async def get(self, timeout: float | None = None) -> T:
        """The next event; ``TimeoutError`` if none within ``timeout`` seconds,
        ``StopAsyncIteration`` if the stream has ended."""
        if timeout is None:
            return await self.__anext__()
        return await asyncio.wait_for(self.__anext__(), timeout)

    def get_nowait(self) -> T | None:
        """The next queued event, or None when nothing is queued."""
        return self._items.popleft() if self._items else None

    def drain(self) -> list[T]:
        """Everything queued now (possibly nothing), without waiting."""
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ended(self) -> bool:
        return self._ended and not self._items

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop receiving; queued events are discarded.  Idempotent."""
        self._items.clear()
        self.finish()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Garbage collection may run in any thread (the sync facade has two), so the
        # release is handed to the stream's own loop rather than run here.
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(on_close)


class Fanout(Generic[T]):
    """Publishes each item to every live stream; holds the streams weakly."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[EventStream[T]] = weakref.WeakSet()

    def open(
        self,
        maxlen: int | None = None,
        on_close: Callable[[], None] | None = None,
        accept: Callable[[T], bool] | None = None,
    ) -> EventStream[T]:
        stream: EventStream[T] = EventStream(maxlen, on_close, accept)
        self._streams.add(stream)
        return stream

    def publish(self, item: T) -> None:
        for stream in list(self._streams):
            stream.put(item)

    def finish_all(self, error: BaseException | None = None) -> None:
        for stream in list(self._streams):
            stream.finish(error)
        self._streams = weakref.WeakSet()

    def __iter__(self) -> Iterator[EventStream[T]]:
        return iter(list(self._streams))

    def __len__(self) -> int:
        return len(self._streams)
