"""A self-healing link to one upstream service (the Order Book or Info).

Why a wrapper: Admin must never crash or hang because a peer is down. The
shared :class:`~services.common.wire.link.ReconnectingLink` reconnects in the
background (backoff 0.05 s doubling to 2 s, one WARNING per outage); this
module answers calls made while it is down at once with
:attr:`Outcome.UNAVAILABLE`, so admin requests fail fast with a clear error
instead of waiting.

*Synced* means more than connected: after logging in, the link sends a cheap
"barrier" request and waits for its answer. The peer writes its login snapshot
(every live book / instrument) right after the login response, and answers
requests in order, so when the barrier's answer arrives the snapshot is
complete and Admin's view (``registry.py``) is whole. Only then is the link
used for lifecycle work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from services.admin.lifecycle import Outcome
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError
from services.common.wire.link import ReconnectingLink

__all__ = ["CallResult", "UpstreamLink"]

MAX_BACKOFF_S = 2.0


@dataclass(slots=True)
class CallResult:
    """How one request on a link ended (see :class:`Outcome`)."""

    outcome: Outcome
    response: Any = None
    error: str = ""
    late: asyncio.Future[Any] | None = None
    """After a timeout: the request's future, which may still be answered."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    username: str
    password: str
    heartbeat_interval_s: float
    idle_timeout_s: float
    request_timeout_s: float


class UpstreamLink:
    """Keeps one logged-in, synced connection to a peer; see the module docstring."""

    def __init__(
        self,
        label: str,
        settings: LinkSettings,
        *,
        on_push: Callable[[int, Any], None],
        on_reset: Callable[[], None],
        on_synced: Callable[[], None],
        barrier: Callable[[], tuple[int, Message]],
        log: logging.Logger,
    ) -> None:
        self.label = label
        self.settings = settings
        self._on_push = on_push
        self._on_synced = on_synced
        self._barrier = barrier
        self.log = log
        self.link = ReconnectingLink(
            label,
            settings.host,
            settings.port,
            settings.username,
            settings.password,
            log=log,
            on_push=self._push,
            on_connecting=on_reset,
            on_up=self._sync,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            idle_timeout_s=settings.idle_timeout_s,
            connect_timeout_s=settings.request_timeout_s,
            backoff_max_s=MAX_BACKOFF_S,
        )
        self.first_attempt = self.link.first_attempt
        """Set once the first connection attempt has succeeded or failed."""

    @property
    def address(self) -> str:
        return self.link.address

    @property
    def connection(self) -> UpstreamConnection | None:
        return self.link.conn if self.link.connected else None

    @property
    def synced(self) -> bool:
        return self.link.connected

    def start(self) -> None:
        self.link.start()

    async def stop(self) -> None:
        await self.link.stop()

    def abort(self) -> None:
        """Drop the connection at once (a crash, for tests); the loop stops too."""
        self.link.abort()

    # ------------------------------------------------------------------ calls

    async def call(self, message_type: int, message: Message) -> CallResult:
        """Send one request and classify how it ended; never raises for peer trouble."""
        conn = self.connection
        if conn is None or not self.synced:
            return CallResult(Outcome.UNAVAILABLE, error=f"{self.label} unavailable")
        future = conn.request_raw(message_type, message)
        done, _ = await asyncio.wait({future}, timeout=self.settings.request_timeout_s)
        if not done:
            return CallResult(
                Outcome.UNKNOWN,
                error=(f"no answer from {self.label} within {self.settings.request_timeout_s:g} s"),
                late=future,
            )
        exc = future.exception()
        if isinstance(exc, ConnectionLost):
            return CallResult(Outcome.UNKNOWN, error=f"lost connection to {self.label}")
        if isinstance(exc, RemoteError):
            return CallResult(Outcome.REFUSED, error=str(exc))
        if exc is not None:
            raise exc
        response = future.result()
        if response.error_message:
            return CallResult(Outcome.REFUSED, response, str(response.error_message))
        return CallResult(Outcome.OK, response)

    # ------------------------------------------------------------------ the link's hooks

    def _push(self, message_type: int, message: Any) -> None:
        try:
            self._on_push(message_type, message)
        except Exception:  # a bug in a view update must not kill the connection
            self.log.exception("%s: failed to apply a pushed message", self.label)

    async def _sync(self, conn: UpstreamConnection) -> None:
        """After login: the barrier's answer proves the login snapshot is complete."""
        message_type, message = self._barrier()
        await asyncio.wait_for(conn.request(message_type, message), self.settings.request_timeout_s)
        self._on_synced()
