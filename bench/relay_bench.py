"""Null relay baseline: how fast can the wire layer alone move orders through two hops?

Starts ``bench.relay echo`` and ``bench.relay relay`` as separate processes (like
the real Risk Gateway and Order Book), then drives the relay with the same load
generator, order mix and criteria as the end-to-end benchmark
(``bench/e2e_bench.py``): the maximum sustained rate (achieved >= 95 % of the
target over a 5 s step with p99 <= 10 ms) and the latency at 1,000 orders/s.
Once on the stock asyncio loop and once with uvloop in the services.

The exchange's own cost is then read as a ratio: end-to-end max sustained /
relay max sustained (``bench/__main__.py`` prints it).
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

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
        # find-max starts no step after this many seconds (keeps `make bench` bounded)
        "budget_s": float(os.environ.get("OPTIVEX_BENCH_BUDGET_S", "45")),
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


def find_max_args(conf: dict[str, Any]) -> list[str]:
    return [
        "--find-max",
        "--duration", str(conf["step_s"]),
        "--start-rate", str(conf["start_rate"]),
        "--factor", str(conf["factor"]),
        "--refine", str(conf["refine"]),
        "--retries", "1",
        "--budget", str(conf["budget_s"]),
        "--p99-limit-ms", "10",
        "--min-achieved", "0.95",
    ]  # fmt: skip


def strip(document: dict[str, Any]) -> dict[str, Any]:
    """The JSON worth keeping: no encoded histograms."""
    for step in document.get("steps", []):
        step.pop("histograms", None)
    return document


def summarise(find: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of one loop's run."""
    best = find.get("max_sustained")
    best_step = next(
        (s for s in find["steps"] if best and s["target_rate"] == best["target_rate"]), None
    )
    every = [*find["steps"], *fixed["steps"]]
    peak = max(every, key=lambda step: step["achieved_rate"], default=None)
    figures: dict[str, Any] = {
        "max_sustained": best["target_rate"] if best else 0.0,
        # Throughput with no latency bound: what got through at best, whatever p99.
        "peak_achieved": peak["achieved_rate"] if peak else 0.0,
        "peak_p99_us": peak["latency_us"].get("p99") if peak else None,
        "max_sustained_achieved": best["achieved_rate"] if best else 0.0,
        "latency_at_max_us": best["latency_us"] if best else {},
        "cpu_at_max": best_step.get("cpu", {}) if best_step else {},
    }
    for step in fixed["steps"]:
        rate = int(step["target_rate"])
        figures[f"latency_at_{rate}_us"] = step["latency_us"]
        figures[f"send_lag_at_{rate}_us"] = step["send_lag_us"]
        figures[f"verdict_at_{rate}"] = step["verdict"]
    return figures


def headline_rows(label: str, runs: dict[str, Any], fixed_rates: list[int]) -> list[list[str]]:
    rows = []
    for loop, run in runs.items():
        f = run["figures"]
        at_max = f["latency_at_max_us"]
        cpu = ", ".join(f"{k} {v:.0%}" for k, v in f["cpu_at_max"].items())
        cells = [label, loop, f"{f['max_sustained']:,.0f}", format_us(at_max.get("p50")),
                 format_us(at_max.get("p99")),
                 f"{f['peak_achieved']:,.0f} (p99 {format_us(f['peak_p99_us'])})"]  # fmt: skip
        for rate in fixed_rates:
            lat = f.get(f"latency_at_{rate}_us", {})
            cells += [format_us(lat.get("p50")), format_us(lat.get("p99"))]
        cells.append(cpu or "-")
        rows.append(cells)
    return rows


def headline_header(fixed_rates: list[int]) -> list[str]:
    header = ["path", "services' loop", "max sustained orders/s", "p50 at max", "p99 at max",
              "peak achieved/s (any p99)"]  # fmt: skip
    for rate in fixed_rates:
        header += [f"p50 @{rate:,}/s", f"p99 @{rate:,}/s"]
    return [*header, "CPU at max (1 core = 100%)"]


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
            print(f"relay ({loop}): finding the maximum sustained rate ...", flush=True)
            find = strip(
                run_load([*target, *flow_args(conf), *find_max_args(conf)], 600, base_env, pids)
            )
            print(f"relay ({loop}): latency at 1,000 orders/s ...", flush=True)
            fixed = strip(
                run_load(
                    [
                        *target,
                        *flow_args(conf),
                        "--rate",
                        "1000",
                        "--duration",
                        str(conf["step_s"]),
                    ],
                    120,
                    base_env,
                    pids,
                )
            )
        finally:
            if relay is not None:
                relay.stop()
            echo.stop()
        figures = summarise(find, fixed)
        runs[loop] = {"figures": figures, "find_max": find, "fixed": fixed}
        print(
            f"relay ({loop}): max sustained {figures['max_sustained']:,.0f} orders/s, "
            f"p99 at 1,000/s {format_us(figures.get('latency_at_1000_us', {}).get('p99'))}",
            flush=True,
        )
    results["runs"] = runs
    results["max_sustained"] = max(
        (r["figures"]["max_sustained"] for r in runs.values()), default=0
    )
    results["max_sustained_by_loop"] = {k: r["figures"]["max_sustained"] for k, r in runs.items()}
    results["peak_achieved"] = max(
        (r["figures"]["peak_achieved"] for r in runs.values()), default=0
    )
    results["table"] = markdown_table(
        headline_header([1000]), headline_rows("null relay", runs, [1000])
    )
    print(results["table"], flush=True)
