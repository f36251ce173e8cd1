"""The paired maximum-rate search (bench/relay_pair.py) with a fake load generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.relay_pair import Side, paired_search, sustained


def _fake(capacity: Mapping[str, float], asked: list[tuple[str, float]]) -> Any:
    def runner(args: Sequence[str], timeout: float, env: Any, pids: Any) -> dict[str, Any]:
        name = args[0]
        rate = float(args[args.index("--rate") + 1])
        asked.append((name, rate))
        ok = rate <= capacity[name]
        step = {
            "target_rate": rate,
            "achieved_rate": rate if ok else capacity[name],
            "latency_us": {"p50": 100, "p99": 900 if ok else 50_000},
            "unanswered": 0,
            "failed": 0,
            "overloaded": False,
            "cpu": {name: 0.5},
        }
        return {"steps": [step]}

    return runner


def test_each_side_climbs_alone_retries_a_miss_and_bisects_once() -> None:
    asked: list[tuple[str, float]] = []
    sides = [Side("relay", ["relay"], {}), Side("exchange", ["exchange"], {})]
    paired_search(
        sides,
        [],
        {},
        step_s=1,
        start_rate=1000,
        factor=2,
        budget_s=60,
        log=lambda _: None,
        runner=_fake({"relay": 9000, "exchange": 2500}, asked),
    )
    relay, exchange = (s.figures() for s in sides)
    # Paired: at each rate the relay goes first, then the exchange.
    assert asked[:4] == [("relay", 1000), ("exchange", 1000), ("relay", 2000), ("exchange", 2000)]
    assert asked.count(("exchange", 4000)) == 2  # a miss is tried again before it counts
    assert 2000 <= exchange["max_sustained"] <= 2500
    assert 8000 <= relay["max_sustained"] <= 9000
    assert relay["peak_achieved"] >= relay["max_sustained"]
    assert all("sustained" in s for s in relay["steps"])


def test_the_slower_side_is_bisected_as_soon_as_its_ladder_ends() -> None:
    """The exchange's ladder ends long before the relay's; its bisection step
    comes right after its miss, not after the relay has used the budget up."""
    asked: list[tuple[str, float]] = []
    sides = [Side("relay", ["relay"], {}), Side("exchange", ["exchange"], {})]
    paired_search(
        sides, [], {}, step_s=1, start_rate=1000, factor=2, budget_s=60,
        log=lambda _: None, runner=_fake({"relay": 100_000, "exchange": 3500}, asked),
    )  # fmt: skip
    last_miss = max(i for i, a in enumerate(asked) if a == ("exchange", 4000))
    assert asked[last_miss + 1] == ("exchange", 3000)  # the bisection, at once
    assert asked[last_miss + 2] == ("relay", 8000)  # then the relay climbs on
    assert sides[1].figures()["max_sustained"] == 3000


def test_a_side_that_misses_its_first_rate_steps_down() -> None:
    asked: list[tuple[str, float]] = []
    sides = [Side("exchange", ["exchange"], {})]
    paired_search(
        sides, [], {}, step_s=1, start_rate=4000, factor=2, budget_s=60,
        log=lambda _: None, runner=_fake({"exchange": 1500}, asked),
    )  # fmt: skip
    assert sides[0].figures()["max_sustained"] == 1000
    assert ("exchange", 1000) in asked


def test_sustained_verdict() -> None:
    good = {"target_rate": 100, "achieved_rate": 96, "latency_us": {"p99": 10_000}}
    assert sustained(good)
    assert not sustained({**good, "achieved_rate": 94})
    assert not sustained({**good, "latency_us": {"p99": 10_001}})
    assert not sustained({**good, "unanswered": 1})
