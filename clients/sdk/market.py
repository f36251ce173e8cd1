"""Market data from Info: instruments, book subscriptions, trades, gap repair.

Why a manager between the wire and the user's iterators: Info allows one
subscription per (symbol, type) per connection, while a program may want
several readers of the same book.  Readers share one wire subscription
(reference-counted: the last reader to close unsubscribes), a late reader
first gets the current state, and after a reconnect every live subscription
is re-established without the readers noticing more than a fresh snapshot.

Sequence numbers are checked on every message.  A gap in a book subscription
means a message was lost: the subscription is renewed (unsubscribe, subscribe:
pipelined, so Info handles them in that order) and the snapshot that follows
replaces whatever was missed.  Messages of the old subscription still in
flight are recognised because they arrive before the new subscribe's response.
A gap in trade numbers cannot be repaired (trades are not replayed); it is
logged and counted in :attr:`MarketData.gaps`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clients.sdk import translate
from clients.sdk.errors import SubscriptionError
from clients.sdk.link import Link
from clients.sdk.streams import EventStream, Fanout
from clients.sdk.types import Depth, Instrument, InstrumentEvent, Quote, TopOfBook, Trade
from services.common.pb import common_pb2, info_pb2
from services.common.wire.client import UpstreamConnection

log = logging.getLogger("optivex.sdk.market")

MT = common_pb2.MessageType
TOP = info_pb2.TOP_OF_BOOK
DEPTH = info_pb2.PRICE_DEPTH_BOOK
BOOK_BACKLOG = 1000
"""Unread book states kept per reader; older ones are superseded anyway."""


@dataclass(eq=False)
class _Sub:
    """One wire subscription, shared by every local reader of it."""

    symbol: str
    kind: int
    levels: int = 0
    refs: int = 0
    active: bool = False
    expected: int = 1
    last: TopOfBook | Depth | None = None
    pending: asyncio.Future[Any] | None = None


class MarketData:
    """The Info side of a :class:`~clients.sdk.client.Client`."""

    def __init__(self) -> None:
        self.link: Link | None = None
        self.instruments: dict[str, Instrument] = {}
        self.gaps = 0
        """Sequence gaps seen (book gaps are repaired, trade gaps only counted)."""
        self._subs: dict[tuple[str, int], _Sub] = {}
        self._top: dict[str, Fanout[TopOfBook]] = {}
        self._depth: dict[str, Fanout[Depth]] = {}
        self._depth_views: weakref.WeakKeyDictionary[EventStream[Depth], list[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._trades: dict[str, Fanout[Trade]] = {}
        self._trade_seq: dict[str, int] = {}
        self._instrument_events: Fanout[InstrumentEvent] = Fanout()
        self._seen: set[str] | None = None
        self.quotes_at_connect: dict[str, Quote] = {}

    # ------------------------------------------------------------------ connection hooks

    def on_connecting(self) -> None:
        """Before each login: start collecting the instrument snapshot."""
        self._seen = set()

    async def on_up(self, conn: UpstreamConnection) -> None:
        """After each login: learn the instruments, then renew every subscription.

        The instrument snapshot is pushed right after the login response; the
        answer to a quotes request sent after the login comes after it, so once
        that answer is in, :attr:`instruments` is complete.
        """
        first = self.link is None or self.link.connections == 0
        if self._seen is None:
            self._seen = set()
        try:
            response = await asyncio.wait_for(
                conn.request_raw(MT.INFO_QUOTES_REQUEST, info_pb2.QuotesRequest()), 10
            )
        finally:
            seen, self._seen = self._seen or set(), None
        if not response.error_message:
            self.quotes_at_connect = {
                q.instrument_symbol: translate.quote(q) for q in response.quotes
            }
        if not first:
            for symbol in set(self.instruments) - seen:
                self._drop_symbol(symbol)
        self._trade_seq.clear()
        for sub in list(self._subs.values()):
            sub.active = False
            sub.pending = None
            self._subscribe(sub, conn)

    def on_push(self, message_type: int, message: Any) -> None:
        if message_type == MT.INFO_ON_TOP_OF_BOOK:
            self._on_book(TOP, message.instrument_symbol, message, translate.top_of_book)
        elif message_type == MT.INFO_ON_PRICE_DEPTH_BOOK:
            self._on_book(DEPTH, message.instrument_symbol, message, translate.depth)
        elif message_type == MT.INFO_ON_TRADE:
            self._on_trade(translate.trade(message))
        elif message_type == MT.INFO_ON_INSTRUMENT:
            self._on_instrument(translate.instrument(message))
        elif message_type == MT.INFO_ON_INSTRUMENT_DELETED:
            self._drop_symbol(message.instrument_symbol)

    # ------------------------------------------------------------------ pushes

    def _on_instrument(self, instrument: Instrument) -> None:
        if self._seen is not None:
            self._seen.add(instrument.symbol)
        known = self.instruments.get(instrument.symbol)
        if known is not None and known.order_book_id != instrument.order_book_id:
            # Deleted and created again while we were away: a new instrument.
            self._drop_symbol(instrument.symbol)
            known = None
        self.instruments[instrument.symbol] = instrument
        if known is None:
            self._instrument_events.publish(InstrumentEvent("added", instrument.symbol, instrument))

    def _drop_symbol(self, symbol: str) -> None:
        """The instrument is gone: its subscriptions ended at Info; end its streams."""
        instrument = self.instruments.pop(symbol, None)
        for kind in (TOP, DEPTH):
            sub = self._subs.pop((symbol, kind), None)
            if sub is not None:
                sub.active = False
        for table in (self._top, self._depth, self._trades):
            fanout = table.pop(symbol, None)
            if fanout is not None:
                fanout.finish_all()
        self._trade_seq.pop(symbol, None)
        if instrument is not None:
            self._instrument_events.publish(InstrumentEvent("deleted", symbol, instrument))

    def _on_book(
        self, kind: int, symbol: str, message: Any, convert: Callable[[Any], TopOfBook | Depth]
    ) -> None:
        sub = self._subs.get((symbol, kind))
        if sub is None or not sub.active:
            return
        if sub.pending is not None:
            if not sub.pending.done():
                return  # a message of the subscription being replaced
            sub.pending = None
        state = convert(message)
        if state.sequence_number != sub.expected:
            self.gaps += 1
            log.warning(
                "%s %s: sequence gap (expected %d, got %d); taking a fresh snapshot",
                symbol,
                "depth" if kind == DEPTH else "top of book",
                sub.expected,
                state.sequence_number,
            )
            self._renew(sub)
        else:
            sub.expected += 1
        sub.last = state
        if isinstance(state, TopOfBook):
            fanout = self._top.get(symbol)
            if fanout is not None:
                fanout.publish(state)
        else:
            depth_fanout = self._depth.get(symbol)
            if depth_fanout is not None:
                for stream in depth_fanout:
                    self._put_depth(stream, state)

    def _put_depth(self, stream: EventStream[Depth], depth: Depth) -> None:
        view = self._depth_views.get(stream)
        if view is None:
            return
        levels, last = view
        cut = depth.truncated(levels)
        if cut.same_levels(last):
            return
        view[1] = cut
        stream.put(cut)

    def _on_trade(self, trade: Trade) -> None:
        previous = self._trade_seq.get(trade.symbol)
        if previous is not None and trade.sequence_number != previous + 1:
            self.gaps += 1
            log.warning(
                "%s: trades %d..%d were missed",
                trade.symbol,
                previous + 1,
                trade.sequence_number - 1,
            )
        self._trade_seq[trade.symbol] = trade.sequence_number
        fanout = self._trades.get(trade.symbol)
        if fanout is not None:
            fanout.publish(trade)

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self, sub: _Sub, conn: UpstreamConnection | None = None) -> None:
        request = info_pb2.OrderBookSubscribeRequest(
            instrument_symbol=sub.symbol,
            subscription_type=sub.kind,  # type: ignore[arg-type]
            depth=sub.levels,
        )
        if conn is not None:
            future: asyncio.Future[Any] | None = conn.request_raw(
                MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST, request
            )
        else:
            assert self.link is not None
            future = self.link.send_now(MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST, request)
        if future is None:
            sub.active = False
            return  # not connected: renewed by on_up
        sub.active = True
        sub.expected = 1
        sub.pending = future
        future.add_done_callback(lambda f: self._subscribed(sub, f))

    def _subscribed(self, sub: _Sub, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # connection lost: renewed by on_up
        if sub.pending is not None and sub.pending is not future:
            return  # superseded by a later subscribe
        response = future.result()
        if response.error_message and self._subs.get((sub.symbol, sub.kind)) is sub:
            del self._subs[(sub.symbol, sub.kind)]
            sub.active = False
            error = SubscriptionError(f"{sub.symbol}: {response.error_message}")
            tables: tuple[dict[str, Any], ...] = (
                (self._depth,) if sub.kind == DEPTH else (self._top, self._trades)
            )
            for table in tables:
                fanout = table.pop(sub.symbol, None)
                if fanout is not None:
                    fanout.finish_all(error)

    def _unsubscribe(self, sub: _Sub) -> None:
        assert self.link is not None
        request = info_pb2.OrderBookUnsubscribeRequest(
            instrument_symbol=sub.symbol,
            subscription_type=sub.kind,  # type: ignore[arg-type]
        )
        future = self.link.send_now(MT.INFO_ORDER_BOOK_UNSUBSCRIBE_REQUEST, request)
        if future is not None:
            future.add_done_callback(_ignore_outcome)
        sub.active = False

    def _renew(self, sub: _Sub) -> None:
        """Replace the wire subscription (gap repair, more depth): a fresh snapshot."""
        if self.link is None or not self.link.connected:
            return
        self._unsubscribe(sub)
        self._subscribe(sub)

    def _acquire(self, symbol: str, kind: int, levels: int = 0) -> _Sub:
        key = (symbol, kind)
        sub = self._subs.get(key)
        if sub is None:
            sub = self._subs[key] = _Sub(symbol, kind, levels)
            sub.refs = 1
            self._subscribe(sub)
            return sub
        sub.refs += 1
        if kind == DEPTH and sub.levels != 0 and (levels == 0 or levels > sub.levels):
            sub.levels = levels
            self._renew(sub)
        return sub

    def _release(self, sub: _Sub) -> None:
        sub.refs -= 1
        key = (sub.symbol, sub.kind)
        if sub.refs > 0 or self._subs.get(key) is not sub:
            return
        del self._subs[key]
        if not any(symbol == sub.symbol for symbol, _ in self._subs):
            # Info sends a symbol's trades only while some subscription to it is
            # held; without one, trades numbered in between are not ours to
            # miss, so the next subscription starts the numbering check afresh.
            self._trade_seq.pop(sub.symbol, None)
        if sub.active and self.link is not None and self.link.connected:
            self._unsubscribe(sub)

    # ------------------------------------------------------------------ public streams

    def top_of_book(self, symbol: str) -> EventStream[TopOfBook]:
        sub = self._acquire(symbol, TOP)
        fanout = self._top.setdefault(symbol, Fanout())
        stream = fanout.open(BOOK_BACKLOG, on_close=lambda: self._release(sub))
        if isinstance(sub.last, TopOfBook) and sub.pending is None:
            stream.put(sub.last)
        return stream

    def depth(self, symbol: str, levels: int) -> EventStream[Depth]:
        sub = self._acquire(symbol, DEPTH, levels)
        fanout = self._depth.setdefault(symbol, Fanout())
        stream = fanout.open(BOOK_BACKLOG, on_close=lambda: self._release(sub))
        self._depth_views[stream] = [levels, None]
        if isinstance(sub.last, Depth) and sub.pending is None:
            self._put_depth(stream, sub.last)
        return stream

    def trades(self, symbol: str) -> EventStream[Trade]:
        # Info sends trades to connections subscribed to the symbol with either
        # type; a top-of-book subscription is the cheaper one to hold.
        sub = self._acquire(symbol, TOP)
        fanout = self._trades.setdefault(symbol, Fanout())
        return fanout.open(None, on_close=lambda: self._release(sub))

    def instrument_events(self) -> EventStream[InstrumentEvent]:
        return self._instrument_events.open()

    def close(self, error: BaseException | None = None) -> None:
        """The client is closing (or lost Info for good): end every market-data
        stream, with ``error`` after the queued items when one is given."""
        for table in (self._top, self._depth, self._trades):
            for fanout in table.values():
                fanout.finish_all(error)
            table.clear()
        self._subs.clear()
        self._instrument_events.finish_all(error)

    @property
    def subscriptions(self) -> list[tuple[str, str]]:
        """Live wire subscriptions as (symbol, "top" | "depth")."""
        return [(s, "depth" if k == DEPTH else "top") for (s, k) in self._subs]


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
