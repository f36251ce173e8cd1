"""A self-healing link to one upstream service (the Order Book or Info).

Why a wrapper around :class:`UpstreamConnection`: Admin must never crash or
hang because a peer is down. The link reconnects in the background with
exponential backoff (0.05 s doubling to 2 s), logs one WARNING per outage
rather than one per attempt, and answers calls made while it is down at once
with :attr:`Outcome.UNAVAILABLE`, so admin requests fail fast with a clear
error instead of waiting.

*Synced* means more than connected: after logging in, the link sends a cheap
"barrier" request and waits for its answer. The peer writes its login snapshot
(every live book / instrument) right after the login response, and answers
requests in order, so when the barrier's answer arrives the snapshot is
complete and Admin's view (``registry.py``) is whole. Only then is the link
used for lifecycle work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from services.admin.lifecycle import Outcome
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError

__all__ = ["CallResult", "UpstreamLink"]

MIN_BACKOFF_S = 0.05
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
        self._on_reset = on_reset
        self._on_synced = on_synced
        self._barrier = barrier
        self.log = log
        self.connection: UpstreamConnection | None = None
        self.ssl: ssl.SSLContext | None = None
        """TLS context when the peer's port speaks TLS (Info may); None: plain TCP."""
        self.synced = False
        self.first_attempt = asyncio.Event()
        """Set once the first connection attempt has succeeded or failed."""
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._drop()

    def abort(self) -> None:
        """Drop the connection at once (a crash, for tests); the loop stops too."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        conn = self.connection
        if conn is not None and conn.transport is not None:
            conn.transport.abort()

    def _drop(self) -> None:
        self.synced = False
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close()

    # ------------------------------------------------------------------ calls

    async def call(self, message_type: int, message: Message) -> CallResult:
        """Send one request and classify how it ended; never raises for peer trouble."""
        conn = self.connection
        if conn is None or not self.synced or not conn.connected:
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

    # ------------------------------------------------------------------ the loop

    def _push(self, message_type: int, message: Any) -> None:
        try:
            self._on_push(message_type, message)
        except Exception:  # a bug in a view update must not kill the connection
            self.log.exception("%s: failed to apply a pushed message", self.label)

    async def _connect_once(self) -> UpstreamConnection:
        s = self.settings
        conn = await UpstreamConnection.open(
            s.host,
            s.port,
            s.username,
            s.password,
            name=self.label,
            on_push=self._push,
            heartbeat_interval_s=s.heartbeat_interval_s,
            idle_timeout_s=s.idle_timeout_s,
            timeout_s=s.request_timeout_s,
            ssl=self.ssl,
        )
        try:
            message_type, message = self._barrier()
            await asyncio.wait_for(conn.request(message_type, message), s.request_timeout_s)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self) -> None:
        delay = MIN_BACKOFF_S
        in_outage = False
        while not self._stopping:
            self._on_reset()
            try:
                conn = await self._connect_once()
            except (OSError, TimeoutError, RemoteError, ConnectionLost) as exc:
                reason = str(exc) or type(exc).__name__
                if not in_outage:
                    self.log.warning(
                        "cannot reach %s at %s (%s); retrying in the background",
                        self.label,
                        self.address,
                        reason,
                    )
                    in_outage = True
                else:
                    self.log.debug("still cannot reach %s: %s", self.label, reason)
                self.first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            self.connection = conn
            self.synced = True
            delay = MIN_BACKOFF_S
            if in_outage:
                self.log.info("reconnected to %s at %s", self.label, self.address)
            else:
                self.log.info("connected to %s at %s", self.label, self.address)
            in_outage = False
            self.first_attempt.set()
            self._on_synced()
            await conn.wait_closed()
            self.synced = False
            self.connection = None
            if not self._stopping:
                self.log.warning(
                    "lost connection to %s at %s; reconnecting", self.label, self.address
                )
                in_outage = True
