"""The flash1 reference workloads: the engine's report stream must hash to the
published SHA-256 for each of the five scenarios (about 2 M messages each).

The workloads live outside the project (../shared/bench/flash1, or
$OPTIVEX_FLASH1_DIR); without them the tests skip and say so.
"""

from __future__ import annotations

import gc
import time

import pytest

from bench.flash1 import PUBLISHED_SHA256, SCENARIOS, flash1_dir, load_records, replay

FOLDER = flash1_dir()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_report_stream_matches_the_published_hash(scenario: str) -> None:
    path = FOLDER / f"{scenario}.bin.xz"
    if not path.is_file():
        pytest.skip(f"flash1 workload not found: {path} (set OPTIVEX_FLASH1_DIR)")
    started = time.perf_counter()
    records = load_records(scenario, FOLDER)
    # Freeze the 2 M decoded records so cyclic-GC passes do not rescan them (as the
    # benchmark does); the engine's own objects stay under normal collection.
    gc.collect()
    gc.freeze()
    try:
        loaded = time.perf_counter()
        result = replay(records)
        done = time.perf_counter()
    finally:
        gc.unfreeze()
    print(
        f"\nflash1 {scenario}: {result.messages:,} messages, {result.trades:,} trades, "
        f"{result.reports:,} reports; load {loaded - started:.1f}s, "
        f"replay {done - loaded:.1f}s ({result.messages / (done - loaded):,.0f} msg/s)"
    )
    assert result.messages == len(records)
    assert result.sha256 == PUBLISHED_SHA256[scenario]
