"""End to end at fixed rates only: latency and CPU per order of every process.

``python -m bench.e2e_fixed [--rates 1000,5000,10000] [--duration 5]`` starts
the exchange as ``make bench`` does (launcher, journal on), creates four
instruments and runs ``optivex load`` at each rate, then prints p50/p99 and
the CPU microseconds each process spent per order. It is the quick check for
a change on the order path (a minute instead of the full benchmark's ten);
``docs/performance.md`` quotes its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from bench.e2e_bench import SYMBOLS, exchange_args, per_order
from bench.relay_bench import flow_args, settings
from clients.load_harness import Exchange, create_instruments, run_load
from clients.load_stats import format_us, markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_fixed", description=__doc__)
    parser.add_argument("--rates", default="1000,5000,10000")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    options = parser.parse_args(argv)
    env = {**os.environ, "OPTIVEX_LOOP": options.loop, "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIVEX_SERVICE_PASSWORD", None)  # the launcher makes a fresh one
    load_env = {k: v for k, v in env.items() if k != "OPTIVEX_LOOP"}
    with (
        tempfile.TemporaryDirectory(prefix="optivex-fixed-") as tmp,
        Exchange(Path(tmp), env) as ex,
    ):
        asyncio.run(create_instruments(ex.host, ex.ports["admin"], SYMBOLS, 0.01))
        args = [
            *exchange_args(ex),
            *flow_args(settings()),
            "--rates", options.rates,
            "--duration", str(options.duration),
        ]  # fmt: skip
        pids = {k: v for k, v in ex.pids.items() if k != "admin"}
        document = run_load(args, 600, load_env, pids)
    rows = []
    for step in document["steps"]:
        lat = step["latency_us"]
        rows.append(
            [
                f"{step['target_rate']:,.0f}",
                f"{step['achieved_rate']:,.0f}",
                *(format_us(lat.get(k)) for k in ("p50", "p90", "p99", "max")),
                format_us(step["send_lag_us"].get("max")),
                per_order(step),
            ]
        )
    header = ["target/s", "achieved/s", "p50", "p90", "p99", "max", "generator's own lag max",
              "CPU µs per order"]  # fmt: skip
    print(markdown_table(header, rows), flush=True)
    print(f"load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
