"""The engine's state, declared once: what a journal replay must reproduce.

Why a base class: the engine's methods live in three modules (``engine.py`` for the
commands, ``matching.py`` for the crossing path, ``views.py`` for read-only views),
and each needs to see the same slotted attributes. Declaring them here keeps one
authoritative list (``Engine.state_hash`` covers every one of them except the
pending events and the username intern table, which are not state).
"""

from __future__ import annotations

from services.order_book.book import Book
from services.order_book.events import Event

__all__ = ["EngineState"]


class EngineState:
    """Books, counters, the client_order_id table and the pending events."""

    __slots__ = (
        "_books",
        "_coids",
        "_events",
        "_next_book_id",
        "_next_order_id",
        "_next_trade_id",
        "_retired_profit",
        "_seq",
        "_traded_volume",
        "_users",
    )

    def __init__(self) -> None:
        # Live books by id (ascending: ids only grow, dicts keep insertion order).
        self._books: dict[int, Book] = {}
        # Events not yet drained by the caller, oldest first.
        self._events: list[Event] = []
        self._seq = 0  # last sequence number handed out
        self._next_book_id = 1
        self._next_order_id = 1
        self._next_trade_id = 1
        self._traded_volume = 0
        # (tick_size, profit_ticks) of deleted books: their profit stays in the stats.
        self._retired_profit: list[tuple[float, int]] = []
        # username -> client_order_id -> the accepted insert's InsertResult,
        # packed into bytes (services.common.packed_outcome): the table only
        # grows, and bytes are invisible to the cyclic GC's full passes.
        self._coids: dict[str, dict[str, bytes]] = {}
        # One str object per username, shared by all of its resting orders (memory).
        self._users: dict[str, str] = {}
