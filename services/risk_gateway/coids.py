"""client_order_id idempotency: the inserts the Order Book accepted, per user.

PROTOCOL.md: resending an insert with a ``client_order_id`` the user has used
before returns the original outcome and inserts nothing; such a resend counts
as a message and is subject to no other limit. The Gateway therefore remembers
each accepted ``(user, client_order_id)`` with the original outcome: a resend
is recognised before any other check and answered from here, without touching
the Order Book (which holds the same table and would answer the same).

Pure: no asyncio, no protobuf. Persisted by :mod:`services.risk_gateway.store`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from services.common.packed_outcome import pack_outcome, unpack_outcome

__all__ = [
    "MAX_CLIENT_ORDER_ID_BYTES",
    "ClientOrderIds",
    "Outcome",
    "client_order_id_too_long",
    "packed",
    "unpacked",
]

#: PROTOCOL.md: client_order_id is at most 64 bytes of UTF-8.
MAX_CLIENT_ORDER_ID_BYTES: Final = 64


def client_order_id_too_long(client_order_id: str) -> bool:
    # 16 characters are at most 64 bytes of UTF-8; only longer ids need encoding.
    return (
        len(client_order_id) > MAX_CLIENT_ORDER_ID_BYTES // 4
        and len(client_order_id.encode("utf-8", "surrogatepass")) > MAX_CLIENT_ORDER_ID_BYTES
    )


class Outcome(NamedTuple):
    """The original answer to an accepted insert (the fields of its response)."""

    order_id: int
    timestamp: int
    trade_ids: tuple[int, ...]
    traded_quantity: int
    resting_quantity: int


def packed(outcome: Outcome) -> bytes:
    """``outcome`` as the table keeps it (:mod:`services.common.packed_outcome`)."""
    return pack_outcome(*outcome)


def unpacked(data: bytes) -> Outcome:
    """The :class:`Outcome` a table entry holds."""
    return Outcome._make(unpack_outcome(data))


class ClientOrderIds:
    """``username -> client_order_id -> Outcome`` of accepted inserts.

    The outcomes are kept packed into ``bytes``: the table only grows (the
    contract keeps ids forever), and bytes are invisible to the cyclic garbage
    collector, whose full passes would otherwise walk every outcome ever
    accepted (see :mod:`services.common.packed_outcome`).
    """

    def __init__(self) -> None:
        self._table: dict[str, dict[str, bytes]] = {}

    def get(self, username: str, client_order_id: str) -> Outcome | None:
        table = self._table.get(username)
        data = None if table is None else table.get(client_order_id)
        return None if data is None else unpacked(data)

    def add(self, username: str, client_order_id: str, outcome: Outcome) -> bool:
        """Remember an accepted insert; False if the pair was already known (kept as is)."""
        table = self._table.setdefault(username, {})
        if client_order_id in table:
            return False
        table[client_order_id] = packed(outcome)
        return True

    def items(self) -> Iterator[tuple[str, str, Outcome]]:
        for username, table in self._table.items():
            for client_order_id, data in table.items():
                yield username, client_order_id, unpacked(data)

    def __len__(self) -> int:
        return sum(len(table) for table in self._table.values())

    def users(self) -> list[str]:
        """The users with accepted inserts (a list: it may be walked over several
        loop turns while new users arrive)."""
        return list(self._table)

    def copy_user(self, username: str) -> dict[str, bytes]:
        """One user's ``client_order_id -> packed outcome``, copied (a dict copy
        runs in C): a snapshot copies the table on the event loop one user per
        step and unpacks it (:func:`unpacked`) where it writes it."""
        return dict(self._table.get(username, {}))
