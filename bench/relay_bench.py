"""Null relay baseline: how fast can the wire layer alone move orders through two hops?

Starts ``bench.relay echo`` and ``bench.relay relay`` as separate processes (like
the real Order Book and Risk Gateway) and drives the relay with the same load
generator and order mix as the end-to-end benchmark: latency at 1,000 and
10,000 orders/s, once on the stock asyncio loop and once with uvloop in the
relay and echo.  Also the wire layer's own CPU per message without sockets
(:mod:`bench.relay_wire`).

The relay's *maximum* sustained rate is searched in ``bench/e2e_bench.py``,
paired step by step with the exchange's (:mod:`bench.relay_pair`), so the
exchange/relay ratio compares runs that met the same machine weather.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from bench.relay_wire import measure
from clients.load_harness import ServiceProcess, run_load
from clients.load_stats import format_us, markdown_table

LOOPS = ("asyncio", "uvloop")
SYMBOLS = "RLA,RLB,RLC,RLD"


def settings() -> dict[str, Any]:
    """Knobs shared with the end-to-end benchmark (environment overrides for quick runs)."""
    return {
        "step_s": float(os.environ.get("OPTIVEX_BENCH_STEP_S", "5")),
        "start_rate": float(os.environ.get("OPTIVEX_BENCH_START_RATE", "4000")),
        "factor": float(os.environ.get("OPTIVEX_BENCH_FACTOR", "1.5")),
        "refine": int(os.environ.get("OPTIVEX_BENCH_REFINE", "1")),
        "loops": os.environ.get("OPTIVEX_BENCH_LOOPS", ",".join(LOOPS)).split(","),
        "connections": int(os.environ.get("OPTIVEX_BENCH_CONNECTIONS", "4")),
        # the paired search starts no step after this many seconds (keeps `make bench` bounded)
        "budget_s": float(os.environ.get("OPTIVEX_BENCH_BUDGET_S", "90")),
    }


def flow_args(conf: dict[str, Any]) -> list[str]:
    """Load-generator flags that must be the same for the relay and the exchange."""
    return [
        "--connections", str(conf["connections"]),
        "--seed", "7",
        "--mix", "passive=45,cross=20,amend=15,cancel=20",
        "--pause", "0.5",
        "--drain", "5",
        "--no-progress",
    ]  # fmt: skip


def strip(document: dict[str, Any]) -> dict[str, Any]:
    """The JSON worth keeping: no encoded histograms."""
    for step in document.get("steps", []):
        step.pop("histograms", None)
    return document


FIXED_RATES = (1000, 10000)


def run(results: dict[str, Any]) -> None:
    conf = settings()
    password = secrets.token_urlsafe(24)
    base_env = {**os.environ, "OPTIVEX_SERVICE_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    runs: dict[str, Any] = {}
    for loop in conf["loops"]:
        env = {**base_env, "OPTIVEX_LOOP": loop}
        python = [sys.executable, "-m", "bench.relay"]
        echo = ServiceProcess("echo", [*python, "echo", "--port", "0"], env)
        relay: ServiceProcess | None = None
        try:
            echo.wait_ready()
            relay = ServiceProcess(
                "relay", [*python, "relay", "--port", "0", "--order-book-port", str(echo.port)], env
            )
            relay.wait_ready()
            target = ["--port", str(relay.port), "--info-port", "0", "--symbols", SYMBOLS]
            pids = {"relay": relay.pid, "echo": echo.pid}
            rates = ",".join(str(r) for r in FIXED_RATES)
            print(f"relay ({loop}): latency at {rates} orders/s ...", flush=True)
            args = [*target, *flow_args(conf), "--rates", rates, "--duration", str(conf["step_s"])]
            runs[loop] = strip(run_load(args, 300, base_env, pids))
        finally:
            if relay is not None:
                relay.stop()
            echo.stop()
    wire = measure(n=30_000)
    results["runs"] = runs
    results["wire_cpu_us_per_message"] = wire
    header = ["services' loop"]
    for rate in FIXED_RATES:
        header += [f"p50 @{rate:,}/s", f"p99 @{rate:,}/s", f"p99.9 @{rate:,}/s",
                   f"CPU µs/order @{rate:,}/s"]  # fmt: skip
    rows = []
    for loop, document in runs.items():
        cells = [loop]
        for step in document["steps"]:
            lat = step["latency_us"]
            achieved = step["achieved_rate"] or 1.0
            cpu = ", ".join(f"{k} {v / achieved * 1e6:.0f}" for k, v in step.get("cpu", {}).items())
            cells += [format_us(lat.get(k)) for k in ("p50", "p99", "p99_9")] + [cpu or "-"]
        rows.append(cells)
    table = markdown_table(header, rows)
    table += "\n\nWire layer CPU per message without sockets (`python -m bench.relay_wire`; "
    table += "bN = N frames per read):\n\n"
    table += markdown_table(["path", "µs/message"], [[k, f"{v:.2f}"] for k, v in wire.items()])
    results["table"] = table
    print(table, flush=True)
