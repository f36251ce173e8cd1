"""Price the Risk Gateway's logic: the null relay in front of the *real* Order Book.

``python -m bench.relay_front [--loop asyncio|uvloop]`` starts the exchange
(launcher, journal on), creates four instruments, and starts ``bench.relay
relay --books ...`` logged in to the real Order Book as the ``service`` user.
Then it runs the paired maximum-rate search (:mod:`bench.relay_pair`) on

* ``relay>OB``: participants -> null relay -> Order Book (Info and the idle
  Risk Gateway still follow the event stream), and
* ``RG>OB``: participants -> Risk Gateway -> Order Book, the real path,

and prints each side's maximum sustained rate and CPU per order per process.
The difference is what the Gateway's own work costs.  Not part of ``make
bench`` (it adds about two minutes); ``docs/performance.md`` quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bench.relay_pair import Side, paired_search
from clients.load_harness import Exchange, ServiceProcess, create_instruments

SYMBOLS = ("GA", "GB", "GC", "GD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_front", description=__doc__)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--step-s", type=float, default=4.0)
    parser.add_argument("--start-rate", type=float, default=2000.0)
    parser.add_argument("--budget-s", type=float, default=100.0)
    options = parser.parse_args(argv)
    env = {**os.environ, "OPTIVEX_LOOP": options.loop, "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIVEX_SERVICE_PASSWORD", None)
    load_env = {k: v for k, v in env.items() if k != "OPTIVEX_LOOP"}
    with (
        tempfile.TemporaryDirectory(prefix="optivex-front-") as tmp,
        Exchange(Path(tmp), env) as ex,
    ):
        asyncio.run(create_instruments(ex.host, ex.ports["admin"], SYMBOLS))
        books = ",".join(f"{symbol}={i}" for i, symbol in enumerate(SYMBOLS, start=1))
        relay = ServiceProcess(
            "relay",
            [sys.executable, "-m", "bench.relay", "relay", "--port", "0",
             "--order-book-port", str(ex.ports["order_book"]), "--books", books],
            {**env, "OPTIVEX_SERVICE_PASSWORD": ex.service_password},
        )  # fmt: skip
        try:
            relay.wait_ready()
            pids = {k: v for k, v in ex.pids.items() if k != "admin"}
            common = ["--symbols", ",".join(SYMBOLS), "--subscribers", "1",
                      "--info-port", str(ex.ports["info"])]  # fmt: skip
            sides = [
                Side(
                    "relay>OB", ["--port", str(relay.port), *common], {**pids, "relay": relay.pid}
                ),
                Side("RG>OB", ["--port", str(ex.ports["risk_gateway"]), *common], pids),
            ]
            paired_search(
                sides,
                ["--connections", "4", "--seed", "7", "--no-progress"],
                load_env,
                step_s=options.step_s,
                start_rate=options.start_rate,
                factor=1.5,
                budget_s=options.budget_s,
            )
        finally:
            relay.stop()
    for side in sides:
        figures = side.figures()
        rate = figures["achieved_at_max"] or 1.0
        per_order = {k: round(v / rate * 1e6) for k, v in figures["cpu_at_max"].items()}
        print(
            f"{side.name}: max sustained {figures['max_sustained']:,.0f}/s, peak "
            f"{figures['peak_achieved']:,.0f}/s, CPU µs per order at max {per_order}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
