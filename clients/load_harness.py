"""Process plumbing shared by the benchmarks that drive ``optivex load``.

Starts service processes and waits for their stable ``listening on`` / ``ready``
log lines (the same contract the launcher relies on), samples the CPU time and
RSS of processes from ``/proc`` while a load runs (so a table can say which
process was saturated), and runs the load generator as its own process with
``--json``.  Linux only (``/proc``), like the benchmarks themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
READY = re.compile(r"\bready\s*$")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    return int(text.split()[1]) * PAGE


def children_of(pid: int) -> list[int]:
    """Direct child process ids of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class ServiceProcess:
    """One service-like process that logs ``listening on H:P`` then ``ready`` on stderr."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.host = ""
        self.port = 0
        self.tail: deque[str] = deque(maxlen=30)
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env if env is not None else os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for line in stream:
            line = line.rstrip()
            self.tail.append(line)
            if not self._ready.is_set():
                match = LISTENING.search(line)
                if match:
                    self.host, self.port = match.group(1), int(match.group(2))
                elif READY.search(line) and self.port:
                    self._ready.set()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self.process.poll() is not None else "timed out"
                raise RuntimeError(f"{self.name} {why} before ready:\n" + "\n".join(self.tail))

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        self._reader.join(2)
        return self.process.returncode


class CpuSampler:
    """Samples CPU seconds of named processes every ``interval_s`` in a thread."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sample()

    def _sample(self) -> None:
        values = {}
        for name, pid in self.pids.items():
            value = cpu_seconds(pid)
            if value is not None:
                values[name] = value
        self.samples.append((time.time(), values))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def usage(self, start: float, end: float) -> dict[str, float]:
        """Average CPU use (1.0 = one core) of each process between two wall times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            before = [s for s in self.samples if s[0] <= start][-1:]
            after = [s for s in self.samples if s[0] >= end][:1]
            inside = before + after
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        if t1 <= t0:
            return {}
        return {
            name: round((last[name] - first[name]) / (t1 - t0), 2) for name in first if name in last
        }


def run_load(
    args: Sequence[str],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    sampler_pids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Run ``python -m clients.load ARGS --json``; returns its document.

    With ``sampler_pids``, each step gets ``cpu``: the average CPU use of each
    named process (and of the generator itself) while that step ran.
    """
    command = [sys.executable, "-m", "clients.load", *args, "--json"]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=dict(env if env is not None else os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = dict(sampler_pids or {})
    pids["load"] = process.pid
    with CpuSampler(pids) as sampler:
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise RuntimeError(f"load generator timed out after {timeout_s:.0f} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode}): {err.strip()[-2000:]}")
    document: dict[str, Any] = json.loads(out)
    for step in document.get("steps", []):
        if "wall_start" in step:
            step["cpu"] = sampler.usage(step["wall_start"], step["wall_end"])
    return document


SERVICE_MODULES = {
    "order_book": "services.order_book",
    "info": "services.info",
    "admin": "services.admin",
    "risk_gateway": "services.risk_gateway",
}


class Exchange:
    """The whole exchange started by ``optivex up`` as a subprocess (journal on).

    ``ports`` and ``pids`` are keyed by service (``order_book``, ``info``,
    ``admin``, ``risk_gateway``); ``service_password`` is the per-start random
    one from the ready file (the memory benchmark logs in to the Order Book
    with it).
    """

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.ready_file = data_dir / "ready.json"
        self.env = dict(env if env is not None else os.environ)
        self.host = "127.0.0.1"
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.service_password = ""
        self.log = data_dir / "launcher.log"
        self._log_handle = self.log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "services.cli", "up",
                "--ports", "auto",
                "--data-dir", str(data_dir),
                "--quiet",
                "--ready-file", str(self.ready_file),
                "--listings", "none",
                *extra_args,
            ],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the exchange did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)
        info = json.loads(self.ready_file.read_text())
        names = {"order-book": "order_book", "info": "info", "admin": "admin",
                 "risk-gateway": "risk_gateway"}  # fmt: skip
        for key, name in names.items():
            self.ports[name] = int(info[key]["port"])
            self.host = str(info[key]["host"])
        self.service_password = str(info.get("service_password", {}).get("value", ""))
        for pid in children_of(self.process.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                for name, module in SERVICE_MODULES.items():
                    if module.encode() in cmdline:
                        self.pids[name] = pid

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_handle.close()
        return self.process.returncode

    def __enter__(self) -> Exchange:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_instruments(
    host: str, admin_port: int, symbols: Sequence[str], tick_size: float = 0.01
) -> None:
    """Create instruments through Admin (message 30) as the demo admin."""
    from services.common.pb import admin_pb2, common_pb2
    from services.common.wire.client import UpstreamConnection

    conn = await UpstreamConnection.open(
        host, admin_port, "admin", "admin-demo", name="bench-admin"
    )
    try:
        for symbol in symbols:
            await conn.request(
                common_pb2.MessageType.ADMIN_CREATE_INSTRUMENT_REQUEST,
                admin_pb2.CreateInstrumentRequest(
                    instrument=common_pb2.Instrument(symbol=symbol, description="bench"),
                    tick_size=tick_size,
                ),
            )
    finally:
        conn.close()
