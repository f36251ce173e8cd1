"""``make bench``: every benchmark in one run, written as a Markdown table and JSON.

Each benchmark module exposes ``run(results: dict) -> None``: it measures, prints
its own table as it goes, and stores its figures under its own key in
``results``.  This runner calls them in order, keeps going when one fails (the
failure is recorded, not hidden), and writes ``bench/results/bench.json`` and
``bench/results/bench.md``.  ``--only NAME[,NAME]`` runs a subset.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("engine", "bench.engine_bench"),
    ("limits", "bench.limits_bench"),
    ("service_cpu", "bench.service_cpu"),
    ("relay", "bench.relay_bench"),
    ("floor", "bench.floor"),
    ("end_to_end", "bench.e2e_bench"),
    ("info_fanout", "bench.info_bench"),
    ("memory", "bench.memory_bench"),
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PER_BENCHMARK_S = int(os.environ.get("OPTIVEX_BENCH_TIMEOUT_S", "420"))
"""A benchmark that hangs is stopped after this long and recorded as failed."""


class BenchmarkTimeout(Exception):
    """A benchmark ran past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`BenchmarkTimeout` in the main thread after ``seconds`` (SIGALRM)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise BenchmarkTimeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _load_average() -> str:
    """The machine's 1-minute load average: other work skews every figure here."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on Linux
        return "?"


def _summary(results: dict[str, Any]) -> dict[str, Any] | None:
    """The exchange's throughput as a ratio to the null relay's, measured in the same run.

    ``bench.e2e_bench`` searches both maxima paired, step by step
    (``bench.relay_pair``), and stores the relay's beside the exchange's.
    """
    e2e = results.get("end_to_end", {})
    if not isinstance(e2e, dict):
        return None
    relay_best, e2e_best = e2e.get("relay_max_sustained"), e2e.get("max_sustained")
    if relay_best is None or e2e_best is None:
        return None
    summary: dict[str, Any] = {
        "exchange_max_sustained (best loop)": e2e_best,
        "relay_max_sustained (best loop)": relay_best,
        "exchange_to_relay (best / best)": round(e2e_best / relay_best, 3) if relay_best else None,
        "goal_exchange_to_relay": ">= 0.125 (1/8)",
    }
    if e2e.get("relay_peak_achieved") and e2e.get("peak_achieved"):
        summary["exchange_peak_achieved (any p99)"] = e2e["peak_achieved"]
        summary["relay_peak_achieved (any p99)"] = e2e["relay_peak_achieved"]
        summary["exchange_to_relay_peak"] = round(
            e2e["peak_achieved"] / e2e["relay_peak_achieved"], 3
        )
    for loop, value in e2e.get("max_sustained_by_loop", {}).items():
        base = e2e.get("relay_max_sustained_by_loop", {}).get(loop)
        if base:
            summary[f"exchange_to_relay ({loop}, paired)"] = round(value / base, 3)
    return summary


def _step_at(document: Any, rate: int) -> dict[str, Any]:
    """The step of a load document whose target rate was ``rate`` (empty if none)."""
    steps = document.get("steps", []) if isinstance(document, dict) else []
    return next((s for s in steps if round(s.get("target_rate", 0)) == rate), {})


def _goals(results: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's latency and throughput goals beside the exchange's and the floor's figures.

    A goal is judged on the default configuration (journal synced per batch)
    only; the unsynced figure is shown beside it as the price of durability.

    The floor (``bench.floor``: generator -> byte pipe -> frame echo -> pipe ->
    generator, no journal and no logic) is what *any* asyncio design would get
    on this machine; a goal the floor itself misses cannot be met here.
    """
    e2e, floor = results.get("end_to_end"), results.get("floor")
    if not isinstance(e2e, dict) or "runs" not in e2e:
        return None
    floor_run = floor.get("run") if isinstance(floor, dict) else None
    rows: dict[str, Any] = {}
    for label, rate, key, limit in (
        ("p50 at 1,000/s <= 250 µs", 1000, "p50", 250.0),
        ("p99 at 1,000/s <= 1 ms", 1000, "p99", 1000.0),
        ("p99 at 10,000/s <= 10 ms", 10000, "p99", 10000.0),
    ):
        by_loop = {
            loop: _step_at(run.get("fixed"), rate).get("latency_us", {}).get(key)
            for loop, run in e2e["runs"].items()
        }
        floor_value = _step_at(floor_run, rate).get("latency_us", {}).get(key)
        unsynced = _step_at(e2e.get("fixed_fsync_none"), rate).get("latency_us", {}).get(key)
        rows[label] = {"exchange_us": by_loop, "floor_us": floor_value,
                       "fsync_none_us": unsynced,
                       "met": any(v is not None and v <= limit for v in by_loop.values())}  # fmt: skip
    best = e2e.get("max_sustained")
    rows[">= 30,000 orders/s sustained"] = {
        "exchange": best,
        "floor_cpu_at_30000": _step_at(floor_run, 30000).get("cpu"),
        "met": best is not None and best >= 30000,
    }
    ratios = {
        loop: round(value / relay, 3)
        for loop, value in e2e.get("max_sustained_by_loop", {}).items()
        if (relay := e2e.get("relay_max_sustained_by_loop", {}).get(loop))
    }
    rows[">= 1/8 of the null relay's max sustained (paired)"] = {
        "ratio": ratios,
        "met": any(r >= 0.125 for r in ratios.values()),
    }
    return {"goals": rows, "table": _goals_table(rows)}


def _goals_table(rows: dict[str, Any]) -> str:
    def us(value: Any) -> str:
        return "-" if value is None else f"{value:,.0f} µs"

    lines = [
        "| goal | exchange | floor (no logic, no journal) | met |",
        "| --- | --- | --- | --- |",
    ]
    for label, row in rows.items():
        if "exchange_us" in row:
            exchange = ", ".join(f"{loop} {us(v)}" for loop, v in row["exchange_us"].items())
            if row["fsync_none_us"] is not None:
                exchange += f" (journal not synced: {us(row['fsync_none_us'])})"
            floor = us(row["floor_us"])
        elif "ratio" in row:
            exchange = ", ".join(f"{loop} {r:.3f}" for loop, r in row["ratio"].items()) or "-"
            floor = "-"
        else:
            exchange = "-" if row["exchange"] is None else f"{row['exchange']:,.0f}/s"
            cpu = row["floor_cpu_at_30000"] or {}
            floor = "CPU at 30,000/s: " + (", ".join(f"{k} {v:.0%}" for k, v in cpu.items()) or "-")
        lines.append(f"| {label} | {exchange} | {floor} | {'yes' if row['met'] else 'no'} |")
    return "\n".join(lines)


def _markdown(results: dict[str, Any]) -> str:
    lines = ["# Optivex benchmark results", ""]
    meta = results.get("_meta", {})
    lines.append(
        f"Run {meta.get('started', '')} on {meta.get('machine', '')}, "
        f"Python {meta.get('python', '')}, {meta.get('cpus', '?')} CPUs; 1-minute load "
        f"average {meta.get('load_before', '?')} before and {meta.get('load_after', '?')} after "
        "(anything above ~0.5 before means other work shared the machine)."
    )
    for name, figures in results.items():
        if name.startswith("_"):
            continue
        lines += ["", f"## {name}", ""]
        if isinstance(figures, dict) and "table" in figures:
            lines.append(str(figures["table"]))
        else:
            flat = figures if isinstance(figures, dict) else {"value": figures}
            # A benchmark may nest its own section (with its table) one level down.
            tables = [v["table"] for v in flat.values() if isinstance(v, dict) and "table" in v]
            lines += tables
            if tables:
                lines.append("")
            lines += ["| figure | value |", "| --- | --- |"]
            for key, value in flat.items():
                if not (isinstance(value, dict) and "table" in value):
                    lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", help="comma-separated subset of: " + ", ".join(n for n, _ in BENCHMARKS)
    )
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results folder")
    options = parser.parse_args(argv)
    wanted = set(options.only.split(",")) if options.only else None
    results: dict[str, Any] = {
        "_meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()} {platform.system()}",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": _load_average(),
        }
    }
    failed = []
    for name, module_name in BENCHMARKS:
        if wanted is not None and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            results[name] = {"status": f"not available: {exc}"}
            continue
        started = time.perf_counter()
        section: dict[str, Any] = {}
        try:
            with _time_limit(PER_BENCHMARK_S):
                module.run(section)
        except Exception as exc:
            traceback.print_exc()
            section["status"] = f"failed: {exc!r}"
            failed.append(name)
        section.setdefault("seconds", round(time.perf_counter() - started, 1))
        section.setdefault("load_average_after", _load_average())
        results[name] = section
    results["_meta"]["load_after"] = _load_average()
    goals = _goals(results)
    summary = _summary(results)
    if summary is not None:
        results = {"_meta": results.pop("_meta"), "summary": summary, **results}
        print(
            "\nexchange / null relay max sustained (goal >= 0.125): "
            + ", ".join(
                f"{k} = {v}" for k, v in summary.items() if k.startswith("exchange_to_relay")
            )
        )
    if goals is not None:  # first after the run's conditions: the figures that are judged
        results = {"_meta": results.pop("_meta"), "goals": goals, **results}
        print("\n" + goals["table"])
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "bench.md").write_text(_markdown(results))
    print(f"\nwrote {out / 'bench.md'} and {out / 'bench.json'}")
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
