"""The machine's floor: the cheapest two-hop path an asyncio Python process chain can have.

Why: the null relay (``bench.relay``) tells what the exchange costs compared
with the project's own wire layer.  It cannot tell whether a goal is out of
reach *for any Python design* on this machine.  This module measures that
bound with the same load generator and order mix:

* ``python -m bench.floor pipe --port P --upstream-port Q``: an
  ``asyncio.Protocol`` that copies bytes from each client to its own upstream
  connection and back, with no framing, no protobuf and no logic.
* ``python -m bench.floor echo --port Q``: an ``asyncio.Protocol`` that cuts
  frames and answers each with the smallest valid response of the next
  message number (``request_id`` copied, nothing else), a login included.

generator -> pipe -> echo -> pipe -> generator is the path of an order through
the Risk Gateway and the Order Book with everything but the sockets and the
event loops taken away.  Whatever the exchange does, it cannot be faster than
this on the same machine; ``run`` measures it at the fixed rates of the
end-to-end benchmark and at 30,000 orders/s, with the CPU each process used.

Both processes log ``listening on HOST:PORT`` and ``ready`` like the services,
so :class:`clients.load_harness.ServiceProcess` starts them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import struct
import sys
from typing import Any, Final

from bench.e2e_bench import per_order
from bench.relay_bench import flow_args, settings, strip
from clients.load_harness import ServiceProcess, run_load
from clients.load_stats import format_us, markdown_table
from services.common.logs import log_listening, log_ready

HEADER: Final = struct.Struct(">II")
LOGIN_ROLE_PARTICIPANT: Final = b"\x18\x01"
"""``LoginResponse.role = PARTICIPANT`` (field 3, varint 1)."""
ORDER_ID: Final = b"\x18\x05"
"""Field 3 = 5: an ``order_id`` in the answers to insert, cancel and amend."""
SYMBOLS: Final = "FLA,FLB,FLC,FLD"
RATES: Final = (1000, 10000, 30000)

log = logging.getLogger("optivex.floor")


def _request_id_prefix(body: bytes) -> bytes:
    """The encoded ``request_id`` (field 1, varint) at the start of ``body``, or b""."""
    if not body or body[0] != 0x08:
        return b""
    end = 1
    while end < len(body) and body[end] & 0x80:
        end += 1
    return body[: end + 1]


class Echo(asyncio.Protocol):
    """Answers every frame with ``request_id`` and field 3 under message number + 1."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        answers = []
        pos = 0
        size = len(buffer)
        while size - pos >= HEADER.size:
            length, kind = HEADER.unpack_from(buffer, pos)
            if size - pos < 4 + length:
                break
            body = bytes(buffer[pos + HEADER.size : pos + 4 + length])
            pos += 4 + length
            answer = _request_id_prefix(body) + (LOGIN_ROLE_PARTICIPANT if kind == 0 else ORDER_ID)
            answers.append(HEADER.pack(len(answer) + 4, kind + 1) + answer)
        del buffer[:pos]
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))


class _Back(asyncio.Protocol):
    """The pipe's upstream side: copies what the echo sends to the client."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Pipe(asyncio.Protocol):
    """Copies a client's bytes to its own upstream connection (opened on accept)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        asyncio.get_running_loop().create_task(self._connect(transport))

    async def _connect(self, client: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Back(client), "127.0.0.1", self.upstream_port
            )
        except OSError:
            client.close()
            return
        self.upstream = upstream
        for data in self.early:
            upstream.write(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def _serve(role: str, port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if role == "echo":
        server = await loop.create_server(Echo, "127.0.0.1", port)
    else:
        server = await loop.create_server(lambda: Pipe(upstream_port), "127.0.0.1", port)
    host, bound = server.sockets[0].getsockname()[:2]
    log_listening(log, host, bound)
    log_ready(log)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("role", choices=("pipe", "echo"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-port", type=int, default=0)
    options = parser.parse_args(argv)
    if options.role == "pipe" and not options.upstream_port:
        parser.error("pipe needs --upstream-port")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_serve(options.role, options.port, options.upstream_port))
    return 0


def run(results: dict[str, Any]) -> None:
    """Latency and CPU of generator -> pipe -> echo -> pipe -> generator."""
    conf = settings()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    python = [sys.executable, "-m", "bench.floor"]
    echo = ServiceProcess("echo", [*python, "echo"], env)
    pipe: ServiceProcess | None = None
    try:
        echo.wait_ready()
        pipe = ServiceProcess("pipe", [*python, "pipe", "--upstream-port", str(echo.port)], env)
        pipe.wait_ready()
        rates = ",".join(str(r) for r in RATES)
        print(f"floor: pipe and echo at {rates} orders/s ...", flush=True)
        args = ["--port", str(pipe.port), "--info-port", "0", "--symbols", SYMBOLS]
        args += [*flow_args(conf), "--rates", rates, "--duration", str(conf["step_s"])]
        document = strip(run_load(args, 300, env, {"pipe": pipe.pid, "echo": echo.pid}))
    finally:
        if pipe is not None:
            pipe.stop()
        echo.stop()
    results["run"] = document
    rows = []
    for step in document["steps"]:
        lat = step["latency_us"]
        cpu = step.get("cpu", {})
        rows.append(
            [
                f"{step['target_rate']:,.0f}",
                f"{step['achieved_rate']:,.0f}",
                *(format_us(lat.get(k)) for k in ("p50", "p90", "p99", "p99_9")),
                ", ".join(f"{k} {v:.0%}" for k, v in cpu.items()) or "-",
                per_order(step),
            ]
        )
    header = ["target/s", "achieved/s", "p50", "p90", "p99", "p99.9",
              "CPU (1 core = 100%)", "CPU µs per order"]  # fmt: skip
    table = markdown_table(header, rows)
    results["table"] = table
    print(table, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
