"""The load generator with a ledger: ``clients.load``'s open-loop run, plus proof.

:class:`LedgerLoadRun` is :class:`clients.load_run.LoadRun` (open-loop
schedule, seeded order mix, HdrHistogram latency from the *scheduled* send
time) whose participant connections stamp a unique ``client_order_id`` on
every insert and record its outcome, so the end of a run can prove that every
acknowledged order is in the Order Book's journal exactly once, and that the
journal holds no order its client was not told about (see
:class:`tests.reliability.ledger.Ledger`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.load_run import INSERT, LoadConnection, LoadRun
from services.common.users import Role, UserStore
from tests.reliability.ledger import Ledger


def write_users_file(path: Path, participants: int, service_password: str) -> dict[str, str]:
    """A users file with ``p00``.. participants, ``admin`` and ``service``; returns passwords."""
    store = UserStore()
    passwords = {f"p{i:02d}": f"p{i:02d}-load-pw" for i in range(participants)}
    passwords["admin"] = "admin-demo"
    for name, password in passwords.items():
        store.add_user(name, Role.ADMIN if name == "admin" else Role.PARTICIPANT, password=password)
    store.add_user("service", Role.SERVICE, password=service_password)
    store.save(path)
    return passwords


class LedgerConnection(LoadConnection):
    """A load connection whose inserts carry client_order_ids, outcomes recorded."""

    ledger: Ledger
    user = ""
    prefix = ""
    _counter: itertools.count[int]

    def request_callback(
        self, message_type: int, message: Any, callback: Callable[[Any], None]
    ) -> int:
        if message_type != INSERT:
            return super().request_callback(message_type, message, callback)
        coid = f"{self.prefix}-{next(self._counter)}"
        message.client_order_id = coid
        key = (self.user, coid)
        self.ledger.undecided.add(key)
        self.ledger.attempts += 1

        def done(response: Any) -> None:
            if not isinstance(response, Exception):
                self.ledger.undecided.discard(key)
                if response.error_message:
                    self.ledger.refused[key] = response.error_message
                else:
                    self.ledger.ack(key, response.order_id)
            callback(response)

        return super().request_callback(message_type, message, done)


class LedgerLoadRun(LoadRun):
    """:class:`LoadRun` with :class:`LedgerConnection` participants."""

    connection_class = LedgerConnection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = Ledger()

    def _participant_opened(self, conn: LoadConnection, user: str, index: int) -> None:
        assert isinstance(conn, LedgerConnection)
        conn.ledger = self.ledger
        conn.user = user
        conn.prefix = f"load-{self.options.seed}-{index}"
        conn._counter = itertools.count(1)


__all__ = ["LedgerConnection", "LedgerLoadRun", "write_users_file"]
