"""Fixtures shared by the launcher tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.launcher.harness import Exchange


@pytest.fixture
def exchanges() -> Iterator[list[Exchange]]:
    """Exchanges a test started; whatever is left of their process trees is killed."""
    started: list[Exchange] = []
    yield started
    for exchange in started:
        exchange.kill_tree()
