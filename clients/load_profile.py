"""Profile the exchange's services under load: ``python -m clients.load_profile``.

Starts the exchange (launcher, journal on), creates four instruments, runs
``optivex load`` at a fixed rate and, meanwhile, samples every service with
py-spy (``--gil``: only samples holding the GIL, i.e. Python CPU time, not
waiting in ``epoll`` or blocked in ``fsync``; ``--no-gil`` samples wall time).
Prints, per service, the CPU it used per order (from /proc, kernel included)
and the functions with the most self and inclusive samples, and keeps the raw
collapsed stacks (flamegraph input) in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clients.load_harness import Exchange, create_instruments, run_load

SYMBOLS = ("PRFA", "PRFB", "PRFC", "PRFD")
ENTRY_FRAMES = (
    "<module>", "_run_module_as_main", "_run_code", "run_service", "run_loop", "main",
    "run", "run_forever", "run_until_complete", "Runner.run", "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete", "BaseEventLoop._run_once", "Handle._run",
)  # fmt: skip


def short(frame: str) -> str:
    """``func (path:line)`` as ``func (file)`` with a short path."""
    name, _, rest = frame.partition(" (")
    path = rest.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        path = "/".join(parts[parts.index("site-packages") + 1 :][:2])
    elif "services" in parts:
        path = "/".join(parts[parts.index("services") :])
    elif "clients" in parts:
        path = "/".join(parts[parts.index("clients") :])
    else:
        path = parts[-1]
    return f"{name} ({path})"


def summarise(raw: Path, top: int = 15) -> list[str]:
    """Self and inclusive shares of the samples in a py-spy ``raw`` file."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        own[short(frames[-1])] += n
        for name in {short(f) for f in frames}:
            inclusive[name] += n
    lines = [f"  {total} samples; self:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive (entry frames left out):")
    shown = 0
    for name, n in inclusive.most_common():
        if name.split(" (")[0] in ENTRY_FRAMES:
            continue
        lines.append(f"    {n / total:6.1%}  {name}")
        shown += 1
        if shown >= top:
            break
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.load_profile", description=__doc__)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--gil", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="bench/results/profiles")
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPTIVEX_LOOP": options.loop, "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIVEX_SERVICE_PASSWORD", None)
    with tempfile.TemporaryDirectory(prefix="optivex-prof-") as tmp, Exchange(Path(tmp), env) as ex:
        asyncio.run(create_instruments(ex.host, ex.ports["admin"], SYMBOLS))
        services = {k: v for k, v in ex.pids.items() if k != "admin"}
        spies = {
            name: subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(int(options.duration) + 2),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-o",
                    str(out / f"{name}.raw"),
                    "--nonblocking",
                    *(["--gil"] if options.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in services.items()
        }
        document = run_load(
            [
                "--host",
                ex.host,
                "--port",
                str(ex.ports["risk_gateway"]),
                "--info-port",
                str(ex.ports["info"]),
                "--symbols",
                ",".join(SYMBOLS),
                "--rate",
                str(options.rate),
                "--duration",
                str(options.duration),
                "--no-progress",
            ],
            options.duration + 120,
            {k: v for k, v in env.items() if k != "OPTIVEX_LOOP"},
            services,
        )
        for process in spies.values():
            process.wait(60)
    step = document["steps"][0]
    rate = step["achieved_rate"] or 1.0
    print(
        f"load {options.rate:,.0f}/s for {options.duration:g} s ({options.loop}): achieved "
        f"{rate:,.0f}/s, p50 {step['latency_us'].get('p50')} µs, p99 "
        f"{step['latency_us'].get('p99')} µs"
    )
    for name in services:
        share = step.get("cpu", {}).get(name, 0.0)
        print(f"\n{name}: {share:.0%} of a core, {share / rate * 1e6:.0f} µs CPU per order")
        raw = out / f"{name}.raw"
        if raw.exists():
            print("\n".join(summarise(raw, options.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
