"""Findings of the client-side audit, each pinned by a test against the fakes:
answers by ``ON_ERROR`` naming the request, trade numbering across a pause in
subscriptions, ``reconnect=False`` never leaving a reader waiting, the sync
facade's timeouts and keywords, and the viewer stopping on a refused login."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from clients.sdk import (
    Client,
    Disconnected,
    ExchangeError,
    LoginFailed,
    SyncClient,
)
from clients.watch import WatchApp
from tests.clients.conftest import eventually
from tests.clients.fakes import FakeGateway, FakeInfo
from tests.launcher.harness import stable_port

T = TypeVar("T")


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeGateway, FakeInfo]]:
    gateway, info = FakeGateway(), FakeInfo()
    await gateway.start(stable_port())
    await info.start(stable_port())
    yield gateway, info
    await gateway.stop()
    await info.stop()


async def in_thread(function: Callable[[], T], timeout: float = 10.0) -> T:
    """Run blocking code (the sync facade) in a daemon thread, failing after
    ``timeout`` instead of hanging the test run when it blocks for ever."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the test
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=run, daemon=True).start()
    return await asyncio.wait_for(done, timeout)


async def test_on_error_naming_the_request_fails_it_at_once(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """A port that does not serve a request answers ``ON_ERROR`` with its
    request_id: the call raises the text now, not after ``request_timeout_s``."""
    _, info = fakes
    async with Client.connect(
        gateway_port=info.port,  # Info does not serve execution requests
        info_port=None,
        username="alice",
        password="alice-demo",
        request_timeout_s=30,
    ) as client:
        started = time.monotonic()
        with pytest.raises(ExchangeError, match="not served on this port"):
            await client.buy("AAPL", 1.0, 1)
        with pytest.raises(ExchangeError, match="not served on this port"):
            await client.get_user_limits()
        assert time.monotonic() - started < 5
        assert client.connected  # ON_ERROR keeps the connection


async def test_wrong_service_at_info_port_is_not_a_login_failure(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """Logged in, but the port refuses the quotes request the SDK sends next:
    the error says so and is not :class:`LoginFailed` (the password was right)."""
    gateway, _ = fakes
    with pytest.raises(ExchangeError, match="not served on this port") as refused:
        await Client.connect(
            gateway_port=None, info_port=gateway.port, username="alice", password="alice-demo"
        )
    assert not isinstance(refused.value, LoginFailed)


async def test_trades_resubscribed_after_a_pause_report_no_gap(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """Trades made while no subscription was held were never ours: reading the
    symbol's trades again must not log them as missed nor count a gap."""
    _, info = fakes
    async with Client.connect(
        gateway_port=None, info_port=info.port, username="dave", password="dave-demo"
    ) as client:
        trades = client.trades("AAPL")
        await eventually(lambda: len(info.subs) == 1, what="subscription")
        info.trade("AAPL", 100.0, 1)
        assert (await trades.get(timeout=5)).sequence_number == 1
        trades.close()
        await eventually(lambda: not info.subs, what="unsubscribed")
        info.trade("AAPL", 100.0, 2)  # nobody of ours is subscribed
        again = client.trades("AAPL")
        await eventually(lambda: len(info.subs) == 1, what="subscribed again")
        info.trade("AAPL", 100.0, 3)
        assert (await again.get(timeout=5)).sequence_number == 3
        assert client.market.gaps == 0


async def test_no_reconnect_ends_streams_and_fails_requests_at_once(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """With ``reconnect=False`` a lost connection never comes back: streams of
    that service end with :class:`Disconnected` and requests fail now, instead
    of waiting forever (streams) or for the whole ``request_timeout_s``."""
    gateway, info = fakes
    client = await Client.connect(
        gateway_port=gateway.port,
        info_port=info.port,
        username="alice",
        password="alice-demo",
        reconnect=False,
        request_timeout_s=30,
    )
    try:
        fills, top = client.fills(), client.top_of_book("AAPL")
        await top.get(timeout=5)
        await gateway.stop()
        await info.stop()
        await eventually(lambda: not client.connected, what="disconnect noticed")
        with pytest.raises(Disconnected):
            await asyncio.wait_for(fills.get(), 5)
        with pytest.raises(Disconnected):
            await asyncio.wait_for(top.get(), 5)
        started = time.monotonic()
        with pytest.raises(Disconnected, match="reconnect disabled"):
            await client.buy("AAPL", 1.0, 1)
        with pytest.raises(Disconnected):
            await client.quotes()
        assert time.monotonic() - started < 5
        with pytest.raises(Disconnected):  # a stream opened afterwards ends at once too
            await asyncio.wait_for(client.depth("AAPL").get(), 5)
    finally:
        await client.close()


async def test_sync_stream_get_waits_the_stream_timeout(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """docs/sdk.md: a ``SyncStream`` stops after its ``timeout``; ``get()``
    raises ``TimeoutError`` then (it used to block for ever)."""
    gateway, info = fakes

    def script() -> float:
        with SyncClient.connect(
            gateway_port=gateway.port, info_port=info.port, username="bob", password="bob-demo"
        ) as client:
            fills = client.fills(timeout=0.2)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                fills.get()
            return time.monotonic() - started

    assert await in_thread(script) < 5


async def test_sync_client_has_the_async_keywords_and_properties(
    fakes: tuple[FakeGateway, FakeInfo],
) -> None:
    """ "SyncClient has the same methods": ``buy``/``sell`` take ``client_order_id``,
    and ``username``/``reconnects`` are there as on :class:`Client`."""
    gateway, info = fakes

    def script() -> tuple[Any, ...]:
        with SyncClient.connect(
            gateway_port=gateway.port, info_port=info.port, username="bob", password="bob-demo"
        ) as client:
            bought = client.buy("AAPL", 10.0, 1, client_order_id="mine-1")
            sold = client.sell("AAPL", 11.0, 1, "gtc", client_order_id="mine-2")
            return bought.client_order_id, sold.client_order_id, client.username, client.reconnects

    assert await in_thread(script) == ("mine-1", "mine-2", "bob", 0)
    sent = [request.client_order_id for _, request in gateway.requests]
    assert sent == ["mine-1", "mine-2"]


async def test_watch_stops_on_a_refused_login(fakes: tuple[FakeGateway, FakeInfo]) -> None:
    """A wrong password is not cured by retrying: the viewer ends with the
    reason (exit status 1) instead of claiming Info cannot be reached, forever."""
    _, info = fakes
    app = WatchApp("127.0.0.1", info.port, "alice", "wrong")
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(200):
            if app.failure:
                break
            await pilot.pause(0.025)
    assert app.failure is not None and "invalid username or password" in app.failure
    assert app.return_code == 1


async def test_login_refused_while_reconnecting_is_logged_once_at_error(
    fakes: tuple[FakeGateway, FakeInfo], caplog: pytest.LogCaptureFixture
) -> None:
    """docs/sdk.md promises one ERROR for a login refused while reconnecting
    (an operator must act), however many attempts the outage takes; the shared
    link says it (services/common/wire/link.py) for every client of it."""
    gateway, _ = fakes
    async with Client.connect(
        gateway_port=gateway.port,
        info_port=None,
        username="alice",
        password="alice-demo",
        backoff_max_s=0.05,
    ) as client:
        port = gateway.port
        await gateway.stop()
        refusing = FakeGateway()
        refusing.login_roles = frozenset()  # alice's role is no longer admitted
        await refusing.start(port)
        try:
            caplog.clear()
            await eventually(lambda: refusing.server is not None and client.gateway is not None)
            await asyncio.sleep(0.6)  # several refused attempts
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 1 and "refused the login" in errors[0].message
        finally:
            await refusing.stop()
        back = FakeGateway()
        await back.start(port)
        try:
            await eventually(lambda: client.connected, 5, "reconnect")
            assert [r for r in caplog.records if r.levelname == "ERROR"] == errors
        finally:
            await back.stop()
