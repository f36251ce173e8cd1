"""Latency histograms: summaries, exact merging across processes, table cells."""

from __future__ import annotations

import argparse

from clients.load import failure_reason, merge_steps
from clients.load_stats import decode, encode, format_us, histogram_of, merged, summary


def test_summary_reports_percentiles_in_microseconds() -> None:
    figures = summary(histogram_of(range(1, 10_001)))
    assert figures["count"] == 10_000
    assert abs(figures["p50"] - 5000) <= 5
    assert abs(figures["p99"] - 9900) <= 10
    assert abs(figures["p99_9"] - 9990) <= 10
    assert abs(figures["max"] - 10_000) <= 10
    assert summary(histogram_of([])) == {"count": 0}


def test_values_outside_the_range_are_clamped_not_lost() -> None:
    figures = summary(histogram_of([-5, 0, 10**13]))
    assert figures["count"] == 3


def test_encoded_histograms_merge_exactly() -> None:
    a, b = histogram_of(range(1, 501)), histogram_of(range(501, 1001))
    both = merged([decode(encode(a)), decode(encode(b))])
    assert summary(both) == summary(histogram_of(range(1, 1001)))


def _part(rate: float, values: range, achieved: float) -> dict[str, object]:
    h = encode(histogram_of(values))
    empty = encode(histogram_of([]))
    kinds = ("passive", "cross", "amend", "cancel")
    return {
        "target_rate": rate,
        "scheduled": len(values),
        "sent": len(values),
        "completed": len(values),
        "failed": 0,
        "unanswered": 0,
        "overloaded": False,
        "achieved_rate": achieved,
        "elapsed_s": 1.0,
        "errors": dict.fromkeys(kinds, 1),
        "error_samples": ["cancel: unknown order"],
        "generator_cpu": 0.25,
        "fills": 3,
        "market_data": {"top_of_book": 1, "depth": 2, "trades": 3},
        "histograms": {
            "all": h,
            "send_lag": empty,
            "market_data_lag": empty,
            **dict.fromkeys(kinds, h),
        },
        "wall_start": 10.0,
        "wall_end": 11.0,
    }


def test_merge_steps_adds_rates_and_merges_histograms() -> None:
    step = merge_steps([_part(500, range(1, 501), 499.0), _part(500, range(501, 1001), 498.0)])
    assert step["target_rate"] == 1000
    assert step["achieved_rate"] == 997.0
    assert step["latency_us"] == summary(histogram_of(range(1, 1001)))
    assert step["errors"]["cancel"] == 2
    assert step["market_data"]["trades"] == 6
    assert step["processes"] == 2


def test_failure_reasons() -> None:
    ns = argparse.Namespace(min_achieved=0.95, p99_limit_ms=10.0, max_error_ratio=0.2)
    good = merge_steps([_part(1000, range(1, 1001), 990.0)])
    assert failure_reason(good, ns) == ""
    assert failure_reason({**good, "achieved_rate": 900.0}, ns).startswith("achieved")
    assert failure_reason({**good, "latency_us": {"p99": 10_001}}, ns).startswith("p99")
    assert failure_reason({**good, "unanswered": 1}, ns) == "lost answers"
    assert failure_reason({**good, "errors": {"cancel": 900}}, ns).startswith("errors")


def test_format_us() -> None:
    assert format_us(87) == "87 µs"
    assert format_us(1250) == "1.25 ms"
    assert format_us(2_100_000) == "2.10 s"
    assert format_us(None) == "-"
