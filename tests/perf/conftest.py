"""Fixtures shared by the performance tooling's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.relay import EchoConfig, RelayConfig, build_echo, build_relay
from tests.support.inprocess import make_config, start_app


@pytest.fixture
async def relay_port() -> AsyncIterator[int]:
    """The null relay in front of the echo, in process; yields the relay's port."""
    echo, echo_port = await start_app(build_echo, make_config(EchoConfig))
    relay, port = await start_app(build_relay, make_config(RelayConfig, order_book_port=echo_port))
    try:
        yield port
    finally:
        await relay.stop()
        await echo.stop()
