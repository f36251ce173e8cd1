"""End to end: participants -> Risk Gateway -> Order Book (journal on) -> Info -> subscribers.

Starts the whole exchange with the launcher (``optivex up --ports auto``, fsync
``batch``, the default), creates four instruments through Admin, and drives the
Risk Gateway with ``optivex load`` (one market-data subscriber follows top of
book and depth of every traded instrument):

* latency at fixed rates of 1,000 and 10,000 orders/s;
* the maximum sustained rate (achieved >= 95 % of the target over a 5 s step
  with p99 <= 10 ms), searched *paired* with the null relay
  (:mod:`bench.relay_pair`): the relay and echo processes run beside the
  exchange and every rate is tried on the relay and then on the exchange, so
  the exchange/relay ratio compares steps that met the same machine weather.

Once on the stock asyncio loop and once with uvloop in all services (the
generator keeps the same loop both times).  The fixed rates are measured once
more on asyncio with the Order Book's journal written but not synced
(``fsync = "none"``: it survives a crash of the process, not of the machine),
so every run shows what the default's per-batch ``fdatasync`` costs.  CPU use of every process is sampled
from /proc during each step and turned into CPU microseconds per order.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.relay_bench import flow_args, settings, strip
from bench.relay_pair import Side, paired_search
from clients.load_harness import Exchange, ServiceProcess, create_instruments, run_load
from clients.load_stats import format_us, markdown_table

SYMBOLS = ("E2EA", "E2EB", "E2EC", "E2ED")
RELAY_SYMBOLS = "RLA,RLB,RLC,RLD"
FIXED_RATES = (1000, 10000)


def per_order(step: dict[str, Any] | None) -> str:
    """CPU µs per order of each process during one step, as a table cell."""
    if not step or not step.get("cpu") or not step.get("achieved_rate"):
        return "-"
    rate = step["achieved_rate"]
    cells = [f"{name} {share / rate * 1e6:.0f}" for name, share in step["cpu"].items()]
    total = sum(share for name, share in step["cpu"].items() if name != "load") / rate * 1e6
    return ", ".join(cells) + f"; services {total:.0f}"


def exchange_args(ex: Exchange) -> list[str]:
    """Load-generator flags that point at the exchange (Gateway, Info, instruments)."""
    return [
        "--host", ex.host,
        "--port", str(ex.ports["risk_gateway"]),
        "--info-port", str(ex.ports["info"]),
        "--symbols", ",".join(SYMBOLS),
        "--subscribers", "1",
        "--subscription", "both",
    ]  # fmt: skip


def _start_relay(env: dict[str, str]) -> tuple[ServiceProcess, ServiceProcess]:
    python = [sys.executable, "-m", "bench.relay"]
    echo = ServiceProcess("echo", [*python, "echo", "--port", "0"], env)
    try:
        echo.wait_ready()
        relay = ServiceProcess(
            "relay", [*python, "relay", "--port", "0", "--order-book-port", str(echo.port)], env
        )
        relay.wait_ready()
    except BaseException:
        echo.stop()
        raise
    return echo, relay


FSYNC_NONE = "asyncio, fsync none"
"""Row label of the fixed-rate run without the journal's fdatasync."""


def _envs(loop: str, **settings: str) -> tuple[dict[str, str], dict[str, str]]:
    """The services' environment (``loop``, ``settings``; the launcher makes a fresh
    service password) and the load generator's (without those)."""
    env = {**os.environ, "OPTIVEX_LOOP": loop, "PYTHONUNBUFFERED": "1", **settings}
    env.pop("OPTIVEX_SERVICE_PASSWORD", None)
    load_env = {k: v for k, v in env.items() if k != "OPTIVEX_LOOP" and k not in settings}
    return env, load_env


def _pids(ex: Exchange) -> dict[str, int]:
    """The processes an order goes through or feeds (Admin is idle under load)."""
    return {k: v for k, v in ex.pids.items() if k != "admin"}


def _fixed(ex: Exchange, conf: dict[str, Any], load_env: dict[str, str], label: str) -> Any:
    """Latency at :data:`FIXED_RATES` against the running exchange ``ex``."""
    rates = ",".join(str(r) for r in FIXED_RATES)
    print(f"end to end ({label}): latency at {rates} orders/s ...", flush=True)
    args = [*exchange_args(ex), *flow_args(conf), "--rates", rates]
    args += ["--duration", str(conf["step_s"])]
    return strip(run_load(args, 300, load_env, _pids(ex)))


def _fixed_without_fsync(conf: dict[str, Any]) -> dict[str, Any]:
    """Latency at the fixed rates with ``OPTIVEX_ORDER_BOOK_FSYNC=none`` (asyncio)."""
    env, load_env = _envs("asyncio", OPTIVEX_ORDER_BOOK_FSYNC="none")
    with tempfile.TemporaryDirectory(prefix="optivex-e2e-") as tmp, Exchange(Path(tmp), env) as ex:
        asyncio.run(create_instruments(ex.host, ex.ports["admin"], SYMBOLS, 0.01))
        result: dict[str, Any] = _fixed(ex, conf, load_env, FSYNC_NONE)
        return result


def _one_loop(loop: str, conf: dict[str, Any]) -> dict[str, Any]:
    env, load_env = _envs(loop)
    relay_env = {**env, "OPTIVEX_SERVICE_PASSWORD": secrets.token_urlsafe(24)}
    with tempfile.TemporaryDirectory(prefix="optivex-e2e-") as tmp, Exchange(Path(tmp), env) as ex:
        asyncio.run(create_instruments(ex.host, ex.ports["admin"], SYMBOLS, 0.01))
        target = exchange_args(ex)
        pids = _pids(ex)
        fixed = _fixed(ex, conf, load_env, loop)
        echo, relay = _start_relay(relay_env)
        try:
            sides = [
                Side(
                    "relay",
                    ["--port", str(relay.port), "--info-port", "0", "--symbols", RELAY_SYMBOLS],
                    {"relay": relay.pid, "echo": echo.pid},
                ),
                Side("exchange", target, pids),
            ]
            print(f"end to end ({loop}): paired search with the null relay ...", flush=True)
            paired_search(
                sides,
                flow_args(conf),
                load_env,
                step_s=conf["step_s"],
                start_rate=conf["start_rate"],
                factor=conf["factor"],
                budget_s=conf["budget_s"],
            )
        finally:
            relay.stop()
            echo.stop()
    found = {side.name: side.figures() for side in sides}
    return {"fixed": fixed, "paired": found}


def run(results: dict[str, Any]) -> None:
    conf = settings()
    runs = {loop: _one_loop(loop, conf) for loop in conf["loops"]}
    results["runs"] = runs
    fixed_rows = {loop: r["fixed"] for loop, r in runs.items()}
    fixed_rows[FSYNC_NONE] = results["fixed_fsync_none"] = _fixed_without_fsync(conf)
    by_loop = {k: r["paired"]["exchange"]["max_sustained"] for k, r in runs.items()}
    relay_by_loop = {k: r["paired"]["relay"]["max_sustained"] for k, r in runs.items()}
    results["max_sustained"] = max(by_loop.values(), default=0)
    results["max_sustained_by_loop"] = by_loop
    results["relay_max_sustained_by_loop"] = relay_by_loop
    results["relay_max_sustained"] = max(relay_by_loop.values(), default=0)
    results["peak_achieved"] = max(
        (r["paired"]["exchange"]["peak_achieved"] for r in runs.values()), default=0
    )
    results["relay_peak_achieved"] = max(
        (r["paired"]["relay"]["peak_achieved"] for r in runs.values()), default=0
    )
    header = ["services' loop"]
    for rate in FIXED_RATES:
        header += [f"p50 @{rate:,}/s", f"p90 @{rate:,}/s", f"p99 @{rate:,}/s",
                   f"p99.9 @{rate:,}/s", f"max @{rate:,}/s", f"achieved @{rate:,}/s"]  # fmt: skip
    latency_rows = []
    for loop, fixed in fixed_rows.items():
        cells = [loop]
        for step in fixed["steps"]:
            lat = step["latency_us"]
            cells += [format_us(lat.get(k)) for k in ("p50", "p90", "p99", "p99_9", "max")]
            cells.append(f"{step['achieved_rate']:,.0f}")
        latency_rows.append(cells)
    max_rows = []
    for loop, r in runs.items():
        ex, rel = r["paired"]["exchange"], r["paired"]["relay"]
        ratio = ex["max_sustained"] / rel["max_sustained"] if rel["max_sustained"] else None
        for name, f in (("exchange", ex), ("null relay", rel)):
            lat = f["latency_at_max_us"]
            max_rows.append(
                [
                    name,
                    loop,
                    f"{f['max_sustained']:,.0f}",
                    format_us(lat.get("p50")),
                    format_us(lat.get("p99")),
                    f"{f['peak_achieved']:,.0f} (p99 {format_us(f['peak_p99_us'])})",
                    ", ".join(f"{k} {v:.0%}" for k, v in f["cpu_at_max"].items()) or "-",
                    f"{ratio:.3f}" if (ratio is not None and name == "exchange") else "",
                ]
            )
    cost_rows = []
    for loop, fixed in fixed_rows.items():
        for rate, step in zip(FIXED_RATES, fixed["steps"], strict=False):
            cost_rows.append([f"exchange @{rate:,}/s", loop, per_order(step)])
    for loop, r in runs.items():
        for name in ("exchange", "relay"):
            best = r["paired"][name]
            at_max = {"cpu": best["cpu_at_max"], "achieved_rate": best["achieved_at_max"]}
            cost_rows.append([f"{name} at its max", loop, per_order(at_max)])
    table = "Latency at fixed rates (open loop, from the scheduled send time):\n\n"
    table += markdown_table(header, latency_rows)
    table += "\n\nMaximum sustained rate (p99 <= 10 ms, >= 95 % achieved, 5 s steps), "
    table += "searched paired with the null relay:\n\n"
    table += markdown_table(
        ["path", "services' loop", "max sustained orders/s", "p50 at max", "p99 at max",
         "peak achieved/s (any p99)", "CPU at max (1 core = 100%)", "exchange / relay"],
        max_rows,
    )  # fmt: skip
    table += "\n\nCPU µs per order (sampled from /proc while the step ran):\n\n"
    table += markdown_table(["step", "services' loop", "per process"], cost_rows)
    results["table"] = table
    print(table, flush=True)
