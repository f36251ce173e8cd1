"""The soak: the CI load for 30 minutes, memory of every service sampled.

Run with ``make soak`` (marked ``slow``, so ``make test`` skips it).
``OPTIVEX_SOAK_SECONDS`` (default 1800) and ``OPTIVEX_SOAK_RATE`` (default
1000) change its length and rate.

Pass: every minute's p99 under the CI limit, nothing unanswered, the same
end-of-run proofs as the CI load test, and bounded memory.  "Bounded" needs
care: by contract (PROTOCOL.md, client_order_id) the Order Book and the Risk
Gateway remember every ``(user, client_order_id)`` they accepted forever, so
their RSS grows by a fixed amount per acknowledged insert; everything else
(books, windows, mirrors, connections) is bounded.  The test allows that
per-insert growth (``COID_ALLOWANCE``) plus a fixed slack, reports what it
measured, and holds Info and Admin to the fixed slack alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.reliability.loadrun import LedgerLoadRun
from tests.reliability.observe import InfoView
from tests.reliability.test_load import (
    P99_LIMIT_US,
    load_options,
    open_views,
    start_loaded_cluster,
    verify_run,
)

SECONDS = float(os.environ.get("OPTIVEX_SOAK_SECONDS", "1800"))
RATE = float(os.environ.get("OPTIVEX_SOAK_RATE", "1000"))
STEP_S = 60.0
WARM_UP_STEPS = 2
SLACK_BYTES = 64 << 20
COID_ALLOWANCE = 1024
"""Bytes per acknowledged insert the Order Book and the Gateway may keep for its
client_order_id (measured: a few hundred; see docs/reliability.md)."""


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS) + 600)
async def test_soak_memory_stays_bounded(tmp_path: Path, seed: int) -> None:
    cluster, passwords, books = await start_loaded_cluster(tmp_path)
    run = LedgerLoadRun(load_options(cluster, passwords, seed))
    views: list[InfoView] = []
    try:
        await run.setup()
        await open_views(cluster, passwords, views)
        steps = max(WARM_UP_STEPS + 1, round(SECONDS / STEP_S))
        baseline: dict[str, int] = {}
        acked_at_baseline = 0
        started = time.monotonic()
        for step in range(steps):
            figures = await run.step(RATE, STEP_S)
            rss = {s.name: s.rss_bytes() for s in cluster.services}
            print(
                f"[{time.monotonic() - started:7.0f} s] step {step + 1}/{steps}: "
                f"{figures['achieved_rate']}/s p99 {figures['latency_us']['p99']} µs "
                f"max {figures['latency_us']['max']} µs; acked {len(run.ledger.acked)}; RSS MB "
                + ", ".join(f"{name} {value / 1e6:.1f}" for name, value in rss.items()),
                flush=True,
            )
            assert figures["unanswered"] == 0 and figures["failed"] == 0
            assert figures["latency_us"]["p99"] < P99_LIMIT_US
            if step + 1 == WARM_UP_STEPS:
                baseline, acked_at_baseline = rss, len(run.ledger.acked)
        inserts = len(run.ledger.acked) - acked_at_baseline
        growth = {name: rss[name] - baseline[name] for name in rss}
        per_insert = {name: round(growth[name] / max(1, inserts)) for name in growth}
        print(f"growth after warm-up over {inserts} inserts: {growth} ({per_insert} B/insert)")
        for name, grown in growth.items():
            allowed = SLACK_BYTES + (
                COID_ALLOWANCE * inserts if name in ("order-book", "risk-gateway") else 0
            )
            assert grown < allowed, (
                f"{name} grew {grown / 1e6:.1f} MB (allowed {allowed / 1e6:.1f})"
            )
        print(f"verified: {await verify_run(cluster, run, views, books)}")
    finally:
        for view in views:
            view.close()
        await run.close()
        statuses = await asyncio.to_thread(cluster.stop)
    assert set(statuses.values()) == {0}, statuses
