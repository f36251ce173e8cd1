"""Paired maximum-rate search: the null relay and the exchange, step by step, side by side.

On a shared 2-core machine the other work varies by the minute, so two
searches run one after the other can meet different weather and their ratio
says more about the neighbours than about the exchange.  Here both systems are
up at once and every rate of the ladder is run on the relay and then at once on
the exchange (one ``optivex load`` process per step, same flags), so each pair
of steps sees the same conditions.

Each side climbs x``factor`` from ``start_rate`` until a step misses (p99 >
10 ms, < 95 % achieved, or lost answers) twice in a row at the same rate; a side
that misses its very first rate steps down instead.  The gap between a side's
last pass and first miss is bisected once, as soon as that side's ladder ends:
the slower side (the exchange) finishes long before the faster one, and waiting
for the end of the whole ladder used to leave no budget for it.  The whole
search stops starting steps after ``budget_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.load_harness import run_load

P99_LIMIT_US = 10_000
MIN_ACHIEVED = 0.95


def sustained(step: Mapping[str, Any]) -> bool:
    """The same verdict as ``optivex load --find-max``."""
    p99 = step["latency_us"].get("p99")
    return (
        not step.get("overloaded")
        and not step.get("unanswered")
        and not step.get("failed")
        and step["achieved_rate"] >= MIN_ACHIEVED * step["target_rate"]
        and p99 is not None
        and p99 <= P99_LIMIT_US
    )


@dataclass
class Side:
    """One system under test: how to reach it and what it found so far."""

    name: str
    target_args: list[str]
    pids: dict[str, int]
    steps: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    missed: float | None = None
    done: bool = False

    def figures(self) -> dict[str, Any]:
        peak = max(self.steps, key=lambda s: s["achieved_rate"], default=None)
        return {
            "max_sustained": self.best["target_rate"] if self.best else 0.0,
            "latency_at_max_us": self.best["latency_us"] if self.best else {},
            "cpu_at_max": self.best.get("cpu", {}) if self.best else {},
            "achieved_at_max": self.best["achieved_rate"] if self.best else 0.0,
            "peak_achieved": peak["achieved_rate"] if peak else 0.0,
            "peak_p99_us": peak["latency_us"].get("p99") if peak else None,
            "steps": [
                {k: s.get(k) for k in ("target_rate", "achieved_rate", "latency_us", "cpu")}
                | {"sustained": sustained(s)}
                for s in self.steps
            ],
        }


def paired_search(
    sides: Sequence[Side],
    flow: Sequence[str],
    env: Mapping[str, str],
    *,
    step_s: float,
    start_rate: float,
    factor: float,
    budget_s: float,
    log: Callable[[str], None] = print,
    runner: Callable[..., dict[str, Any]] = run_load,
) -> None:
    """Run the ladder on every side (see the module docstring); fills each ``Side``."""
    deadline = time.monotonic() + budget_s

    def step(side: Side, rate: float) -> dict[str, Any]:
        document = runner(
            [*side.target_args, *flow, "--rate", f"{rate:.0f}", "--duration", str(step_s)],
            step_s + 90,
            env,
            side.pids,
        )
        result: dict[str, Any] = document["steps"][0]
        result.pop("histograms", None)
        side.steps.append(result)
        p99 = result["latency_us"].get("p99")
        log(
            f"  {side.name:>8} {rate:>8,.0f}/s -> {result['achieved_rate']:>8,.0f}/s "
            f"p99 {p99 if p99 is not None else '-'} µs {'ok' if sustained(result) else 'miss'}"
        )
        return result

    def attempt(side: Side, rate: float) -> bool:
        """A step, tried once more on a miss."""
        for _ in range(2):
            result = step(side, rate)
            if sustained(result):
                side.best = result
                return True
        return False

    def bisect(side: Side) -> None:
        """One step between the last pass and the first miss, if the gap is wide."""
        if side.best is None or side.missed is None or time.monotonic() >= deadline:
            return
        low = side.best["target_rate"]
        if (side.missed - low) / side.missed < 0.08:
            return
        middle = round((low + side.missed) / 2, -1)
        if not attempt(side, middle):
            side.missed = middle

    rate = start_rate
    while not all(s.done for s in sides) and time.monotonic() < deadline:
        for side in sides:
            if side.done or time.monotonic() >= deadline:
                continue
            if attempt(side, rate):
                continue
            side.missed = rate
            if side.best is None:
                low = rate
                for _ in range(2):  # the start was already too high: step down
                    low /= factor * factor
                    if time.monotonic() >= deadline or attempt(side, low):
                        break
                    side.missed = low
            side.done = True
            bisect(side)  # at once: the other side may still use the budget up
        rate *= factor
