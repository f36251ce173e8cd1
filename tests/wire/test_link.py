"""The shared reconnecting link against a real WireServer: restarts, outage logging,
stale pushes, stopping while backing off."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.common.pb import common_pb2, info_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import ConnectionLost
from services.common.wire.link import ReconnectingLink
from tests.wire.test_server import PARTICIPANT, Harness, start

MT = common_pb2.MessageType
LOGGER = "optivex.test.link"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def restart(harness: Harness | None, port: int) -> Harness:
    """A fresh server on ``port`` (after stopping ``harness``)."""
    if harness is not None:
        await harness.server.stop(grace_s=0.1)
    fresh = await start_on(port)
    return fresh


async def start_on(port: int) -> Harness:
    h = await start()
    await h.server.stop(grace_s=0.1)  # rebind the same server object on the wanted port
    await h.server.start("127.0.0.1", port)
    return h


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.pushes: list[tuple[int, Any]] = []

    def link(
        self,
        port: int,
        on_up: Callable[[UpstreamConnection], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> ReconnectingLink:
        return ReconnectingLink(
            "peer",
            "127.0.0.1",
            port,
            "alice",
            "alice-pw",
            log=logging.getLogger(LOGGER),
            on_push=lambda kind, message: self.pushes.append((kind, message)),
            on_connecting=lambda: self.events.append("connecting"),
            on_up=on_up,
            on_down=lambda: self.events.append("down"),
            **({"backoff_max_s": 0.1} | kwargs),
        )


async def test_reconnects_after_the_server_restarts_on_the_same_port() -> None:
    h = await start()
    port = h.server.port
    recorder = Recorder()
    link = recorder.link(port)
    link.start()
    try:
        first = await link.wait_connected(5)
        await until(lambda: len(recorder.pushes) == 1)  # the on_login push
        h = await restart(h, port)
        await until(lambda: link.connections == 2 and link.connected)
        second = await link.wait_connected(1)
        assert second is not first and not first.connected
        assert recorder.events.count("down") == 1
        await until(lambda: len(recorder.pushes) == 2)
    finally:
        await link.stop()
        await h.server.stop(grace_s=0.1)
    assert not link.connected


async def test_one_warning_per_outage_and_one_info_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port = free_port()
    recorder = Recorder()
    link = recorder.link(port)
    link.start()
    h: Harness | None = None
    try:
        await until(lambda: recorder.events.count("connecting") >= 5)  # several attempts

        def at(level: int) -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == level]

        assert len(at(logging.WARNING)) == 1 and "cannot reach" in at(logging.WARNING)[0]
        assert not at(logging.INFO)
        h = await start_on(port)
        await link.wait_connected(5)
        assert len(at(logging.INFO)) == 1 and "reconnected" in at(logging.INFO)[0]
        await h.server.stop(grace_s=0.1)
        await until(lambda: recorder.events.count("connecting") >= 10)  # down again, retrying
        warnings = at(logging.WARNING)
        assert len(warnings) == 2 and "lost connection" in warnings[1], warnings
    finally:
        await link.stop()
        if h is not None:
            await h.server.stop(grace_s=0.1)


async def test_pushes_of_a_dropped_connection_are_ignored() -> None:
    h = await start()
    recorder = Recorder()
    link = recorder.link(h.server.port)
    link.start()
    try:
        old = await link.wait_connected(5)
        await until(lambda: len(recorder.pushes) == 1)
        generation = link.generation
        link.drop()
        assert link.generation > generation
        # A frame of the old connection read after the drop reaches on_push no more.
        assert old.on_push is not None
        old.on_push(MT.INFO_ON_INSTRUMENT, info_pb2.OnInstrument(order_book_id=99))
        await until(lambda: link.connections == 2 and link.connected)
        await until(lambda: len(recorder.pushes) == 2)
        assert all(message.order_book_id == 7 for _, message in recorder.pushes)
    finally:
        await link.stop()
        await h.server.stop(grace_s=0.1)


async def test_failing_on_up_drops_the_connection_and_retries() -> None:
    h = await start()
    recorder = Recorder()
    seen: list[UpstreamConnection] = []

    async def on_up(conn: UpstreamConnection) -> None:
        seen.append(conn)
        if len(seen) == 1:
            raise ConnectionLost("barrier failed")

    link = recorder.link(h.server.port, on_up=on_up)
    link.start()
    try:
        assert await link.wait_connected(5) is seen[1]
        assert link.connections == 1 and isinstance(link.last_error, ConnectionLost)
        await until(lambda: not seen[0].connected)
        assert "down" not in recorder.events  # never counted as up
    finally:
        await link.stop()
        await h.server.stop(grace_s=0.1)


async def test_stop_during_backoff_is_prompt_and_fails_waiters() -> None:
    recorder = Recorder()
    link = recorder.link(free_port(), backoff_initial_s=5.0, backoff_max_s=5.0)
    link.start()
    await asyncio.wait_for(link.first_attempt.wait(), 5)
    assert link.last_error is not None and not link.connected
    waiter = asyncio.ensure_future(link.wait_connected(None))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await link.stop()
    assert asyncio.get_running_loop().time() - started < 1.0
    with pytest.raises(ConnectionLost):
        await waiter
    assert recorder.events == ["connecting"]


async def test_wait_connected_times_out_while_down() -> None:
    link = Recorder().link(free_port())
    link.start()
    try:
        with pytest.raises(TimeoutError):
            await link.wait_connected(0.2)
    finally:
        await link.stop()


async def test_a_refused_login_is_one_error_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """Reachable but refused (here: a role the port no longer admits) will not
    mend itself: the link says so once at ERROR, however many attempts the
    outage takes, and once more in a later outage."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port = free_port()
    h = await start_on(port)
    recorder = Recorder()
    link = recorder.link(port)
    link.start()
    try:
        await link.wait_connected(5)
        h.server.login_roles = frozenset()  # alice may no longer log in here
        for session in list(h.server.sessions):
            session.close()
        await until(lambda: recorder.events.count("connecting") >= 6)  # several refusals

        def errors() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

        assert len(errors()) == 1 and "refused the login" in errors()[0], errors()
        h.server.login_roles = frozenset({PARTICIPANT})
        await until(lambda: link.connected)
        h.server.login_roles = frozenset()
        for session in list(h.server.sessions):
            session.close()
        await until(lambda: len(errors()) == 2)  # the next outage says it again
    finally:
        await link.stop()
        await h.server.stop(grace_s=0.1)
