"""``make bench``'s in-process CPU section runs end to end on a short flow."""

from __future__ import annotations

from typing import Any

import pytest

from bench import service_cpu


def test_service_cpu_section_measures_all_three_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_cpu, "ORDERS", 300)
    monkeypatch.setattr(service_cpu, "RUNS", 1)
    results: dict[str, Any] = {}
    service_cpu.run(results)
    assert set(results["order_book_us_per_command"]["service path"]) >= {"insert (rests)", "cancel"}
    for key in ("info_us_per_order", "risk_gateway_us_per_order"):
        figures = results[key]
        assert set(figures) == {"1", "10"}
        assert all(value > 0 for value in figures.values())
    assert "risk gateway, 10 order(s) per read" in results["table"]
