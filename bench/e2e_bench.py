"""End to end: participants -> Risk Gateway -> Order Book (journal on) -> Info -> subscribers.

Starts the whole exchange with the launcher (``optivex up --ports auto``, fsync
``batch``, the default), creates four instruments through Admin, and drives the
Risk Gateway with ``optivex load`` (the same flow and criteria as the null relay
benchmark, plus one market-data subscriber following top of book and depth of
every traded instrument):

* the maximum sustained rate: achieved >= 95 % of the target over a 5 s step
  with p99 <= 10 ms (steps x1.5 from 4,000 orders/s, then one bisection);
* latency at fixed rates of 1,000 and 10,000 orders/s.

Once on the stock asyncio loop and once with uvloop in all four services (the
generator keeps the same loop both times, so only the services change).  CPU
use of every process is sampled from /proc during each step and turned into
CPU microseconds per order, which says where the time goes on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.relay_bench import (
    find_max_args,
    flow_args,
    headline_header,
    headline_rows,
    settings,
    strip,
    summarise,
)
from clients.load_harness import Exchange, create_instruments, run_load
from clients.load_stats import format_us, markdown_table

SYMBOLS = ("E2EA", "E2EB", "E2EC", "E2ED")
FIXED_RATES = (1000, 10000)


def cost_rows(label: str, loop: str, step: dict[str, Any] | None) -> list[str] | None:
    """CPU microseconds per order of each process during one step."""
    if not step or not step.get("cpu") or not step.get("achieved_rate"):
        return None
    rate = step["achieved_rate"]
    cpu = step["cpu"]
    per_order = {name: share / rate * 1e6 for name, share in cpu.items()}
    cells = ", ".join(f"{name} {value:.0f}" for name, value in per_order.items())
    total = sum(v for k, v in per_order.items() if k != "load")
    return [label, loop, f"{rate:,.0f}", cells, f"{total:.0f}"]


def _best_step(find: dict[str, Any]) -> dict[str, Any] | None:
    best = find.get("max_sustained")
    if not best:
        return None
    return next((s for s in find["steps"] if s["target_rate"] == best["target_rate"]), None)


def run(results: dict[str, Any]) -> None:
    conf = settings()
    runs: dict[str, Any] = {}
    costs: list[list[str]] = []
    for loop in conf["loops"]:
        env = {**os.environ, "OPTIVEX_LOOP": loop, "PYTHONUNBUFFERED": "1"}
        env.pop("OPTIVEX_SERVICE_PASSWORD", None)  # the launcher makes a fresh one
        with tempfile.TemporaryDirectory(prefix="optivex-e2e-") as tmp:
            exchange = Exchange(Path(tmp), env)
            with exchange:
                asyncio.run(
                    create_instruments(exchange.host, exchange.ports["admin"], SYMBOLS, 0.01)
                )
                target = [
                    "--host", exchange.host,
                    "--port", str(exchange.ports["risk_gateway"]),
                    "--info-port", str(exchange.ports["info"]),
                    "--symbols", ",".join(SYMBOLS),
                    "--subscribers", "1",
                    "--subscription", "both",
                ]  # fmt: skip
                pids = {k: v for k, v in exchange.pids.items() if k != "admin"}
                load_env = {k: v for k, v in env.items() if k != "OPTIVEX_LOOP"}
                rates = ",".join(str(r) for r in FIXED_RATES)
                print(f"end to end ({loop}): latency at {rates} orders/s ...", flush=True)
                fixed_args = [*target, *flow_args(conf), "--rates", rates]
                fixed_args += ["--duration", str(conf["step_s"])]
                fixed = strip(run_load(fixed_args, 300, load_env, pids))
                print(f"end to end ({loop}): finding the maximum sustained rate ...", flush=True)
                find = strip(
                    run_load([*target, *flow_args(conf), *find_max_args(conf)], 600, load_env, pids)
                )
        figures = summarise(find, fixed)
        runs[loop] = {"figures": figures, "find_max": find, "fixed": fixed}
        for rate, step in zip(FIXED_RATES, fixed["steps"], strict=False):
            row = cost_rows(f"@{rate:,}/s", loop, step)
            if row:
                costs.append(row)
        row = cost_rows("at max", loop, _best_step(find))
        if row:
            costs.append(row)
        print(
            f"end to end ({loop}): max sustained {figures['max_sustained']:,.0f} orders/s; "
            + "; ".join(
                f"@{r:,}/s p50 {format_us(figures.get(f'latency_at_{r}_us', {}).get('p50'))} "
                f"p99 {format_us(figures.get(f'latency_at_{r}_us', {}).get('p99'))}"
                for r in FIXED_RATES
            ),
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
    table = markdown_table(
        headline_header(list(FIXED_RATES)), headline_rows("exchange", runs, list(FIXED_RATES))
    )
    if costs:
        table += "\n\nCPU µs per order (sampled from /proc while the step ran):\n\n"
        table += markdown_table(
            ["step", "services' loop", "achieved/s", "per process", "services total"], costs
        )
    results["table"] = table
    print(table, flush=True)
