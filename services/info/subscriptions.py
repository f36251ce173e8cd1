"""Who is subscribed to what, and what each subscription was last sent.

The rules (PROTOCOL.md, market-data rules) live here as data:

* a subscription is (connection, instrument, type); a depth subscription also has
  its depth (0 = all levels); subscribing twice to the same (symbol, type) or
  unsubscribing from one the connection does not have is an error;
* each subscription numbers its own messages from 1 (``sequence``) and remembers the
  view it last sent (``last_sent``): "changed" means "differs from that";
* subscriptions that see the same view of the same instrument share a
  :class:`Group` (all top-of-book subscribers of an instrument; all depth
  subscribers with the same depth), so a view is computed and encoded once per
  group, not once per subscriber;
* a trade goes once to every connection with any subscription to the instrument:
  :attr:`Channel.trade_conns` counts each connection's subscriptions to it.

The sending itself (protobuf, sessions) is the publisher's business; this module
only keeps the books straight. Pure: no asyncio, no protobuf (a test checks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from services.info.events import PRICE_DEPTH_BOOK, TOP_OF_BOOK

__all__ = ["Channel", "Connection", "Group", "Subscription", "Subscriptions", "type_label"]

_LABELS: Final = {TOP_OF_BOOK: "TOP_OF_BOOK", PRICE_DEPTH_BOOK: "PRICE_DEPTH_BOOK"}


def type_label(kind: int) -> str:
    """The protocol name of a subscription type (for error texts)."""
    return _LABELS.get(kind, str(kind))


class Group:
    """Subscribers of one instrument that see the same view (type and depth)."""

    __slots__ = ("ask_bytes", "bid_bytes", "depth", "kind", "payload", "subs", "view")

    def __init__(self, kind: int, depth: int) -> None:
        self.kind = kind
        self.depth = depth
        self.subs: dict[Subscription, None] = {}
        self.view: Any = None
        """The newest publishable view of this group (None until first computed)."""
        self.payload: bytes = b""
        """``view`` encoded once, without a sequence number (the publisher's cache)."""
        self.bid_bytes: bytes = b""
        self.ask_bytes: bytes = b""
        """A depth view's sides as encoded in ``payload``: a side that did not change
        is not encoded again (the publisher's cache)."""


class Subscription:
    """One (connection, instrument, type) subscription."""

    __slots__ = ("channel", "conn", "group", "last_sent", "sequence")

    def __init__(self, conn: Connection, channel: Channel, group: Group) -> None:
        self.conn = conn
        self.channel = channel
        self.group = group
        self.sequence = 0
        """Sequence number of the last message sent on this subscription."""
        self.last_sent: Any = None
        """The view last sent (None: the initial message is still owed)."""

    @property
    def kind(self) -> int:
        return self.group.kind

    @property
    def key(self) -> tuple[str, int]:
        return (self.channel.symbol, self.group.kind)


class Connection:
    """The market-data side of one client connection."""

    __slots__ = ("conflated", "session", "subs")

    def __init__(self, session: Any) -> None:
        self.session = session
        """The wire session (opaque here)."""
        self.subs: dict[tuple[str, int], Subscription] = {}
        self.conflated: dict[Subscription, None] = {}
        """Subscriptions with a newer view held back while the connection is congested."""


class Channel:
    """Everything published for one live instrument."""

    __slots__ = ("depths", "order_book_id", "symbol", "top", "trade_conns", "waiting")

    def __init__(self, symbol: str, order_book_id: int) -> None:
        self.symbol = symbol
        self.order_book_id = order_book_id
        self.top: Group | None = None
        self.depths: dict[int, Group] = {}
        self.trade_conns: dict[Connection, int] = {}
        """Connections subscribed to this instrument -> how many subscriptions each."""
        self.waiting: dict[Subscription, None] = {}
        """New subscriptions whose initial message waits for a publishable book."""

    def groups(self) -> Iterator[Group]:
        if self.top is not None:
            yield self.top
        yield from self.depths.values()

    @property
    def subscribed(self) -> bool:
        return bool(self.trade_conns)


class Subscriptions:
    """All channels and connections; every operation keeps both sides consistent."""

    __slots__ = ("by_book", "channels")

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.by_book: dict[int, Channel] = {}

    # ------------------------------------------------------------------ channels

    def open_channel(self, symbol: str, order_book_id: int) -> Channel:
        channel = Channel(symbol, order_book_id)
        self.channels[symbol] = channel
        self.by_book[order_book_id] = channel
        return channel

    def close_channel(self, symbol: str) -> list[Subscription]:
        """End every subscription to ``symbol``; returns them (nothing more is sent)."""
        channel = self.channels.pop(symbol, None)
        if channel is None:
            return []
        if self.by_book.get(channel.order_book_id) is channel:
            del self.by_book[channel.order_book_id]
        ended = [sub for group in channel.groups() for sub in group.subs]
        for sub in ended:
            sub.conn.subs.pop(sub.key, None)
            sub.conn.conflated.pop(sub, None)
        channel.top = None
        channel.depths.clear()
        channel.trade_conns.clear()
        channel.waiting.clear()
        return ended

    # ------------------------------------------------------------------ subscribe

    def subscribe(self, conn: Connection, symbol: str, kind: int, depth: int) -> Subscription | str:
        """Add a subscription, or return why not (the error text)."""
        channel = self.channels.get(symbol)
        if channel is None:
            return f"unknown instrument symbol {symbol!r}"
        if kind not in _LABELS:
            return "subscription_type must be TOP_OF_BOOK (0) or PRICE_DEPTH_BOOK (1)"
        if kind == PRICE_DEPTH_BOOK and depth < 0:
            return "depth must not be negative (0 means all levels)"
        key = (symbol, kind)
        if key in conn.subs:
            return f"already subscribed to {symbol} {type_label(kind)}"
        if kind == TOP_OF_BOOK:
            group = channel.top
            if group is None:
                group = channel.top = Group(TOP_OF_BOOK, 1)
        else:
            group = channel.depths.get(depth)
            if group is None:
                group = channel.depths[depth] = Group(PRICE_DEPTH_BOOK, depth)
        sub = Subscription(conn, channel, group)
        group.subs[sub] = None
        conn.subs[key] = sub
        channel.trade_conns[conn] = channel.trade_conns.get(conn, 0) + 1
        return sub

    def unsubscribe(self, conn: Connection, symbol: str, kind: int) -> str | None:
        """Remove a subscription; returns the error text if there is none to remove."""
        sub = conn.subs.get((symbol, kind))
        if sub is None:
            if kind not in _LABELS:
                return "subscription_type must be TOP_OF_BOOK (0) or PRICE_DEPTH_BOOK (1)"
            return f"not subscribed to {symbol} {type_label(kind)}"
        self._remove(sub)
        return None

    def drop_connection(self, conn: Connection) -> None:
        """The connection closed: forget all of its subscriptions."""
        for sub in list(conn.subs.values()):
            self._remove(sub)

    def _remove(self, sub: Subscription) -> None:
        conn = sub.conn
        channel = sub.channel
        group = sub.group
        del conn.subs[sub.key]
        conn.conflated.pop(sub, None)
        channel.waiting.pop(sub, None)
        group.subs.pop(sub, None)
        if not group.subs:
            if group is channel.top:
                channel.top = None
            elif channel.depths.get(group.depth) is group:
                del channel.depths[group.depth]
        left = channel.trade_conns.get(conn, 0) - 1
        if left > 0:
            channel.trade_conns[conn] = left
        else:
            channel.trade_conns.pop(conn, None)
