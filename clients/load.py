"""``optivex load``: an open-loop load generator for the whole exchange.

Participants (``--connections``, demo users round-robin) send a seeded mix of
passive, crossing (IOC), amend and cancel orders to the Risk Gateway at a target
rate; market-data subscribers (``--subscribers``) follow the traded instruments
at Info and count what they receive.  Latency runs from each order's *scheduled*
send time to the arrival of its response (see :mod:`clients.load_run`), and is
reported as p50, p90, p99, p99.9 and max from HdrHistograms.

Three ways to run:

* ``--rate R --duration S``: one step;
* ``--rates R1,R2,...``: several steps on the same connections;
* ``--find-max``: step the rate up (x ``--factor``) until p99 exceeds
  ``--p99-limit-ms`` or less than ``--min-achieved`` of the target gets through
  (a missed step is tried ``--retries`` more times before it counts), then
  bisect ``--refine`` times; prints the highest sustained rate.

``--processes K`` runs every step in K child processes (each with 1/K of the rate
and connections) and merges their histograms exactly; ``--json`` prints one JSON
document for scripts.  Every run is bounded in count and time and stops by itself.

``--tls-ca-file FILE`` (or ``--tls``) connects to a Risk Gateway and Info that
speak TLS (both: one setting for the two ports, as in the SDK); the children of
``--processes`` get the same options.  A TLS setting that does not match the
ports' ends the run with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import selectors
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from clients.load_plan import KIND_NAMES, Mix
from clients.load_run import DEMO_USERS, LoadOptions, LoadRun, StepState
from clients.load_stats import (
    decode,
    encode,
    format_us,
    latency_row,
    markdown_table,
    merged,
    summary,
)
from clients.tls_args import add_tls_options, ssl_context, tls_mismatch
from services.common.lifecycle import choose_loop
from services.common.wire.errors import ConnectionLost, RemoteError

StepRunner = Callable[[float], Awaitable[dict[str, Any]]]

SELECT_MAX_SOCKETS = 500
"""Below this many sockets the stock loop uses select() for microsecond timers."""


# ---------------------------------------------------------------------- arguments


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _users(text: str) -> list[tuple[str, str]]:
    users = []
    for part in text.split(","):
        name, sep, password = part.strip().partition(":")
        if not name:
            raise argparse.ArgumentTypeError(f"bad user entry {part!r}")
        users.append((name, password if sep else f"{name}-demo"))
    return users


def _mix(text: str) -> Mix:
    try:
        return Mix.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rates(text: str) -> list[float]:
    return [_positive_float(part) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optivex load",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = p.add_argument_group("where")
    target.add_argument("--host", default="127.0.0.1", help="Risk Gateway (or relay) host")
    target.add_argument("--port", type=int, default=7404, help="Risk Gateway (or relay) port")
    target.add_argument("--info-host", default=None, help="Info host (default: --host)")
    target.add_argument(
        "--info-port", type=int, default=7402, help="Info port; 0 = no Info (needs --symbols)"
    )
    target.add_argument(
        "--users",
        type=_users,
        default=[(u, f"{u}-demo") for u in DEMO_USERS],
        help="participants NAME[:PASSWORD],... used round-robin (default: the demo users)",
    )
    flow = p.add_argument_group("flow")
    flow.add_argument(
        "--connections", type=_positive_int, default=4, help="participant connections"
    )
    flow.add_argument("--subscribers", type=int, default=1, help="market-data connections to Info")
    flow.add_argument("--subscription", choices=("top", "depth", "both"), default="both")
    flow.add_argument(
        "--depth", type=int, default=10, help="levels per side of depth subscriptions"
    )
    flow.add_argument("--symbols", default="", help="comma-separated symbols (default: from Info)")
    flow.add_argument("--instruments", type=_positive_int, default=4, help="how many of Info's")
    flow.add_argument("--tick-size", type=_positive_float, default=0.01, help="without Info")
    flow.add_argument("--mix", type=_mix, default=Mix(), help="passive=W,cross=W,amend=W,cancel=W")
    flow.add_argument("--seed", type=int, default=1, help="seed of the order flow (printed)")
    flow.add_argument("--levels", type=_positive_int, default=10, help="passive price levels")
    flow.add_argument("--max-quantity", type=_positive_int, default=10)
    flow.add_argument(
        "--max-resting", type=_positive_int, default=1000, help="resting orders per connection"
    )
    steps = p.add_argument_group("rate and bounds")
    steps.add_argument("--rate", type=_positive_float, default=1000.0, help="orders/s (one step)")
    steps.add_argument("--duration", type=_positive_float, default=10.0, help="seconds per step")
    steps.add_argument(
        "--count", type=_positive_int, default=None, help="at most this many per step"
    )
    steps.add_argument("--rates", type=_rates, default=None, help="R1,R2,...: several steps")
    steps.add_argument(
        "--find-max", action="store_true", help="step up to the highest sustained rate"
    )
    steps.add_argument("--start-rate", type=_positive_float, default=2000.0)
    steps.add_argument("--factor", type=_positive_float, default=1.5, help="step-up factor")
    steps.add_argument("--max-rate", type=_positive_float, default=200_000.0)
    steps.add_argument("--refine", type=int, default=2, help="bisection steps after the first miss")
    steps.add_argument("--retries", type=int, default=1, help="tries again before a miss counts")
    steps.add_argument(
        "--budget", type=float, default=0.0, help="find-max: start no step after this many s"
    )
    steps.add_argument("--p99-limit-ms", type=_positive_float, default=10.0)
    steps.add_argument("--min-achieved", type=_positive_float, default=0.95)
    steps.add_argument("--max-error-ratio", type=float, default=0.2)
    steps.add_argument("--pause", type=float, default=0.5, help="seconds between steps")
    steps.add_argument("--drain", type=_positive_float, default=5.0, help="wait for late answers")
    steps.add_argument("--max-in-flight", type=_positive_int, default=50_000)
    steps.add_argument("--timeout", type=_positive_float, default=900.0, help="whole run, seconds")
    run = p.add_argument_group("running")
    run.add_argument("--processes", type=_positive_int, default=1, help="spread over K processes")
    run.add_argument("--loop", choices=("asyncio", "uvloop"), default=None, help="OPTIVEX_LOOP")
    run.add_argument("--json", action="store_true", help="print one JSON document")
    run.add_argument("--histograms", action="store_true", help="include encoded histograms in JSON")
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    run.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    add_tls_options(p)
    return p


def load_options(ns: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        host=ns.host,
        port=ns.port,
        info_host=ns.info_host or ns.host,
        info_port=ns.info_port,
        users=ns.users,
        connections=ns.connections,
        subscribers=ns.subscribers if ns.info_port else 0,
        subscription=ns.subscription,
        depth=ns.depth,
        symbols=[s.strip() for s in ns.symbols.split(",") if s.strip()],
        instruments=ns.instruments,
        tick_size=ns.tick_size,
        mix=ns.mix,
        seed=ns.seed,
        levels=ns.levels,
        max_quantity=ns.max_quantity,
        max_resting=ns.max_resting,
        max_in_flight=ns.max_in_flight,
        drain_s=ns.drain,
        ssl=ssl_context(ns),
    )


# ---------------------------------------------------------------------- verdicts


def passes(step: dict[str, Any], ns: argparse.Namespace) -> bool:
    """Sustained: enough got through, p99 under the limit, nothing lost."""
    return not failure_reason(step, ns)


def failure_reason(step: dict[str, Any], ns: argparse.Namespace) -> str:
    target = step["target_rate"]
    p99 = step["latency_us"].get("p99")
    if step.get("overloaded"):
        return "overloaded"
    if step.get("unanswered") or step.get("failed"):
        return "lost answers"
    if step["achieved_rate"] < ns.min_achieved * target:
        return f"achieved < {ns.min_achieved:.0%}"
    if p99 is None or p99 > ns.p99_limit_ms * 1000:
        return f"p99 > {ns.p99_limit_ms:g} ms"
    errors = sum(step["errors"].values())
    if step["completed"] and errors / step["completed"] > ns.max_error_ratio:
        return f"errors > {ns.max_error_ratio:.0%}"
    return ""


async def find_max(
    run_step: StepRunner, ns: argparse.Namespace, pause: Callable[[], Awaitable[None]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Step up geometrically until a miss, then bisect; returns (best step, all steps)."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    missed: float | None = None
    rate = ns.start_rate
    downs = 0

    deadline = time.monotonic() + ns.budget if ns.budget else math.inf

    def out_of_time() -> bool:
        return time.monotonic() > deadline

    async def attempt(rate: float) -> dict[str, Any]:
        """One step, tried again on a miss (``--retries``): one stall of a shared
        machine should not decide the answer, two in a row do."""
        for _ in range(max(0, ns.retries) if not out_of_time() else 0):
            step = await run_step(rate)
            steps.append(step)
            await pause()
            if passes(step, ns):
                return step
        step = await run_step(rate)
        steps.append(step)
        await pause()
        return step

    while rate <= ns.max_rate and not out_of_time():
        step = await attempt(rate)
        if passes(step, ns):
            best = step
            rate *= ns.factor
        else:
            missed = rate
            if best is not None or downs >= 3:
                break
            downs += 1  # the start rate was already too high: step down
            rate /= ns.factor * ns.factor
    low = best["target_rate"] if best else 0.0
    for _ in range(max(0, ns.refine)):
        if missed is None or low <= 0 or (missed - low) / missed < 0.08 or out_of_time():
            break
        rate = round((low + missed) / 2, -1)
        step = await attempt(rate)
        if passes(step, ns):
            best, low = step, rate
        else:
            missed = rate
    return best, steps


# ---------------------------------------------------------------------- running


def _tighten_timer_slack() -> None:
    """Ask Linux for 1 ns timer slack (default 50 µs) so sleeps end on time.

    Halves the generator's own lateness at low rates (measured: select()
    wake-ups p50 102 -> 47 µs late); costs no CPU.  A no-op elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_timerslack = 29
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_timerslack, 1, 0, 0, 0)


def _make_loop_factory(loop_name: str, sockets: int) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if sockets < SELECT_MAX_SOCKETS:
        return lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())
    return asyncio.new_event_loop


class Progress:
    """A one-line progress bar on stderr, redrawn a few times a second."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None

    def start(self, label: str, get_state: Callable[[], StepState | None], duration: float) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(
                self._draw(label, get_state, duration)
            )

    async def _draw(
        self, label: str, get_state: Callable[[], StepState | None], duration: float
    ) -> None:
        began = time.perf_counter()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                state = get_state()
                elapsed = time.perf_counter() - began
                fraction = min(1.0, elapsed / duration) if duration > 0 else 1.0
                bar = "#" * int(fraction * 24)
                if state is not None:
                    text = (
                        f"\r{label} [{bar:<24}] {fraction:4.0%} sent {state.sent:,} "
                        f"done {state.completed:,} in flight {state.in_flight:,} "
                        f"errors {sum(state.errors):,}   "
                    )
                else:
                    text = f"\r{label} [{bar:<24}] {fraction:4.0%} (children running)   "
                self.stream.write(text)
                self.stream.flush()
                await asyncio.sleep(0.25)

    async def stop(self, line: str = "") -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.stream.write("\r" + " " * 100 + "\r")
        if self.enabled and line:
            self.stream.write(line + "\n")
        self.stream.flush()


def step_line(step: dict[str, Any], ns: argparse.Namespace) -> str:
    lat = step["latency_us"]
    reason = failure_reason(step, ns)
    return (
        f"  {step['target_rate']:>9,.0f}/s -> {step['achieved_rate']:>9,.0f}/s  "
        f"p50 {format_us(lat.get('p50'))}  p99 {format_us(lat.get('p99'))}  "
        f"max {format_us(lat.get('max'))}  {'ok' if not reason else 'MISS: ' + reason}"
    )


async def _in_process(ns: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    options = load_options(ns)
    run = LoadRun(options)
    try:
        await run.setup()
    except (OSError, RuntimeError, TimeoutError, RemoteError, ConnectionLost) as exc:
        await run.close()
        # A TLS server drops a plaintext login without a word ("connection
        # lost"): say what to change when that is the reason.
        targets = [(options.host, options.port)]
        if options.info_port:
            targets.append((options.info_host, options.info_port))
        reason = await tls_mismatch(targets, options.ssl)
        if reason:
            raise RuntimeError(f"cannot connect: {reason}") from exc
        raise
    index = 0

    async def run_step(rate: float) -> dict[str, Any]:
        nonlocal index
        index += 1
        progress.start(f"step {index} {rate:,.0f}/s", lambda: run.state, ns.duration)
        try:
            step = await run.step(rate, ns.duration, ns.count, ns.start_at)
        finally:
            await progress.stop()
        await progress.stop(step_line(step, ns))
        return step

    async def pause() -> None:
        await asyncio.sleep(ns.pause)

    try:
        return await _drive(run_step, pause, ns, run.instruments_text())
    finally:
        await run.close()


async def _drive(
    run_step: StepRunner,
    pause: Callable[[], Awaitable[None]],
    ns: argparse.Namespace,
    instruments: list[str],
) -> dict[str, Any]:
    result: dict[str, Any] = {"instruments": instruments}
    if ns.find_max:
        best, steps = await find_max(run_step, ns, pause)
        result["steps"] = steps
        result["max_sustained"] = (
            None
            if best is None
            else {
                "target_rate": best["target_rate"],
                "achieved_rate": best["achieved_rate"],
                "latency_us": best["latency_us"],
            }
        )
    else:
        steps = []
        for i, rate in enumerate(ns.rates or [ns.rate]):
            if i:
                await pause()
            steps.append(await run_step(rate))
        result["steps"] = steps
    for step in result["steps"]:
        step["ok"] = passes(step, ns)
        step["verdict"] = failure_reason(step, ns) or "ok"
    return result


def child_argv(
    ns: argparse.Namespace, argv: list[str], k: int, rate: float, start_at: float
) -> list[str]:
    """The command line of child ``k``: the parent's flags with its share of the work."""
    drop_with_value = {
        "--rate",
        "--rates",
        "--connections",
        "--seed",
        "--processes",
        "--start-at",
        "--subscribers",
        "--start-rate",
        "--duration",
    }
    drop_alone = {"--find-max", "--json", "--progress", "--no-progress", "--child", "--histograms"}
    kept: list[str] = []
    items = iter(argv)
    for item in items:
        name = item.split("=", 1)[0]
        if name in drop_alone:
            continue
        if name in drop_with_value:
            if "=" not in item:
                next(items, None)
            continue
        kept.append(item)
    share = max(1, math.ceil(ns.connections / ns.processes))
    subscribers = ns.subscribers if k == 0 else 0  # market data is watched once
    return [
        sys.executable,
        "-m",
        "clients.load",
        *kept,
        "--child",
        "--json",
        "--no-progress",
        "--rate",
        repr(rate / ns.processes),
        "--duration",
        repr(ns.duration),
        "--connections",
        str(share),
        "--seed",
        str(ns.seed * 7919 + k),
        "--subscribers",
        str(subscribers),
        "--start-at",
        repr(start_at),
    ]


def merge_steps(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One step's figures from K children that ran it side by side."""
    hist = {
        name: merged(decode(p["histograms"][name]) for p in parts)
        for name in parts[0]["histograms"]
    }
    first = parts[0]
    step: dict[str, Any] = {
        "target_rate": sum(p["target_rate"] for p in parts),
        "scheduled": sum(p["scheduled"] for p in parts),
        "sent": sum(p["sent"] for p in parts),
        "completed": sum(p["completed"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "unanswered": sum(p["unanswered"] for p in parts),
        "overloaded": any(p["overloaded"] for p in parts),
        "achieved_rate": round(sum(p["achieved_rate"] for p in parts), 1),
        "elapsed_s": max(p["elapsed_s"] for p in parts),
        "errors": {k: sum(p["errors"][k] for p in parts) for k in first["errors"]},
        "error_samples": sorted({s for p in parts for s in p["error_samples"]})[:5],
        "latency_us": summary(hist["all"]),
        "by_kind": {name: summary(hist[name]) for name in KIND_NAMES},
        "send_lag_us": summary(hist["send_lag"]),
        "generator_cpu": round(sum(p["generator_cpu"] for p in parts), 3),
        "fills": sum(p["fills"] for p in parts),
        "market_data": {
            **{
                k: sum(p["market_data"][k] for p in parts)
                for k in ("top_of_book", "depth", "trades")
            },
            "lag_us": summary(hist["market_data_lag"]),
        },
        "histograms": {name: encode(h) for name, h in hist.items()},
        "processes": len(parts),
        "wall_start": min(p["wall_start"] for p in parts),
        "wall_end": max(p["wall_end"] for p in parts),
    }
    return step


async def _multi_process(
    ns: argparse.Namespace, argv: list[str], progress: Progress
) -> dict[str, Any]:
    index = 0
    instruments: list[str] = []

    async def run_step(rate: float) -> dict[str, Any]:
        nonlocal index, instruments
        index += 1
        start_at = time.time() + 1.5  # time for every child to connect and log in
        procs = [
            await asyncio.create_subprocess_exec(
                *child_argv(ns, argv, k, rate, start_at),
                stdout=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
            for k in range(ns.processes)
        ]
        progress.start(
            f"step {index} {rate:,.0f}/s x{ns.processes}", lambda: None, ns.duration + 1.5
        )
        try:
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
        finally:
            await progress.stop()
        parts = []
        for proc, (out, _) in zip(procs, outputs, strict=True):
            if proc.returncode != 0:
                raise RuntimeError(f"a load child exited with status {proc.returncode}")
            document = json.loads(out)
            instruments = document["instruments"]
            parts.append(document["steps"][0])
        step = merge_steps(parts)
        await progress.stop(step_line(step, ns))
        return step

    async def pause() -> None:
        await asyncio.sleep(ns.pause)

    result = await _drive(run_step, pause, ns, instruments)
    result["instruments"] = instruments
    return result


def _print_human(result: dict[str, Any], ns: argparse.Namespace, out: TextIO) -> None:
    header = [
        "target/s",
        "achieved/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "send lag p99",
        "gen CPU",
        "md msgs",
        "verdict",
    ]
    rows = []
    for step in result["steps"]:
        md = step["market_data"]
        rows.append(
            [
                f"{step['target_rate']:,.0f}",
                f"{step['achieved_rate']:,.0f}",
                *latency_row(step["latency_us"]),
                f"{sum(step['errors'].values()):,}",
                format_us(step["send_lag_us"].get("p99")),
                f"{step['generator_cpu']:.0%}",
                f"{md['top_of_book'] + md['depth'] + md['trades']:,}",
                step["verdict"],
            ]
        )
    print(
        f"instruments: {', '.join(result['instruments'])}; seed {ns.seed}; mix {ns.mix.text()}",
        file=out,
    )
    print(markdown_table(header, rows), file=out)
    if "max_sustained" in result:
        best = result["max_sustained"]
        if best is None:
            print("max sustained: none of the steps passed", file=out)
        else:
            print(
                f"max sustained: {best['target_rate']:,.0f} orders/s "
                f"(achieved {best['achieved_rate']:,.0f}/s, p99 "
                f"{format_us(best['latency_us'].get('p99'))} <= {ns.p99_limit_ms:g} ms)",
                file=out,
            )
    samples = sorted({s for step in result["steps"] for s in step["error_samples"]})
    if samples:
        print("error samples: " + "; ".join(samples[:5]), file=out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``optivex load``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = parser.parse_args(args)
    ssl_context(ns, parser)  # an unreadable --tls-ca-file is a usage error, before any step
    try:
        loop_name = choose_loop(ns.loop)
    except ValueError as exc:
        print(f"optivex load: {exc}", file=sys.stderr)
        return 2
    if not ns.info_port and not ns.symbols:
        print("optivex load: without Info (--info-port 0) give --symbols", file=sys.stderr)
        return 2
    enabled = sys.stderr.isatty() if ns.progress is None else ns.progress
    progress = Progress(sys.stderr, enabled and not ns.child)
    if not ns.child and not ns.json:
        print(f"optivex load: seed {ns.seed}, loop {loop_name}", file=sys.stderr)
    if ns.processes > 1 and not ns.child:
        coro: Awaitable[dict[str, Any]] = _multi_process(ns, args, progress)
        sockets = 8
    else:
        coro = _in_process(ns, progress)
        sockets = ns.connections + ns.subscribers + 8
    factory = _make_loop_factory(loop_name, sockets)
    _tighten_timer_slack()

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(coro, ns.timeout)

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(bounded())
    except (OSError, RuntimeError, TimeoutError, RemoteError, ConnectionLost) as exc:
        print(f"optivex load: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optivex load: interrupted", file=sys.stderr)
        return 130
    result.update(seed=ns.seed, loop=loop_name, processes=ns.processes, mix=ns.mix.text())
    if ns.json:
        if not (ns.histograms or ns.child):
            for step in result["steps"]:
                step.pop("histograms", None)
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_human(result, ns, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
