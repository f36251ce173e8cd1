"""Shared fixtures of the reliability tests: a seed per test, printed so a
failure can be replayed (``OPTIVEX_RELIABILITY_SEED=<n> pytest ...``)."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test's random timing and order flow (printed, overridable)."""
    fixed = os.environ.get("OPTIVEX_RELIABILITY_SEED")
    value = int(fixed) if fixed else random.SystemRandom().randrange(1 << 30)
    print(f"{request.node.name}: seed {value} (OPTIVEX_RELIABILITY_SEED={value} to replay)")
    return value
