"""Run the real exchange as processes, the way a user does, for black-box-ish tests.

:class:`Exchange` runs ``python -m services.cli up --ports auto`` and reads the
bound ports from its ready file; :class:`ServiceProcess` runs one service alone
(for tests that kill and restart a single service on the same port).  Both wait
on what the processes write (the ready file, the ``listening on``/``ready``
lines), never on fixed sleeps, with deadlines so a broken start fails fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

from clients.sdk import Client

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
SERVICE_PASSWORD = "harness-service-password"


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def traded_volume(info_port: int, ssl: SSLContext | None = None, within_s: float = 20) -> int:
    """The volume traded on the exchange as Info's quotes tell it, once it is above 0
    (or 0 after ``within_s``): how a test sees that the bots ``optivex up`` started
    are trading, from outside, as any participant would."""
    async with Client.connect(
        gateway_port=None, info_port=info_port, username="dave", password="dave-demo", ssl=ssl
    ) as dave:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            volume = sum(q.volume for q in (await dave.quotes()).values())
            if volume > 0 or loop.time() >= deadline:
                return volume
            await asyncio.sleep(0.2)  # polling a counter; there is no push for "some trade"


def stable_port() -> int:
    """A free port below the kernel's ephemeral range, for a service that must be
    restarted on the same port: while it is down, no outgoing connection or
    port-0 listener anywhere on the machine can be handed this number."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(20001, min(low, 32768)))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(p) for p in task.read_text().split()]
    return children


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Exchange:
    """``optivex up --ports auto`` in a subprocess."""

    data_dir: Path
    listings: str = "none"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    service_password: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "ready.json"

    def start(self, timeout: float = 60.0) -> Exchange:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--ports",
            "auto",
            "--data-dir",
            str(self.data_dir),
            "--quiet",
            "--ready-file",
            str(self.ready_file),
            "--listings",
            self.listings,
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        process = self.process
        wait_until(
            lambda: self.ready_file.exists() or process.poll() is not None,
            timeout,
            "the exchange's ready file",
        )
        if not self.ready_file.exists():
            self.stdout, self.stderr = process.communicate(timeout=10)
            raise AssertionError(f"optivex up exited early:\n{self.stdout}\n{self.stderr}")
        ready = json.loads(self.ready_file.read_text())
        self.ports = {name: entry["port"] for name, entry in ready.items() if "port" in entry}
        self.service_password = ready["service_password"]["value"]
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def services(self) -> list[int]:
        """PIDs of the launcher's child processes (the four services, plus bots)."""
        return child_pids(self.pid)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; returns the exit status (output is kept)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        self.stdout += out
        self.stderr += err
        return self.process.returncode

    def kill_tree(self) -> None:
        """Last-resort cleanup for a failed test: kill the launcher and its children."""
        if self.process is None or self.process.poll() is not None:
            return
        for pid in self.services():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.communicate()


class ServiceProcess:
    """One service on its own: ``python -m services.<module> --port ... --data-dir ...``."""

    def __init__(self, module: str, data_dir: Path, *args: str, port: int = 0) -> None:
        self.module = module
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.lines: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        self._ready.clear()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"services.{self.module}",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            cwd=ROOT,
            env=_env(OPTIVEX_SERVICE_PASSWORD=SERVICE_PASSWORD),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        process = self.process
        wait_until(
            lambda: self._ready.is_set() or process.poll() is not None,
            timeout,
            f"{self.module} to be ready",
        )
        if not self._ready.is_set():
            raise AssertionError(f"{self.module} exited early:\n" + "\n".join(self.lines))
        return self

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip()
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
            elif line.endswith(" ready") and self.port:
                self._ready.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
