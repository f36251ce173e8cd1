"""Shared fixtures of the reliability tests: a seed per test, printed so a
failure can be replayed (``OPTIVEX_RELIABILITY_SEED=<n> pytest ...``); a
self-signed certificate and an in-process exchange whose participant ports
speak TLS (``test_tls.py``, ``test_tls_clients.py``)."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.inprocess import InProcessExchange
from tests.support.tls import Certificate, make_certificate


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test's random timing and order flow (printed, overridable)."""
    fixed = os.environ.get("OPTIVEX_RELIABILITY_SEED")
    value = int(fixed) if fixed else random.SystemRandom().randrange(1 << 30)
    print(f"{request.node.name}: seed {value} (OPTIVEX_RELIABILITY_SEED={value} to replay)")
    return value


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path)


@pytest.fixture
async def tls_exchange(
    tmp_path: Path, certificate: Certificate
) -> AsyncIterator[InProcessExchange]:
    """Info and the Risk Gateway on TLS, in-process; Admin and the Gateway trust Info's cert."""
    running = InProcessExchange(tmp_path)
    await running.start(
        per_service={
            "info": {"tls_cert_file": str(certificate.cert), "tls_key_file": str(certificate.key)},
            "risk_gateway": {
                "tls_cert_file": str(certificate.cert),
                "tls_key_file": str(certificate.key),
                "info_tls_ca_file": str(certificate.cert),
            },
            "admin": {"info_tls_ca_file": str(certificate.cert)},
        }
    )
    try:
        await running.create("TLS")
        yield running
    finally:
        await running.stop()
