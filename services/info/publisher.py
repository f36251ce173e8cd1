"""Fan-out: turn mirror changes into messages for subscribers, cheaply and in order.

Called once per read of the Order Book stream (after every event of the read has
been applied), so a book that changed many times in one read is published once:
intermediate states are skipped, order is kept, and the last message equals the
book. Per changed, publishable book:

1. trades first, each encoded once and written to every connection subscribed to
   the instrument (trades are facts, never conflated);
2. then, per :class:`~services.info.subscriptions.Group`, the view is computed; if
   it differs from the group's previous view it is encoded once (without sequence
   number) and each subscriber gets it completed with its own number
   (:func:`~services.info.translate.with_sequence`).

**Slow readers.** A subscriber whose session is ``congested`` (its transport buffer
is over the high-water mark) gets no book message; the subscription is parked in
its connection's ``conflated`` set. When the transport drains, ``on_writable``
sends each parked subscription the group's *current* view, if it differs from
what that subscription last received (numbers still go up by exactly one per
message sent). So a reader that stops costs at most one pending book state per
subscription, plus its trades, which the wire layer's output cap bounds.
"""

from __future__ import annotations

import logging
from typing import Any

from services.info.events import TOP_OF_BOOK, Trade
from services.info.mirror import BookMirror, Levels, Mirror
from services.info.registry import Registry
from services.info.subscriptions import Channel, Group, Subscription, Subscriptions
from services.info.translate import (
    ASKS_TAG,
    BIDS_TAG,
    ON_PRICE_DEPTH_BOOK,
    ON_TOP_OF_BOOK,
    book_head,
    encode_levels,
    top_body,
    trade_frame,
    with_sequence,
)

log = logging.getLogger("optivex.info.publisher")

CONNECTION_KEY = "info.conn"
"""Key of the :class:`~services.info.subscriptions.Connection` in ``session.state``."""


class Publisher:
    """Sends book views and trades to subscribers (see the module docstring)."""

    def __init__(self, subscriptions: Subscriptions, registry: Registry) -> None:
        self.subscriptions = subscriptions
        self.registry = registry
        self.stats_dirty = False
        """Set when trade statistics changed (the app persists them now and then)."""
        self.deliveries = 0
        """Book and trade messages written to sessions (for the benchmark and stats)."""

    # ------------------------------------------------------------------ per read

    def publish(self, mirror: Mirror) -> set[int]:
        """Publish what the events applied since the last call changed.

        Returns the ids of the books touched (the caller wakes waiters for new books
        and retires instruments whose book was deleted). Transient books are
        skipped: the trades that end their transient state touch them again.
        """
        dirty, trades = mirror.drain()
        if trades:
            self.publish_trades(trades, mirror)
        channels = self.subscriptions.by_book
        books = mirror.books
        for book_id in dirty:
            channel = channels.get(book_id)
            if channel is None or not channel.trade_conns:
                continue
            book = books.get(book_id)
            if book is not None and not book.transient:
                self.publish_book(channel, book)
        return dirty

    def publish_trades(self, trades: list[Trade], mirror: Mirror) -> None:
        """Number, record and send trades of live instruments, in stream order.

        All trades of one read for one instrument go to each of its connections as
        one write of their concatenated frames: a busy read carries dozens of
        trades, and one ``send_frame`` per trade and connection would dominate.
        """
        by_book = self.registry.by_book
        channels = self.subscriptions.by_book
        batches: dict[Channel, list[bytes]] = {}
        for trade in trades:
            instrument = by_book(trade.order_book_id)
            if instrument is None:
                continue
            number = instrument.stats.record(trade.price_ticks, trade.quantity, trade.timestamp)
            self.stats_dirty = True
            channel = channels.get(trade.order_book_id)
            if channel is None or not channel.trade_conns:
                continue
            frame = trade_frame(instrument.symbol, trade, instrument.tick_size, number)
            batch = batches.get(channel)
            if batch is None:
                batches[channel] = [frame]
            else:
                batch.append(frame)
        for channel, frames in batches.items():
            blob = frames[0] if len(frames) == 1 else b"".join(frames)
            for conn in channel.trade_conns:
                conn.session.send_frame(blob)
            self.deliveries += len(frames) * len(channel.trade_conns)

    def publish_book(self, channel: Channel, book: BookMirror) -> None:
        """Publish a changed book to its subscribers (the book must not be transient).

        Per group, in the order top of book, then depths by age: the view is taken
        from the book, and only if it differs from the group's previous view is it
        encoded and sent. Encoding reuses what is known to be unchanged: the head
        (symbol and timestamp) is built once for all groups, and a side of a depth
        view that is the same as the group's previous one, or as the previous
        group's in this call (depths that cover the whole book see the same
        levels), keeps its bytes.
        """
        head: bytes | None = None
        group = channel.top
        if group is not None:
            old = group.view
            view: Any = book.top()
            if view != old:
                head = book_head(channel.symbol, book.timestamp)
                group.view = view
                group.payload = top_body(head, view, book.tick_size)
                self._fan_out(group, old, view, ON_TOP_OF_BOOK)
        if channel.depths:
            tick_size = book.tick_size
            last_bids: Levels | None = None
            last_asks: Levels | None = None
            last_bid_bytes = last_ask_bytes = b""
            for group in list(channel.depths.values()):
                old = group.view
                bids = book.bid_levels(group.depth)
                asks = book.ask_levels(group.depth)
                if old is not None:
                    old_bids, old_asks = old
                    same_bids = bids is old_bids or bids == old_bids
                    same_asks = asks is old_asks or asks == old_asks
                    if same_bids and same_asks:
                        continue
                else:
                    same_bids = same_asks = False
                if same_bids:
                    bid_bytes = group.bid_bytes
                elif bids is last_bids:
                    bid_bytes = last_bid_bytes
                else:
                    bid_bytes = encode_levels(BIDS_TAG, tick_size, bids)
                if same_asks:
                    ask_bytes = group.ask_bytes
                elif asks is last_asks:
                    ask_bytes = last_ask_bytes
                else:
                    ask_bytes = encode_levels(ASKS_TAG, tick_size, asks)
                last_bids, last_bid_bytes, last_asks, last_ask_bytes = (
                    bids,
                    bid_bytes,
                    asks,
                    ask_bytes,
                )
                if head is None:
                    head = book_head(channel.symbol, book.timestamp)
                view = (bids, asks)
                group.view = view
                group.bid_bytes = bid_bytes
                group.ask_bytes = ask_bytes
                group.payload = head + bid_bytes + ask_bytes
                self._fan_out(group, old, view, ON_PRICE_DEPTH_BOOK)
        if channel.waiting:
            waiting = list(channel.waiting)
            channel.waiting.clear()
            for sub in waiting:
                self._deliver(sub)

    def _fan_out(self, group: Group, old: Any, view: Any, message_type: int) -> None:
        """Send ``group``'s new payload to each subscriber whose last message differs.

        ``old`` is the group's previous view: a subscriber that got it (the common
        case) is known to differ without comparing views.
        """
        payload = group.payload
        sent = 0
        for sub in group.subs:
            last = sub.last_sent
            if last is None:
                continue  # its initial message is owed (channel.waiting)
            if last is not old and last == view:
                continue
            session = sub.conn.session
            if session.congested:
                sub.conn.conflated[sub] = None
                continue
            sequence = sub.sequence + 1
            sub.sequence = sequence
            sub.last_sent = view
            session.send_frame(with_sequence(message_type, payload, sequence))
            sent += 1
        self.deliveries += sent

    # ------------------------------------------------------------------ single subscriptions

    def send_initial(self, sub: Subscription, book: BookMirror | None) -> None:
        """A new subscription's first message: the current view, or as soon as there is one."""
        group = sub.group
        if group.view is None:
            if book is None or book.transient:
                sub.channel.waiting[sub] = None
                return
            view = book.top() if group.kind == TOP_OF_BOOK else book.depth(group.depth)
            self._set_view(group, view, sub.channel.symbol, book)
        self._deliver(sub)

    def on_writable(self, session: Any) -> None:
        """A congested session drained: send each parked subscription its current view."""
        conn = session.state.get(CONNECTION_KEY)
        if conn is None:
            return
        parked = conn.conflated
        while parked and not session.congested and not session.closed:
            sub = next(iter(parked))
            del parked[sub]
            self._deliver(sub)

    def _deliver(self, sub: Subscription) -> None:
        group = sub.group
        view = group.view
        if view is None or sub.last_sent == view:
            return
        session = sub.conn.session
        if session.congested:
            sub.conn.conflated[sub] = None
            return
        sub.sequence += 1
        sub.last_sent = view
        message_type = ON_TOP_OF_BOOK if group.kind == TOP_OF_BOOK else ON_PRICE_DEPTH_BOOK
        session.send_frame(with_sequence(message_type, group.payload, sub.sequence))
        self.deliveries += 1

    @staticmethod
    def _set_view(group: Group, view: Any, symbol: str, book: BookMirror) -> None:
        group.view = view
        head = book_head(symbol, book.timestamp)
        if group.kind == TOP_OF_BOOK:
            group.payload = top_body(head, view, book.tick_size)
        else:
            bids, asks = view
            group.bid_bytes = encode_levels(BIDS_TAG, book.tick_size, bids)
            group.ask_bytes = encode_levels(ASKS_TAG, book.tick_size, asks)
            group.payload = head + group.bid_bytes + group.ask_bytes
