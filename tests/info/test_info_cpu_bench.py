"""``bench.info_cpu`` keeps working: a short stream through the service's code path.

The benchmark is how Info's CPU per event is tracked (issue #9); it must run, apply
the whole stream without a resync, publish, and publish the same bytes every run
(its digest is how two versions of Info are compared).
"""

from __future__ import annotations

from bench.info_cpu import generate, measure


def test_info_cpu_bench_runs_and_is_reproducible() -> None:
    stream = generate(400, seed=3)
    assert len(stream.orders) == 400
    assert stream.events >= 400
    one = measure(stream, orders_per_read=1, runs=2)
    batched = measure(stream, orders_per_read=10, runs=2)
    for result in (one, batched):
        assert result["us_per_order"] > 0
        assert result["deliveries"] > 0
    # Batching reads conflates intermediate states: fewer messages, never more.
    assert batched["deliveries"] <= one["deliveries"]
    assert measure(stream, orders_per_read=1, runs=1)["digest"] == one["digest"]
