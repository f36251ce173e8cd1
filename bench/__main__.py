"""``make bench``: every benchmark in one run, written as a Markdown table and JSON.

Each benchmark module exposes ``run(results: dict) -> None``: it measures, prints
its own table as it goes, and stores its figures under its own key in
``results``.  This runner calls them in order, keeps going when one fails (the
failure is recorded, not hidden), and writes ``bench/results/bench.json`` and
``bench/results/bench.md``.  ``--only NAME[,NAME]`` runs a subset.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("engine", "bench.engine_bench"),
    ("limits", "bench.limits_bench"),
    ("relay", "bench.relay_bench"),
    ("end_to_end", "bench.e2e_bench"),
    ("info_fanout", "bench.info_bench"),
    ("memory", "bench.memory_bench"),
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _markdown(results: dict[str, Any]) -> str:
    lines = ["# Optivex benchmark results", ""]
    meta = results.get("_meta", {})
    lines.append(
        f"Run {meta.get('started', '')} on {meta.get('machine', '')}, "
        f"Python {meta.get('python', '')}."
    )
    for name, figures in results.items():
        if name.startswith("_"):
            continue
        lines += ["", f"## {name}", ""]
        if isinstance(figures, dict) and "table" in figures:
            lines.append(str(figures["table"]))
        else:
            lines += ["| figure | value |", "| --- | --- |"]
            flat = figures if isinstance(figures, dict) else {"value": figures}
            for key, value in flat.items():
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
            module.run(section)
        except Exception as exc:
            traceback.print_exc()
            section["status"] = f"failed: {exc!r}"
            failed.append(name)
        section.setdefault("seconds", round(time.perf_counter() - started, 1))
        results[name] = section
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
