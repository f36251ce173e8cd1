"""The four services as separate processes, for fault injection.

Builds on :class:`tests.launcher.harness.ServiceProcess` (start, ``ready`` line,
stop by signal) and adds what fault tests need: every log line kept (the
secrets test greps them all), restarts on the same port (ports are taken below
the ephemeral range, so nothing else can grab one while its service is down),
``SIGSTOP``/``SIGCONT``, and the service's open file descriptors and RSS read
from ``/proc``.

A :class:`Cluster` starts Order Book, Info, Admin and Risk Gateway in that
order, wired to each other, with extra flags per service (short idle timeouts,
fsync policy, a users file).  Nothing here sleeps to synchronise: starts wait
for the ``ready`` line, everything else waits on messages with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common.pb import admin_pb2, common_pb2
from services.common.wire.client import UpstreamConnection
from tests.launcher.harness import SERVICE_PASSWORD, ServiceProcess, stable_port, wait_until

MT = common_pb2.MessageType
DEMO_PASSWORDS = {
    "admin": "admin-demo",
    "alice": "alice-demo",
    "bob": "bob-demo",
    "carol": "carol-demo",
    "dave": "dave-demo",
}


class Service(ServiceProcess):
    """One service process that keeps its whole log and can be restarted in place."""

    def __init__(self, name: str, module: str, data_dir: Path, *args: str) -> None:
        super().__init__(module, data_dir, *args, port=stable_port())
        self.name = name
        self.log: list[str] = []
        self.starts = 0

    def start(self, timeout: float = 30.0) -> Service:
        self.starts += 1
        super().start(timeout)
        return self

    def _pump(self, process: subprocess.Popen[str]) -> None:
        # ServiceProcess keeps the last 200 lines; the secrets test needs all of them.
        assert process.stderr is not None
        for line in process.stderr:
            self.log.append(line.rstrip())
            self.lines.append(line.rstrip())
            if line.rstrip().endswith(" ready") and self.port:
                self._ready.set()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill9(self) -> None:
        """SIGKILL and reap: a crash, nothing flushed by the process itself."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def restart(self) -> None:
        """Kill -9 and start again on the same port from the same data directory."""
        self.kill9()
        self.start()

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.log)


class Cluster:
    """Order Book, Info, Admin and Risk Gateway as processes (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        common: tuple[str, ...] = (),
        order_book: tuple[str, ...] = ("--fsync", "none"),
        info: tuple[str, ...] = (),
        admin: tuple[str, ...] = ("--fsync-intents", "false"),
        gateway: tuple[str, ...] = ("--reconnect-max-backoff-s", "0.2"),
    ) -> None:
        self.root = root
        self.book = Service("order-book", "order_book", root / "ob", *common, *order_book)
        ob = ("--order-book-port", str(self.book.port))
        self.info = Service("info", "info", root / "info", *common, *ob, *info)
        upstream = (*ob, "--info-port", str(self.info.port))
        self.admin = Service("admin", "admin", root / "admin", *common, *upstream, *admin)
        self.gateway = Service(
            "risk-gateway", "risk_gateway", root / "rg", *common, *upstream, *gateway
        )

    @property
    def services(self) -> list[Service]:
        return [self.book, self.info, self.admin, self.gateway]

    def start(self) -> Cluster:
        for service in self.services:
            service.start()
        return self

    def stop(self) -> dict[str, int]:
        """SIGTERM in reverse order; returns each exit status."""
        statuses: dict[str, int] = {}
        for service in reversed(self.services):
            if service.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    if service.process.poll() is None:
                        os.kill(service.pid, signal.SIGCONT)  # a stopped one cannot exit
                statuses[service.name] = service.stop()
        return statuses

    def logs(self) -> Iterator[tuple[str, str]]:
        for service in self.services:
            for line in service.log:
                yield service.name, line

    # ------------------------------------------------------------------ admin requests

    async def admin_call(self, message_type: int, message: Any, timeout: float = 10.0) -> Any:
        """One request to Admin, retrying while Admin (re)connects to its peers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                conn = await UpstreamConnection.open(
                    "127.0.0.1", self.admin.port, "admin", DEMO_PASSWORDS["admin"], name="t-admin"
                )
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)  # Admin is restarting: nothing to wait on
                continue
            try:
                response = await asyncio.wait_for(conn.request_raw(message_type, message), timeout)
            finally:
                conn.close()
            if "unavailable" in response.error_message and loop.time() < deadline:
                await asyncio.sleep(0.05)  # Admin's links reconnect with their own backoff
                continue
            return response

    async def create(self, symbol: str, tick_size: float = 0.01) -> int:
        response = await self.admin_call(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol=symbol, currency="USD", multiplier=1.0),
                tick_size=tick_size,
            ),
        )
        assert response.error_message == "", response.error_message
        return int(response.order_book_id)


def wait_for_exit(service: Service, timeout: float = 15.0) -> int:
    assert service.process is not None
    process = service.process
    wait_until(lambda: process.poll() is not None, timeout, f"{service.name} to exit")
    return process.returncode


def timed(what: str) -> Any:
    """A context manager printing how long a phase took (shows in -s / failure output)."""

    @contextlib.contextmanager
    def manager() -> Iterator[None]:
        started = time.perf_counter()
        yield
        print(f"{what}: {time.perf_counter() - started:.2f} s")

    return manager()


__all__ = ["DEMO_PASSWORDS", "SERVICE_PASSWORD", "Cluster", "Service", "wait_for_exit"]
