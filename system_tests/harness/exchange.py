"""What to grade: our exchange started as a subprocess, or one already running.

The local exchange is started exactly as an operator would (``python -m
services.cli up``) on free ports with a fresh data directory; nothing of it is
imported.  The launcher writes a ready file with the bound addresses and the
random password of the ``service`` account once all four services are ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from system_tests.harness.conn import Endpoint

DEMO_ADMIN = ("admin", "admin-demo")
DEMO_PARTICIPANTS = (
    ("alice", "alice-demo"),
    ("bob", "bob-demo"),
    ("carol", "carol-demo"),
    ("dave", "dave-demo"),
)
SERVICES = ("order-book", "info", "admin", "risk-gateway")


@dataclass
class Target:
    """Addresses and logins of the exchange under test."""

    order_book: Endpoint
    info: Endpoint
    admin: Endpoint
    gateway: Endpoint
    admin_login: tuple[str, str] = DEMO_ADMIN
    participants: list[tuple[str, str]] = field(default_factory=lambda: list(DEMO_PARTICIPANTS))
    service_login: tuple[str, str] | None = None
    local: LocalExchange | None = None
    sentinels: dict[str, Any] = field(default_factory=dict)
    """Endpoint name -> never-logged-in connection watched since the session started."""

    def endpoints(self) -> list[Endpoint]:
        return [self.order_book, self.info, self.admin, self.gateway]

    def describe(self) -> str:
        where = ", ".join(str(e) for e in self.endpoints())
        kind = "local exchange (started by the grader)" if self.local else "external exchange"
        return f"{kind}: {where}"


def parse_target(spec: str) -> tuple[str, list[int]]:
    """``HOST:OB,INFO,ADMIN,GW`` -> (host, [4 ports])."""
    host, sep, ports_text = spec.rpartition(":")
    ports = [p.strip() for p in ports_text.split(",")]
    if not sep or not host or len(ports) != 4 or not all(p.isdigit() for p in ports):
        raise ValueError(
            f"--target expects HOST:ORDER_BOOK,INFO,ADMIN,GATEWAY ports, e.g. "
            f"127.0.0.1:7401,7402,7403,7404; received {spec!r}"
        )
    return host.strip("[]"), [int(p) for p in ports]


def parse_logins(spec: str) -> list[tuple[str, str]]:
    """``alice:alice-demo,bob:bob-demo`` -> [(user, password), ...]."""
    logins = []
    for item in spec.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user:
            raise ValueError(
                f"--participants expects user:password[,user:password...]; received {item!r}"
            )
        logins.append((user, password))
    return logins


class LocalExchange:
    """``optivex up --ports auto`` in a subprocess, with its ready file and log."""

    def __init__(self, workdir: Path, start_timeout_s: float = 90.0) -> None:
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        self.data_dir = workdir / "data"
        self.ready_file = workdir / "ready.json"
        self.log_path = workdir / "exchange.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> dict[str, dict[str, object]]:
        """Start and wait for the ready file; returns its contents."""
        self.ready_file.unlink(missing_ok=True)
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n=== grader: start #{self.starts} ===\n".encode())
        log.flush()
        command = [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--ports",
            "auto",
            "--data-dir",
            str(self.data_dir),
            "--listings",
            "none",
            "--quiet",
            "--ready-file",
            str(self.ready_file),
        ]
        env = dict(os.environ)
        env.pop("OPTIVEX_SERVICE_PASSWORD", None)  # the launcher draws a fresh one
        if self.starts > 1 and self._password is not None:
            env["OPTIVEX_SERVICE_PASSWORD"] = self._password  # same account across restarts
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the exchange exited with status {self.process.returncode} before it was "
                    f"ready; last log lines:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the exchange was not ready within {self.start_timeout_s:.0f} s; "
                    f"last log lines:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        ready: dict[str, dict[str, object]] = json.loads(self.ready_file.read_text())
        self._password = str(ready["service_password"]["value"])
        return ready

    _password: str | None = None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL (launcher and the services it started) after ``timeout_s``."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        children = _children_of(process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for pid in [*_children_of(process.pid), *children, process.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            return process.wait(5)


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc; empty elsewhere)."""
    children: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def restart_local(target: Target) -> None:
    """Stop the local exchange cleanly and start it again on the same data directory.

    Ports are drawn afresh, so the target's endpoints are updated in place; the
    ``service`` account keeps its password.
    """
    exchange = target.local
    if exchange is None:
        raise RuntimeError("only an exchange started by the grader can be restarted")
    status = exchange.stop()
    if status not in (0, None):
        raise RuntimeError(f"the exchange stopped with status {status}:\n{exchange.log_tail()}")
    fresh = local_target(exchange, exchange.start())
    target.order_book, target.info, target.admin, target.gateway = (
        fresh.order_book,
        fresh.info,
        fresh.admin,
        fresh.gateway,
    )
    target.service_login = fresh.service_login


def local_target(exchange: LocalExchange, ready: dict[str, dict[str, object]]) -> Target:
    """The Target for a started local exchange (demo logins, service password from ready)."""

    def endpoint(name: str, label: str) -> Endpoint:
        entry = ready[name]
        return Endpoint(label, str(entry["host"]), int(str(entry["port"])))

    return Target(
        order_book=endpoint("order-book", "Order Book"),
        info=endpoint("info", "Info"),
        admin=endpoint("admin", "Admin"),
        gateway=endpoint("risk-gateway", "Risk Gateway"),
        service_login=("service", str(ready["service_password"]["value"])),
        local=exchange,
    )
