"""The Admin service over real TCP against a real Order Book and a fake Info."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from services.admin.intents import INTENTS_FILE
from services.common.pb import admin_pb2, common_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.errors import RemoteError
from tests.admin.conftest import Exchange, free_port, live_books
from tests.support.inprocess import DEMO_PASSWORDS, SERVICE_PASSWORD

MT = common_pb2.MessageType


async def test_create_makes_the_instrument_in_both_services(running: Exchange) -> None:
    response = await running.create("AAPL", 0.01, description="Apple Inc.", price_rule=1)
    assert response.error_message == ""
    book_id = response.order_book_id
    assert book_id > 0
    stored = running.info.instruments["AAPL"]
    assert stored.order_book_id == book_id
    assert response.created_timestamp == stored.created_timestamp  # Info's timestamp
    assert await live_books(running.book_port) == {book_id}
    listed = await running.listed()
    assert set(listed) == {"AAPL"}
    entry = listed["AAPL"]
    assert entry.order_book_id == book_id and entry.tick_size == 0.01
    assert entry.price_rule == common_pb2.SPREAD_CAPTURE  # from the Order Book's view
    assert entry.instrument.description == "Apple Inc." and entry.instrument.currency == "USD"
    assert running.admin is not None
    assert (running.tmp / "admin" / INTENTS_FILE).read_text() == ""


async def test_duplicate_symbol_is_refused_and_creates_nothing(running: Exchange) -> None:
    first = await running.create("MSFT")
    second = await running.create("MSFT", 0.05)
    assert first.error_message == ""
    assert second.error_message == "instrument 'MSFT' already exists"
    assert await live_books(running.book_port) == {first.order_book_id}
    assert len(running.info.create_requests) == 1


@pytest.mark.parametrize("tick", [0.0, -1.0, math.nan, math.inf])
async def test_invalid_tick_size_is_refused_before_anything_is_created(
    running: Exchange, tick: float
) -> None:
    response = await running.create("TSLA", tick)
    assert "tick_size" in response.error_message
    assert await live_books(running.book_port) == set()
    assert running.info.create_requests == []


@pytest.mark.parametrize("symbol", ["", "aapl", "TOO-LONG-SYMBOL-X", "A B", "ÄPPL", "A$"])
async def test_invalid_symbol_is_refused(running: Exchange, symbol: str) -> None:
    response = await running.create(symbol)
    assert response.error_message.startswith("invalid symbol")
    assert await live_books(running.book_port) == set()


async def test_missing_instrument_and_unknown_price_rule(running: Exchange) -> None:
    conn = await running.connect()
    bare = await running.call(
        MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
        admin_pb2.CreateInstrumentRequest(tick_size=0.01),
        conn,
    )
    assert bare.error_message == "instrument is required"
    odd = await running.create("ODD", 0.01, price_rule=7)
    assert "price_rule" in odd.error_message
    assert await live_books(running.book_port) == set()


async def test_info_refusing_rolls_the_book_back(running: Exchange) -> None:
    watch = await running.watch_book()
    running.info.mode = "refuse"
    response = await running.create("NFLX")
    assert response.error_message == "info refused: refused by the fake"
    created = await watch.wait_for(lambda t, m: t == MT.ORDER_BOOK_ON_ORDER_BOOK_CREATED)
    deleted = await watch.wait_for(lambda t, m: t == MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED)
    assert deleted.order_book_id == created.order_book_id
    assert await live_books(running.book_port) == set()
    assert running.info.instruments == {}
    assert await running.listed() == {}
    # The symbol is free again once Info accepts.
    running.info.mode = "ok"
    again = await running.create("NFLX")
    assert again.error_message == "" and again.order_book_id > created.order_book_id


async def test_info_unreachable_answers_at_once_and_creates_nothing(
    exchange: Exchange,
) -> None:
    exchange.info_port = free_port()
    await exchange.start_admin()
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await exchange.create("AMZN")
    assert response.error_message == "info unavailable"
    assert loop.time() - started < 0.5
    assert await live_books(exchange.book_port) == set()
    listed = await exchange.call(
        MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
    )
    assert listed.error_message == "info unavailable"


async def test_info_dying_between_the_phases_rolls_back(running: Exchange) -> None:
    running.info.mode = "hang"
    task = asyncio.ensure_future(running.create("META"))
    await asyncio.wait_for(running.info.received.wait(), 5)
    await running.info.stop()  # drops Admin's connection with the create unanswered
    response = await task
    assert response.error_message == "lost connection to info"
    assert await live_books(running.book_port) == set()


async def test_info_timeout_rolls_back_and_a_late_success_is_withdrawn(
    exchange: Exchange,
) -> None:
    admin = await exchange.start_admin(request_timeout_s=0.3)
    exchange.info.mode = "hang"
    response = await exchange.create("ORCL")
    assert response.error_message == "no answer from info within 0.3 s"
    assert await live_books(exchange.book_port) == set()
    # Info finally answers: it did create the instrument, pointing at a deleted book.
    passes = admin.orchestrator.passes
    exchange.info.release(store=True)
    await admin.orchestrator.wait_for_pass(passes, 5)
    assert "ORCL" not in exchange.info.instruments
    assert exchange.info.delete_requests == ["ORCL"]
    assert await exchange.listed() == {}


async def test_order_book_down_answers_at_once_and_recovers(exchange: Exchange) -> None:
    admin = await exchange.start_admin()
    assert (await exchange.create("IBM")).error_message == ""
    await exchange.stop_book()
    # Wait until Admin has noticed the loss.
    async with asyncio.timeout(5):
        while admin.order_book.synced:
            await asyncio.sleep(0.01)
    response = await exchange.create("INTC")
    assert response.error_message == "order book unavailable"
    stats = await exchange.call(
        MT.ADMIN_GET_EXCHANGE_STATS_REQUEST, admin_pb2.GetExchangeStatsRequest()
    )
    assert stats.error_message == "order book unavailable"
    passes = admin.orchestrator.passes
    await exchange.start_book()  # same port, same journal
    await admin.orchestrator.wait_for_pass(passes, 10)
    assert (await exchange.create("INTC")).error_message == ""
    assert set(await exchange.listed()) == {"IBM", "INTC"}


async def test_delete_cancels_resting_orders_and_withdraws_first(running: Exchange) -> None:
    created = await running.create("CSCO", 0.5)
    book_id = created.order_book_id
    watch = await running.watch_book()
    for side, price in ((0, 10.0), (1, 11.0)):
        inserted = await watch.request(
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=book_id,
                side=side,  # type: ignore[arg-type]
                price=price,
                quantity=3,
                on_behalf_of_username="alice",
            ),
        )
        assert inserted.error_message == "" and inserted.order_id > 0
    response = await running.delete("CSCO")
    assert response.error_message == ""
    assert running.info.delete_requests == ["CSCO"] and "CSCO" not in running.info.instruments
    await watch.wait_for(lambda t, m: t == MT.ORDER_BOOK_ON_ORDER_BOOK_DELETED)
    cancelled = [m for t, m in watch.events if t == MT.ORDER_BOOK_ON_ORDER_CANCELLED]
    assert sorted(m.cancelled_quantity for m in cancelled) == [3, 3]
    assert all(m.order_book_id == book_id for m in cancelled)
    assert await live_books(running.book_port) == set()
    assert await running.listed() == {}
    # Deleted symbols may be created again, with a new book id.
    again = await running.create("CSCO", 0.5)
    assert again.error_message == "" and again.order_book_id > book_id


async def test_delete_and_clear_of_unknown_symbols(running: Exchange) -> None:
    assert (await running.delete("NOPE")).error_message == "unknown instrument 'NOPE'"
    cleared = await running.call(
        MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST,
        admin_pb2.ClearOrderBookRequest(instrument_symbol="NOPE"),
    )
    assert cleared.error_message == "unknown instrument 'NOPE'"


async def test_info_refusing_a_delete_changes_nothing(running: Exchange) -> None:
    created = await running.create("ADBE")
    running.info.instruments.pop("ADBE")  # Info forgets it behind Admin's back
    response = await running.delete("ADBE")
    assert response.error_message == "info refused: unknown instrument"
    assert await live_books(running.book_port) == {created.order_book_id}


async def test_clear_cancels_resting_orders_and_stats_report_the_book(
    running: Exchange,
) -> None:
    created = await running.create("PEP", 0.01, price_rule=1)
    watch = await running.watch_book()

    async def insert(side: int, price: float, quantity: int, user: str) -> None:
        response = await watch.request(
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=created.order_book_id,
                side=side,  # type: ignore[arg-type]
                price=price,
                quantity=quantity,
                on_behalf_of_username=user,
            ),
        )
        assert response.error_message == ""

    await insert(1, 10.00, 5, "alice")  # resting sell
    await insert(0, 10.02, 2, "bob")  # crosses: trades 2 at 10.00, bob pays 10.02
    await insert(0, 9.00, 4, "bob")  # resting buy
    stats = await running.call(
        MT.ADMIN_GET_EXCHANGE_STATS_REQUEST, admin_pb2.GetExchangeStatsRequest()
    )
    assert stats.error_message == ""
    assert (stats.trade_count, stats.traded_volume, stats.resting_orders) == (1, 2, 2)
    assert stats.exchange_profit == pytest.approx(0.04)
    cleared = await running.call(
        MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST,
        admin_pb2.ClearOrderBookRequest(instrument_symbol="PEP"),
    )
    assert cleared.error_message == "" and cleared.cancelled_orders == 2
    assert set(await running.listed()) == {"PEP"}  # clearing keeps the instrument


@pytest.mark.parametrize("user", ["alice", "service"])
async def test_only_admins_may_log_in(running: Exchange, user: str) -> None:
    password = SERVICE_PASSWORD if user == "service" else DEMO_PASSWORDS[user]
    with pytest.raises(RemoteError) as refused:
        await UpstreamConnection.open("127.0.0.1", running.admin_port, user, password)
    assert "may not log in on this port" in str(refused.value)


async def test_concurrent_creates_of_one_symbol_exactly_one_wins(running: Exchange) -> None:
    conns = [await running.connect() for _ in range(3)]
    requests = []
    for conn in conns:
        for _ in range(3):  # pipelined on each connection, interleaved across them
            request = admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol="GOOGL"), tick_size=0.01
            )
            requests.append(conn.request_raw(MT.ADMIN_CREATE_INSTRUMENT_REQUEST, request))
    responses = await asyncio.wait_for(asyncio.gather(*requests), 10)
    winners = [r for r in responses if not r.error_message]
    assert len(winners) == 1
    assert all(
        r.error_message == "instrument 'GOOGL' already exists" for r in responses if r.error_message
    )
    assert await live_books(running.book_port) == {winners[0].order_book_id}


async def test_different_symbols_are_created_concurrently(running: Exchange) -> None:
    conn = await running.connect()
    symbols = [f"S{i}" for i in range(40)]
    requests = [
        conn.request_raw(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol=s), tick_size=0.01
            ),
        )
        for s in symbols
    ]
    responses = await asyncio.wait_for(asyncio.gather(*requests), 10)
    assert [r.error_message for r in responses] == [""] * 40
    assert len({r.order_book_id for r in responses}) == 40
    assert sorted(await running.listed()) == sorted(symbols)
    assert running.admin is not None and len(running.admin.orchestrator.locks) == 0


async def test_stop_refuses_new_work(running: Exchange) -> None:
    assert running.admin is not None
    running.admin.orchestrator.stopping = True
    response = await running.create("LATE")
    assert response.error_message == "service is shutting down"


async def test_exported_cli_password_does_not_break_the_service_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.common.config import AdminConfig, load_config

    config = load_config(AdminConfig, [], environ={"OPTIVEX_ADMIN_PASSWORD": "x"})
    assert config.port == 7403


async def test_requests_for_one_symbol_run_in_turn(running: Exchange) -> None:
    conn = await running.connect()

    def create() -> Any:
        return conn.request_raw(
            MT.ADMIN_CREATE_INSTRUMENT_REQUEST,
            admin_pb2.CreateInstrumentRequest(
                instrument=common_pb2.Instrument(symbol="TURN"), tick_size=0.01
            ),
        )

    def delete() -> Any:
        return conn.request_raw(
            MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
            admin_pb2.DeleteInstrumentRequest(instrument_symbol="TURN"),
        )

    # Pipelined without waiting: each waits for the one before it on that symbol.
    responses = await asyncio.wait_for(
        asyncio.gather(create(), delete(), create(), create(), delete(), delete()), 10
    )
    assert [r.error_message for r in responses] == [
        "",
        "",
        "",
        "instrument 'TURN' already exists",
        "",
        "unknown instrument 'TURN'",
    ]
    assert await live_books(running.book_port) == set()


async def test_stop_lets_a_running_create_finish(exchange: Exchange) -> None:
    admin = await exchange.start_admin(request_timeout_s=0.3)
    exchange.info.mode = "hang"
    pending = asyncio.ensure_future(exchange.create("SLOW"))
    await asyncio.wait_for(exchange.info.received.wait(), 5)
    await admin.stop()
    exchange.admin = None
    response = await asyncio.wait_for(pending, 5)
    assert response.error_message == "no answer from info within 0.3 s"
    assert await live_books(exchange.book_port) == set()  # rolled back before stopping
