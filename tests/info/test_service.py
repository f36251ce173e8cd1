"""Info over real TCP against the real Order Book: the market-data contract."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from services.common.pb import common_pb2, info_pb2
from tests.info.conftest import BUY, MT, SELL, Exchange

TOB, DEPTH = 0, 1


def top(message: Any) -> tuple[float, int, float, int]:
    bid = (
        (message.best_bid.price, message.best_bid.quantity)
        if message.HasField("best_bid")
        else (0.0, 0)
    )
    ask = (
        (message.best_ask.price, message.best_ask.quantity)
        if message.HasField("best_ask")
        else (0.0, 0)
    )
    return (*bid, *ask)


def levels(message: Any) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    return (
        [(lvl.price, lvl.quantity) for lvl in message.bids],
        [(lvl.price, lvl.quantity) for lvl in message.asks],
    )


async def test_login_announces_live_instruments(exchange: Exchange) -> None:
    first = await exchange.instrument("ABC", 0.01)
    second = await exchange.instrument("XY.Z-1", 0.05, price_rule=1)
    client = await exchange.client("bob")
    a = await client.next(MT.INFO_ON_INSTRUMENT)
    b = await client.next(MT.INFO_ON_INSTRUMENT)
    assert (a.instrument.symbol, a.order_book_id, a.tick_size, a.price_rule) == (
        "ABC",
        first,
        0.01,
        0,
    )
    assert (b.instrument.symbol, b.order_book_id, b.tick_size, b.price_rule) == (
        "XY.Z-1",
        second,
        0.05,
        1,
    )
    assert a.instrument.description == "ABC test" and a.instrument.currency == "EUR"
    assert a.instrument.multiplier == 1.0 and a.created_timestamp > 0
    await client.expect_silence(0.1)


async def test_subscribe_answers_then_state_then_changes_only(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    await exchange.insert(book, BUY, 10.00, 5)
    await exchange.insert(book, SELL, 10.05, 7)
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    first = await exchange.subscribe(client, "ABC", TOB)
    assert (first.sequence_number, first.instrument_symbol) == (1, "ABC")
    assert top(first) == (10.0, 5, 10.05, 7)
    await exchange.insert(book, BUY, 9.99, 4)  # below the best bid: no message
    await exchange.insert(book, BUY, 10.01, 2)
    second = await client.next(23)
    assert (second.sequence_number, top(second)) == (2, (10.01, 2, 10.05, 7))
    await exchange.insert(book, SELL, 10.06, 1)  # behind the best ask: nothing
    await exchange.insert(book, SELL, 10.05, 3)  # more at the best ask: a message
    third = await client.next(23)
    assert (third.sequence_number, top(third)) == (3, (10.01, 2, 10.05, 10))
    assert third.timestamp > 0


async def test_depth_subscription_respects_its_depth(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    empty = await exchange.subscribe(client, "ABC", DEPTH, depth=2)
    assert levels(empty) == ([], [])
    await exchange.insert(book, BUY, 10.00, 1)
    assert levels(await client.next(24)) == ([(10.0, 1)], [])
    await exchange.insert(book, BUY, 9.99, 2)
    assert levels(await client.next(24)) == ([(10.0, 1), (9.99, 2)], [])
    await exchange.insert(book, BUY, 9.98, 3)  # third level: outside the view
    await exchange.insert(book, SELL, 10.10, 4)
    message = await client.next(24)
    assert levels(message) == ([(10.0, 1), (9.99, 2)], [(10.1, 4)])
    assert message.sequence_number == 4


async def test_unsubscribe_and_errors(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)

    async def subscribe(symbol: str, kind: int, depth: int = 0) -> str:
        response = await client.request(
            info_pb2.OrderBookSubscribeRequest(
                request_id=5,
                instrument_symbol=symbol,
                subscription_type=kind,  # type: ignore[arg-type]
                depth=depth,
            )
        )
        assert response.request_id == 5
        return str(response.error_message)

    async def unsubscribe(symbol: str, kind: int) -> str:
        response = await client.request(
            info_pb2.OrderBookUnsubscribeRequest(
                request_id=6,
                instrument_symbol=symbol,
                subscription_type=kind,  # type: ignore[arg-type]
            )
        )
        assert response.request_id == 6
        return str(response.error_message)

    assert await subscribe("NOPE", TOB) == "unknown instrument symbol 'NOPE'"
    assert "depth must not be negative" in await subscribe("ABC", DEPTH, -1)
    assert "subscription_type" in await subscribe("ABC", 9)
    assert await unsubscribe("ABC", TOB) == "not subscribed to ABC TOP_OF_BOOK"
    await exchange.subscribe(client, "ABC", TOB)
    await exchange.subscribe(client, "ABC", DEPTH)
    assert await subscribe("ABC", TOB) == "already subscribed to ABC TOP_OF_BOOK"
    assert await unsubscribe("ABC", TOB) == ""
    await exchange.insert(book, BUY, 10.00, 1)
    # Only the depth subscription is left: its message is the next thing on the wire.
    message = await client.next(24)
    assert (message.sequence_number, levels(message)) == (2, ([(10.0, 1)], []))
    # Subscribing again starts a new numbering at 1.
    again = await exchange.subscribe(client, "ABC", TOB)
    assert (again.sequence_number, top(again)) == (1, (10.0, 1, 0.0, 0))


async def test_participants_may_not_manage_instruments(exchange: Exchange) -> None:
    book = await exchange.create_book()
    client = await exchange.client("carol")
    client.send(
        info_pb2.CreateInstrumentRequest(
            request_id=3,
            instrument=common_pb2.Instrument(symbol="ABC"),
            tick_size=0.01,
            order_book_id=book,
        )
    )
    error = await client.next(MT.ON_ERROR)
    assert (error.error_message, error.request_id) == ("not permitted", 3)
    assert exchange.info is not None and len(exchange.info.registry) == 0


async def test_trades_reach_each_subscribed_connection_once(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC", price_rule=1)  # SPREAD_CAPTURE: resting price
    both = await exchange.client("alice")
    one = await exchange.client("bob")
    none = await exchange.client("carol")
    for client in (both, one, none):
        await client.next(MT.INFO_ON_INSTRUMENT)
    await exchange.subscribe(both, "ABC", TOB)
    await exchange.subscribe(both, "ABC", DEPTH)
    await exchange.subscribe(one, "ABC", DEPTH, depth=1)
    await exchange.insert(book, SELL, 10.00, 5)
    await both.next(23), await both.next(24), await one.next(24)
    response = await exchange.insert(book, BUY, 10.02, 3)
    assert response.traded_quantity == 3
    trade = await both.next(25)
    assert (trade.instrument_symbol, trade.price, trade.quantity, trade.aggressor_side) == (
        "ABC",
        10.0,
        3,
        BUY,
    )
    assert trade.sequence_number == 1 and trade.trade_id == response.trade_ids[0]
    assert top(await both.next(23)) == (0.0, 0, 10.0, 2)
    assert levels(await both.next(24)) == ([], [(10.0, 2)])
    assert (await one.next(25)).trade_id == trade.trade_id
    assert levels(await one.next(24)) == ([], [(10.0, 2)])
    await exchange.insert(book, BUY, 10.00, 2)
    assert (await both.next(25)).sequence_number == 2
    quotes = await none.request(info_pb2.QuotesRequest(request_id=9))
    [quote] = quotes.quotes
    assert (quote.instrument_symbol, quote.last_trade_price, quote.last_trade_quantity) == (
        "ABC",
        10.0,
        2,
    )
    assert quote.traded_volume == 5 and quote.last_trade_timestamp > 0


async def test_quotes_list_every_instrument_with_zeros_before_trading(exchange: Exchange) -> None:
    await exchange.instrument("AAA")
    await exchange.instrument("BBB")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT), await client.next(MT.INFO_ON_INSTRUMENT)
    response = await client.request(info_pb2.QuotesRequest(request_id=4))
    assert response.request_id == 4 and response.error_message == ""
    assert [q.instrument_symbol for q in response.quotes] == ["AAA", "BBB"]
    for quote in response.quotes:
        assert (quote.last_trade_price, quote.last_trade_quantity) == (0.0, 0)
        assert (quote.last_trade_timestamp, quote.traded_volume) == (0, 0)


async def test_instrument_creation_is_validated(exchange: Exchange) -> None:
    book = await exchange.create_book(0.01)
    other = await exchange.create_book(0.05)
    cases = {
        "": "must not be empty",
        "abc": "may contain only",
        "A" * 17: "longer than 16",
    }
    for symbol, text in cases.items():
        response = await exchange.create_instrument_raw(symbol, book)
        assert text in response.error_message
    for tick in (0.0, -1.0, math.nan, math.inf):
        response = await exchange.create_instrument_raw("ABC", book, tick)
        assert "tick_size" in response.error_message
    response = await exchange.create_instrument_raw("ABC", book, 0.05)
    assert "does not match order book" in response.error_message
    assert (await exchange.create_instrument_raw("ABC", book)).error_message == ""
    assert (
        "already exists" in (await exchange.create_instrument_raw("ABC", other, 0.05)).error_message
    )
    assert "already belongs" in (await exchange.create_instrument_raw("XYZ", book)).error_message
    assert exchange.info is not None and [i.symbol for i in exchange.info.registry] == ["ABC"]


async def test_unknown_book_is_refused_after_a_bounded_wait(exchange: Exchange) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await exchange.create_instrument_raw("ABC", 99)
    waited = loop.time() - started
    assert response.error_message == "unknown order book 99"
    assert 0.9 <= waited < 3.0


async def test_creation_waits_for_a_book_event_still_in_flight(exchange: Exchange) -> None:
    info = exchange.info
    assert info is not None
    upstream = info.feed.link.conn
    assert upstream is not None and upstream.transport is not None
    upstream.transport.pause_reading()  # the book's creation event will be late
    book = await exchange.create_book()
    pending = asyncio.ensure_future(exchange.create_instrument_raw("ABC", book))
    await asyncio.sleep(0.2)
    assert not pending.done()
    upstream.transport.resume_reading()
    response = await asyncio.wait_for(pending, 2.0)
    assert response.error_message == "" and response.created_timestamp > 0


async def test_on_instrument_reaches_others_before_the_answer(exchange: Exchange) -> None:
    gateway = await exchange.client("dave")
    book = await exchange.create_book()
    response = await exchange.create_instrument_raw("NEW", book)
    assert response.error_message == ""
    # Admin's own connection got the broadcast before the answer.
    assert exchange.admin_pushes and exchange.admin_pushes[-1][0] == MT.INFO_ON_INSTRUMENT
    announced = await gateway.next(MT.INFO_ON_INSTRUMENT, timeout=1.0)
    assert announced.instrument.symbol == "NEW"
    assert announced.created_timestamp == response.created_timestamp


async def test_delete_ends_subscriptions_and_symbol_can_return(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    await exchange.subscribe(client, "ABC", TOB)
    await exchange.subscribe(client, "ABC", DEPTH)
    await exchange.insert(book, SELL, 10.0, 5)
    await client.next(23), await client.next(24)
    await exchange.insert(book, BUY, 10.0, 1)
    await client.next(25), await client.next(23), await client.next(24)

    assert "unknown instrument symbol" in (await exchange.delete_instrument("NOPE")).error_message
    assert (await exchange.delete_instrument("ABC")).error_message == ""
    deleted = await client.next(MT.INFO_ON_INSTRUMENT_DELETED)
    assert deleted.instrument_symbol == "ABC" and deleted.timestamp > 0
    await exchange.insert(book, BUY, 10.0, 1)  # the book still trades: nothing for ABC
    assert (await exchange.delete_instrument("ABC")).error_message != ""

    again = await exchange.instrument("ABC")  # a new instrument with a new book
    announced = await client.next(MT.INFO_ON_INSTRUMENT)
    assert announced.order_book_id == again != book
    first = await exchange.subscribe(client, "ABC", TOB)
    assert (first.sequence_number, top(first)) == (1, (0.0, 0, 0.0, 0))
    await exchange.insert(again, SELL, 10.0, 1)
    await client.next(23)
    await exchange.insert(again, BUY, 10.0, 1)
    trade = await client.next(25)
    assert trade.sequence_number == 1  # trade numbering restarts too
    assert (await client.next(23)).sequence_number == 3
    quotes = await client.request(info_pb2.QuotesRequest(request_id=1))
    assert [(q.instrument_symbol, q.traded_volume) for q in quotes.quotes] == [("ABC", 1)]


async def test_deleting_the_book_retires_its_instrument(exchange: Exchange) -> None:
    book = await exchange.instrument("ABC")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    assert exchange.ob is not None
    from services.common.pb import order_book_pb2

    await exchange.ob.request(
        MT.ORDER_BOOK_DELETE_REQUEST, order_book_pb2.DeleteOrderBookRequest(order_book_id=book)
    )
    deleted = await client.next(MT.INFO_ON_INSTRUMENT_DELETED)
    assert deleted.instrument_symbol == "ABC"
    response = await exchange.create_instrument_raw("ABC", book)
    assert response.error_message == f"order book {book} was deleted"


async def test_a_change_hidden_by_int32_saturation_sends_nothing(exchange: Exchange) -> None:
    """A level above 2**31-1 is published as 2**31-1; growing it further changes
    nothing a subscriber can see, so neither top of book nor depth may send a
    message (PROTOCOL.md: only when the best bid or ask, price or quantity, or the
    depth-limited view changed)."""
    big = 2**31 - 1
    book = await exchange.instrument("ABC")
    client = await exchange.client()
    await client.next(MT.INFO_ON_INSTRUMENT)
    await exchange.subscribe(client, "ABC", TOB)
    await exchange.subscribe(client, "ABC", DEPTH)
    await exchange.insert(book, SELL, 10.05, big)
    assert top(await client.next(23)) == (0.0, 0, 10.05, big)
    assert levels(await client.next(24)) == ([], [(10.05, big)])
    await exchange.insert(book, SELL, 10.05, big)  # the level holds 2 * big: same on the wire
    await exchange.insert(book, BUY, 10.00, 1)
    after = await client.next(23)
    assert (after.sequence_number, top(after)) == (3, (10.0, 1, 10.05, big))
    depth = await client.next(24)
    assert (depth.sequence_number, levels(depth)) == (3, ([(10.0, 1)], [(10.05, big)]))


class _AnnounceDuringLogin:
    """An authenticator that lets ``during`` run right after a login succeeded but
    before Info's login hook: the wire layer marks the session logged in first."""

    def __init__(self, inner: Any, during: Any) -> None:
        self.inner = inner
        self.during = during

    async def authenticate(self, username: str, password: str, peer: str) -> Any:
        user = await self.inner.authenticate(username, password, peer)
        asyncio.get_running_loop().call_soon(self.during)
        return user


async def test_an_instrument_created_during_a_login_is_announced_once(
    exchange: Exchange,
) -> None:
    """Each instrument reaches a connection in exactly one OnInstrument, also when it
    is created between the wire layer's login and Info's listing of live
    instruments (PROTOCOL.md: one for each live instrument, then one for each new)."""
    info = exchange.info
    assert info is not None
    book = await exchange.create_book()
    request = info_pb2.CreateInstrumentRequest(
        request_id=1,
        instrument=common_pb2.Instrument(symbol="NEW"),
        tick_size=0.01,
        order_book_id=book,
    )
    results: list[Any] = []
    info.server.authenticator = _AnnounceDuringLogin(
        info.server.authenticator,
        lambda: results.append(info.create_instrument(None, request)),  # type: ignore[arg-type]
    )
    client = await exchange.client()
    assert results and results[0].error_message == ""
    announced = await client.next(MT.INFO_ON_INSTRUMENT)
    assert announced.instrument.symbol == "NEW"
    await client.expect_silence(0.2)
