"""What every ``optivex admin`` command shares: errors, the target, connection options.

Split out of ``admin_cli.py`` so the command modules (limits, bootstrap) can use
them without importing the entry point.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from clients.wireclient import WireClient

__all__ = ["PROG", "Command", "Parser", "Target", "UsageError", "add_connection_options"]

PROG = "optivex admin"
PASSWORD_ENV = "OPTIVEX_ADMIN_PASSWORD"


class UsageError(Exception):
    """Bad command line or configuration: exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors become one line and exit status 2 (via UsageError)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Target:
    """Where and as whom the CLI connects."""

    admin_host: str
    admin_port: int
    gateway_host: str
    gateway_port: int
    username: str
    password: str
    timeout_s: float
    json: bool

    async def admin(self) -> WireClient:
        return await WireClient.connect(
            self.admin_host,
            self.admin_port,
            self.username,
            self.password,
            name="admin service",
            timeout_s=self.timeout_s,
        )

    async def gateway(self) -> WireClient:
        return await WireClient.connect(
            self.gateway_host,
            self.gateway_port,
            self.username,
            self.password,
            name="risk gateway",
            timeout_s=self.timeout_s,
        )


Command = Callable[[argparse.Namespace, Target, TextIO], Coroutine[Any, Any, int]]


def add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Connection options, accepted before or after the command.

    After the command they only override what was given (defaults suppressed),
    so ``--json`` works in either place.
    """
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    group = parser.add_argument_group("connection")
    group.add_argument("--config", metavar="FILE", default=default(None), help="TOML config file")
    group.add_argument("--host", metavar="HOST", default=default(None), help="host of the services")
    group.add_argument(
        "--admin-port",
        metavar="PORT",
        type=int,
        default=default(None),
        help="Admin port (default 7403)",
    )
    group.add_argument(
        "--gateway-port",
        metavar="PORT",
        type=int,
        default=default(None),
        help="Risk Gateway port (default 7404)",
    )
    group.add_argument(
        "--username", metavar="NAME", default=default("admin"), help="login (default admin)"
    )
    group.add_argument(
        "--password-stdin",
        action="store_true",
        default=default(False),
        help=f"read the password from stdin (else ${PASSWORD_ENV}, else the demo password)",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=default(30.0),
        help="seconds per request (default 30)",
    )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
