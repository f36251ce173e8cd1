"""A small request/response client for command-line tools.

Why not use :class:`UpstreamConnection` directly: a CLI needs three things it
does not give, and they are the same for every tool:

* **one exception per kind of trouble**, each with the exit status scripts
  rely on (:class:`ConnectFailed` and :class:`ConnectionProblem`: 3,
  :class:`RequestRefused`: 1), and a one-line message fit for stderr;
* **a timeout on every request**, so a hung peer cannot hang a script;
* **pipelining** (:meth:`WireClient.submit`) for bulk work such as a bootstrap
  of thousands of instruments, with answers still matched to their requests.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any

from google.protobuf.message import Message

from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost, RemoteError

__all__ = [
    "ConnectFailed",
    "ConnectionProblem",
    "RequestRefused",
    "WireClient",
    "WireClientError",
]


class WireClientError(Exception):
    """Base of the client's errors; ``exit_status`` is what a CLI should return."""

    exit_status = 3


class ConnectFailed(WireClientError):
    """Could not connect or log in (wrong address, service down, bad credentials)."""


class ConnectionProblem(WireClientError):
    """The connection broke, or a request was not answered in time."""


class RequestRefused(WireClientError):
    """The service answered the request with an error; it changed nothing."""

    exit_status = 1


class WireClient:
    """A logged-in connection with timeouts and typed errors (see the module docstring)."""

    def __init__(self, conn: UpstreamConnection, name: str, timeout_s: float) -> None:
        self.conn = conn
        self.name = name
        self.timeout_s = timeout_s

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        name: str = "service",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> WireClient:
        """Connect and log in; raises :class:`ConnectFailed` with a readable reason."""
        where = f"{name} at {host}:{port}"
        try:
            conn = await UpstreamConnection.open(
                host,
                port,
                username,
                password,
                name=name,
                timeout_s=connect_timeout_s,
            )
        except RemoteError as exc:
            raise ConnectFailed(f"login to {where} refused: {exc}") from None
        except TimeoutError:
            raise ConnectFailed(f"cannot connect to {where}: timed out") from None
        except (OSError, ConnectionLost) as exc:
            errno = exc.errno if isinstance(exc, OSError) else None
            reason = os.strerror(errno).lower() if errno else str(exc)
            raise ConnectFailed(f"cannot connect to {where}: {reason}") from None
        return cls(conn, name, timeout_s)

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def submit(self, message_type: int, message: Message) -> asyncio.Future[Any]:
        """Send now, answer later: the future resolves to the raw response."""
        return self.conn.request_raw(message_type, message)

    async def result(self, future: asyncio.Future[Any]) -> Any:
        """Wait for a submitted request; an ``error_message`` is returned, not raised."""
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise ConnectionProblem(
                f"no answer from {self.name} within {self.timeout_s:g} s"
            ) from None
        except ConnectionLost:
            raise ConnectionProblem(f"lost the connection to {self.name}") from None
        except RemoteError as exc:  # ON_ERROR: the request was not acted on
            raise RequestRefused(str(exc)) from None

    async def call_raw(self, message_type: int, message: Message) -> Any:
        return await self.result(self.submit(message_type, message))

    async def call(self, message_type: int, message: Message) -> Any:
        """Send a request and return its response; an error answer raises RequestRefused."""
        response = await self.call_raw(message_type, message)
        if response.error_message:
            raise RequestRefused(response.error_message)
        return response

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()
