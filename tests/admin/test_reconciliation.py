"""Crash between the phases and other half-done states: the next start repairs them."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.admin.intents import INTENTS_FILE
from services.common.pb import common_pb2, order_book_pb2
from services.common.wire.errors import ConnectionLost
from tests.admin.conftest import Exchange, live_books

MT = common_pb2.MessageType


@pytest.fixture(autouse=True)
def capture_admin_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="optivex.admin")


def repairs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconcile:")]


async def test_a_book_no_instrument_uses_is_deleted_on_start(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    watch = await exchange.watch_book()
    kept = await watch.request(
        MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=0.01)
    )
    exchange.info.plant("KEEP", kept.order_book_id)
    made = await watch.request(
        MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=0.01)
    )
    await watch.request(
        MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
        order_book_pb2.InsertOrderRequest(
            order_book_id=made.order_book_id, price=1.0, quantity=1, on_behalf_of_username="bob"
        ),
    )
    await exchange.start_admin()
    # start() returns only after the first pass: the orphan is already gone.
    assert await live_books(exchange.book_port) == {kept.order_book_id}
    cancelled = await watch.wait_for(lambda t, m: t == MT.ORDER_BOOK_ON_ORDER_CANCELLED)
    assert cancelled.order_book_id == made.order_book_id  # its owner is told
    assert any(
        f"delete order book {made.order_book_id}: no instrument in Info uses it: done" in line
        for line in repairs(caplog)
    )
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if "reconcile:" in r.getMessage()
    )


async def test_books_are_held_when_info_lists_nothing(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """An Info that lost its registry must not make Admin cancel every resting order."""
    watch = await exchange.watch_book()
    made = await watch.request(
        MT.ORDER_BOOK_CREATE_REQUEST, order_book_pb2.CreateOrderBookRequest(tick_size=0.01)
    )
    await watch.request(
        MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
        order_book_pb2.InsertOrderRequest(
            order_book_id=made.order_book_id, price=1.0, quantity=1, on_behalf_of_username="bob"
        ),
    )
    await exchange.start_admin()
    assert await live_books(exchange.book_port) == {made.order_book_id}
    held = [
        r
        for r in caplog.records
        if "reconcile:" in r.getMessage()
        and f"keep order book {made.order_book_id}" in r.getMessage()
    ]
    assert held and all(r.levelno == logging.ERROR for r in held)


async def test_an_instrument_whose_book_is_gone_is_withdrawn_on_start(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.info.plant("GHOST", 999)
    await exchange.start_admin()
    assert "GHOST" not in exchange.info.instruments
    assert exchange.info.delete_requests == ["GHOST"]
    assert any("withdraw instrument 'GHOST'" in line for line in repairs(caplog))
    assert await exchange.listed() == {}


async def test_crash_between_the_phases_is_rolled_back_on_restart(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await exchange.start_admin()
    exchange.info.mode = "hang"
    task = asyncio.ensure_future(exchange.create("AAPL"))
    await asyncio.wait_for(exchange.info.received.wait(), 5)
    [book_id] = await live_books(exchange.book_port)
    await admin.abort()  # killed with the book made and Info not answered
    with pytest.raises(ConnectionLost):
        await task
    intents = exchange.tmp / "admin" / INTENTS_FILE
    assert intents.read_text() == f"create AAPL {book_id}\n"
    exchange.info.hung.clear()  # Info never created it
    exchange.info.mode = "ok"
    await exchange.start_admin()
    assert await live_books(exchange.book_port) == set()
    assert intents.read_text() == ""
    assert any(
        f"delete order book {book_id}" in line and "interrupted create of 'AAPL'" in line
        for line in repairs(caplog)
    )
    assert any("found 1 interrupted operation(s)" in r.getMessage() for r in caplog.records)
    # Nothing is left that would stop the operator from trying again.
    assert (await exchange.create("AAPL")).error_message == ""


async def test_crash_after_info_created_keeps_the_complete_instrument(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await exchange.start_admin()
    exchange.info.mode = "hang"
    task = asyncio.ensure_future(exchange.create("MSFT"))
    await asyncio.wait_for(exchange.info.received.wait(), 5)
    await admin.abort()
    with pytest.raises(ConnectionLost):
        await task
    exchange.info.release(store=True)  # Info did create it, the answer was lost
    exchange.info.mode = "ok"
    await exchange.start_admin()
    [book_id] = await live_books(exchange.book_port)
    assert exchange.info.instruments["MSFT"].order_book_id == book_id
    assert repairs(caplog) == [
        "reconcile: interrupted operations left nothing to repair: create MSFT " + str(book_id)
    ]
    assert set(await exchange.listed()) == {"MSFT"}


async def test_interrupted_delete_is_completed_on_restart(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await exchange.start_admin()
    created = await exchange.create("TSLA")
    await admin.stop()
    # As if Admin died after Info withdrew TSLA but before the book was deleted.
    exchange.info.instruments.pop("TSLA")
    (exchange.tmp / "admin" / INTENTS_FILE).write_text(f"delete TSLA {created.order_book_id}\n")
    await exchange.start_admin()
    assert await live_books(exchange.book_port) == set()
    assert any("interrupted delete of 'TSLA'" in line for line in repairs(caplog))


async def test_info_restart_is_reconciled_too(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await exchange.start_admin()
    assert (await exchange.create("KEEP")).error_message == ""
    await exchange.info.stop()
    async with asyncio.timeout(5):
        while admin.info.synced:
            await asyncio.sleep(0.01)
    exchange.info.plant("STALE", 12345)
    passes = admin.orchestrator.passes
    await exchange.info.start(exchange.info_port)
    await admin.orchestrator.wait_for_pass(passes, 10)
    assert set(exchange.info.instruments) == {"KEEP"}
    assert set(await exchange.listed()) == {"KEEP"}
