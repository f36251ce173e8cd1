"""Latency figures of the load generator: HdrHistograms, summaries, merging, tables.

Latencies are recorded in microseconds into plain ``array('q')`` buffers while a
step runs (an append is far cheaper than a histogram update in Python, so the
generator spends its time sending) and turned into HdrHistograms (3 significant
digits, 1 µs to 1 hour) when the step is over.  Histograms travel between
processes in HdrHistogram's standard compressed encoding, so ``--processes K``
merges exactly, not by averaging percentiles.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from hdrh.histogram import HdrHistogram

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
SIGNIFICANT_DIGITS: Final = 3
PERCENTILES: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def histogram_of(values: Iterable[int]) -> HdrHistogram:
    """A histogram of microsecond values (clamped into the trackable range).

    Each distinct value is recorded once with its count: latencies in whole
    microseconds repeat a lot (150,000 orders of a step have a few thousand
    distinct values), ``Counter`` counts in C, and ``record_value`` is Python,
    so this is several times cheaper than recording value by value and gives
    the same histogram.
    """
    histogram = new_histogram()
    record = histogram.record_value
    for value, count in Counter(values).items():
        record(
            LOWEST_US if value < LOWEST_US else HIGHEST_US if value > HIGHEST_US else value, count
        )
    return histogram


def merged(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    total = new_histogram()
    for histogram in histograms:
        total.add(histogram)
    return total


def encode(histogram: HdrHistogram) -> str:
    """HdrHistogram's compressed base64 form (what other HdrHistogram tools read)."""
    data: bytes = histogram.encode()
    return data.decode("ascii")


def decode(text: str) -> HdrHistogram:
    histogram: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    return histogram


def summary(histogram: HdrHistogram) -> dict[str, Any]:
    """count, p50, p90, p99, p99.9 and max, in microseconds.

    No mean: HdrHistogram computes it by iterating every bucket in Python,
    which costs more than everything else here together.
    """
    count = int(histogram.get_total_count())
    if count == 0:
        return {"count": 0}
    figures: dict[str, Any] = {"count": count}
    for name, percentile in PERCENTILES:
        figures[name] = int(histogram.get_value_at_percentile(percentile))
    figures["max"] = int(histogram.get_max_value())
    return figures


class Recorder:
    """Per-kind latency buffers plus the generator's own send lag."""

    __slots__ = ("by_kind", "send_lag")

    def __init__(self, kinds: int) -> None:
        self.by_kind = [array("q") for _ in range(kinds)]
        self.send_lag = array("q")

    def histograms(self) -> tuple[list[HdrHistogram], HdrHistogram]:
        return [histogram_of(values) for values in self.by_kind], histogram_of(self.send_lag)


def format_us(value: float | None) -> str:
    """Microseconds for people: ``87 µs``, ``1.25 ms``, ``2.1 s``."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f} µs"
    if value < 1_000_000:
        return f"{value / 1000:.2f} ms"
    return f"{value / 1_000_000:.2f} s"


def latency_row(figures: Mapping[str, Any]) -> list[str]:
    """p50, p90, p99, p99.9, max of a :func:`summary` as table cells."""
    return [format_us(figures.get(name)) for name, _ in PERCENTILES] + [
        format_us(figures.get("max"))
    ]


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
