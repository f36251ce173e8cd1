"""Each service's own CPU per order, in process (part of ``make bench``).

The end-to-end figures come from ``/proc`` while four services and the load
generator share two cores, so they move with the machine's weather and with
how large the batches happen to be. These three benchmarks feed each service's
real code a fixed, realistic flow and time it with ``time.process_time_ns``
(see each module's docstring for what is in and out):

* ``bench.order_book_translate``: the Order Book's request handler (engine,
  response frame, journal record, event frames) per command kind;
* ``bench.info_cpu``: Info's decode, mirror and publication per order;
* ``bench.gateway_cpu``: the Risk Gateway's request and event paths per order.

Each figure is the median of several fresh runs; the Info and Gateway runs must
publish identical bytes every time (a digest is compared). The event loop and
the kernel are left out, so these figures are lower than the end-to-end ones:
they are the part the services' own code can change.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench import gateway_cpu, info_cpu, order_book_translate
from clients.load_stats import markdown_table

ORDERS = int(os.environ.get("OPTIVEX_BENCH_CPU_ORDERS", "20000"))
RUNS = int(os.environ.get("OPTIVEX_BENCH_CPU_RUNS", "5"))
SEED = 9
READ_SIZES = (1, 10)
"""Orders whose traffic arrives in one read: 1 is a quiet exchange, 10 a busy one."""


def run(results: dict[str, Any]) -> None:
    print("service CPU: order book handler ...", flush=True)
    book = order_book_translate.measure(ORDERS, RUNS)
    results["order_book_us_per_command"] = book
    print("service CPU: info ...", flush=True)
    stream = info_cpu.generate(ORDERS, SEED)
    info = {size: info_cpu.measure(stream, size, RUNS) for size in READ_SIZES}
    results["info_us_per_order"] = {str(k): v["us_per_order"] for k, v in info.items()}
    print("service CPU: risk gateway ...", flush=True)
    gateway: dict[int, dict[str, Any]] = {}
    for size in READ_SIZES:
        flow = asyncio.run(gateway_cpu.record(ORDERS, size, SEED))
        gateway[size] = gateway_cpu.measure(flow, RUNS)
    results["risk_gateway_us_per_order"] = {str(k): v["us_per_order"] for k, v in gateway.items()}
    rows = [
        [
            f"order book handler: {phase}",
            f"{book['service path'][phase]:.2f}",
            f"{book['engine only'][phase]:.2f} (engine alone)",
        ]
        for phase in book["service path"]
    ]
    for size in READ_SIZES:
        rows.append(
            [f"info, {size} order(s) per read", f"{info[size]['us_per_order']:.2f}", "per order"]
        )
    for size in READ_SIZES:
        rows.append(
            [
                f"risk gateway, {size} order(s) per read",
                f"{gateway[size]['us_per_order']:.2f}",
                "per order",
            ]
        )
    table = markdown_table(["path", "CPU µs (median)", "note"], rows)
    table += f"\n\n{ORDERS:,} orders per run, median of {RUNS} runs, seed {SEED}."
    results["table"] = table
    print(table, flush=True)
