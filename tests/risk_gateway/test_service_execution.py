"""The Gateway over real TCP with the real Order Book, Info and Admin: orders,
fills and cancels, edge validation, authorization and the instrument race."""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.pb import common_pb2, execution_pb2
from services.risk_gateway import execution
from tests.risk_gateway.conftest import BUY, FOK, IOC, MT, SELL, Exchange, Trader
from tests.support.inprocess import DEMO_PASSWORDS
from tests.wire.rawclient import RawClient

ex = execution_pb2


def book_sequence(exchange: Exchange) -> int:
    return int(exchange.book.engine.last_sequence_number)


async def test_fills_reach_every_connection_of_each_owner_and_no_one_else(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL", tick_size=0.01)
    alice1, alice2 = await exchange.trader("alice"), await exchange.trader("alice")
    bob, carol = await exchange.trader("bob"), await exchange.trader("carol")
    resting = await alice1.insert("AAPL", BUY, 100.25, 10)
    assert resting.error_message == "" and resting.resting_quantity == 10
    hit = await bob.insert("AAPL", SELL, 100.0, 4)
    assert hit.error_message == "" and hit.traded_quantity == 4 and len(hit.trade_ids) == 1
    for trader in (alice1, alice2, bob):
        await trader.wait_pushes(1)
    for alice in (alice1, alice2):
        (fill,) = alice.fills()
        assert (fill.order_id, fill.instrument_symbol, fill.side) == (resting.order_id, "AAPL", BUY)
        assert (fill.price, fill.quantity, fill.remaining_quantity) == (100.25, 4, 6)
        assert fill.trade_id == hit.trade_ids[0]
    (fill,) = bob.fills()
    assert (fill.order_id, fill.side, fill.price, fill.remaining_quantity) == (
        hit.order_id,
        SELL,
        100.25,
        0,
    )
    # Carol saw nothing; a round trip proves nothing is on its way either.
    await carol.call(MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, _get_user())
    assert carol.pushes == []


async def test_the_aggressor_gets_its_price_in_a_spread_capture_book(exchange: Exchange) -> None:
    await exchange.create("SPRD", tick_size=0.5, price_rule=common_pb2.SPREAD_CAPTURE)
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    await alice.insert("SPRD", SELL, 10.0, 2)
    await bob.insert("SPRD", BUY, 11.5, 2)
    await alice.wait_pushes(1)
    await bob.wait_pushes(1)
    assert alice.fills()[0].price == 10.0
    assert bob.fills()[0].price == 11.5


async def test_on_fill_follows_the_aggressors_response_on_its_connection(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    for _ in range(5):
        await alice.insert("AAPL", SELL, 50.0, 1)
    raw = await RawClient.connect("127.0.0.1", exchange.gateway_port)
    assert (await raw.login("bob", DEMO_PASSWORDS["bob"])).error_message == ""
    # Pipelined: five crossing inserts in one write.
    for request_id in range(10, 15):
        raw.send(
            ex.InsertOrderRequest(
                request_id=request_id,
                instrument_symbol="AAPL",
                side=BUY,  # type: ignore[arg-type]
                price=50.0,
                quantity=1,
            )
        )
    seen = [await raw.recv() for _ in range(10)]
    await raw.close()
    # Each fill comes after the response that announced its order (pushes queue
    # behind every answer the connection is still owed).
    answered: set[int] = set()
    fills = 0
    for kind, message in seen:
        if kind == MT.EXECUTION_INSERT_ORDER_RESPONSE:
            assert message.error_message == ""
            answered.add(message.order_id)
        else:
            assert kind == MT.EXECUTION_ON_FILL
            assert message.order_id in answered
            fills += 1
    assert fills == 5 and len(answered) == 5


async def test_own_cancels_and_ioc_remainders_are_not_pushed(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    order = await alice.insert("AAPL", BUY, 10.0, 5)
    cancelled = await alice.cancel("AAPL", order.order_id)
    assert cancelled.error_message == "" and cancelled.cancelled_quantity == 5
    ioc = await alice.insert("AAPL", BUY, 10.0, 5, tif=IOC)
    assert ioc.error_message == "" and ioc.traded_quantity == 0 and ioc.resting_quantity == 0
    fok = await alice.insert("AAPL", BUY, 10.0, 5, tif=FOK)
    assert fok.error_message == "" and fok.resting_quantity == 0
    assert alice.pushes == []


async def test_clear_and_delete_are_pushed_to_the_owner_with_a_reason(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    await exchange.create("MSFT")
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    a1 = await alice.insert("AAPL", BUY, 10.0, 5)
    a2 = await alice.insert("MSFT", SELL, 20.0, 7)
    await bob.insert("AAPL", BUY, 9.0, 1)
    assert await exchange.clear("AAPL") == 2
    await alice.wait_pushes(1)
    await bob.wait_pushes(1)
    (cancel,) = alice.cancels()
    assert (cancel.order_id, cancel.instrument_symbol, cancel.cancelled_quantity) == (
        a1.order_id,
        "AAPL",
        5,
    )
    assert cancel.reason == "order book cleared"
    await exchange.delete("MSFT")
    await alice.wait_pushes(2)
    deleted = alice.cancels()[1]
    assert (deleted.order_id, deleted.instrument_symbol, deleted.reason) == (
        a2.order_id,
        "MSFT",
        "instrument deleted",
    )
    assert len(bob.pushes) == 1


async def test_an_insert_right_after_creation_is_not_refused_as_unknown(
    exchange: Exchange,
) -> None:
    alice = await exchange.trader("alice")
    assert exchange.gateway is not None
    conn = exchange.gateway.info.conn
    assert conn is not None
    # Make the Gateway read Info's pushes late, as a busy machine might.
    loop = asyncio.get_running_loop()
    original = conn.data_received

    def late(data: bytes) -> None:
        loop.call_later(0.05, original, data)

    conn.data_received = late  # type: ignore[method-assign]
    for symbol in ("NEW1", "NEW2", "NEW3"):
        await exchange.create(symbol)
        response = await alice.insert(symbol, BUY, 1.0, 1)
        assert response.error_message == "", symbol
    unknown = await alice.insert("NOPE", BUY, 1.0, 1)
    assert unknown.error_message == execution.UNKNOWN_INSTRUMENT


BAD_INSERTS: list[tuple[dict[str, Any], str]] = [
    ({"instrument_symbol": "NOPE"}, execution.UNKNOWN_INSTRUMENT),
    ({"instrument_symbol": "aapl"}, execution.INVALID_SYMBOL),
    ({"instrument_symbol": ""}, execution.INVALID_SYMBOL),
    ({"instrument_symbol": "A" * 17}, execution.INVALID_SYMBOL),
    ({"quantity": 0}, execution.QUANTITY),
    ({"quantity": -5}, execution.QUANTITY),
    ({"side": 7}, execution.SIDE),
    ({"time_in_force": 3}, execution.TIME_IN_FORCE),
    ({"price": 10.005}, "tick size"),
    ({"price": 0.0}, "price"),
    ({"price": -1.0}, "price"),
    ({"price": float("nan")}, "NaN"),
    ({"price": float("inf")}, "finite"),
    ({"price": 1e300}, "maximum"),
    ({"client_order_id": "x" * 65}, execution.CLIENT_ORDER_ID),
    ({"client_order_id": "é" * 33}, execution.CLIENT_ORDER_ID),
]


async def test_bad_inserts_are_refused_at_the_edge_and_forward_nothing(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    assert exchange.gateway is not None
    messages = exchange.gateway.engine.user("alice").messages
    before = book_sequence(exchange)
    for fields, error in BAD_INSERTS:
        request: dict[str, Any] = {
            "instrument_symbol": "AAPL",
            "side": BUY,
            "price": 10.0,
            "quantity": 1,
        }
        request.update(fields)
        response = await alice.call(
            MT.EXECUTION_INSERT_ORDER_REQUEST, ex.InsertOrderRequest(**request)
        )
        assert error in response.error_message, fields
    assert book_sequence(exchange) == before
    assert len(messages) == 0  # refused at the edge: not even a message counted


async def test_a_coid_of_64_bytes_is_fine(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    response = await alice.insert("AAPL", BUY, 10.0, 1, client_order_id="é" * 32)
    assert response.error_message == ""


async def test_someone_elses_order_looks_exactly_like_an_unknown_one(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    await exchange.create("MSFT")
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    order = await alice.insert("AAPL", BUY, 10.0, 5)
    before = book_sequence(exchange)
    theirs = await bob.cancel("AAPL", order.order_id)
    unknown = await bob.cancel("AAPL", 987_654)
    wrong_symbol = await alice.cancel("MSFT", order.order_id)
    assert theirs.error_message == unknown.error_message == wrong_symbol.error_message
    assert theirs.error_message == execution.UNKNOWN_ORDER
    assert str(order.order_id) not in theirs.error_message
    amend_theirs = await bob.amend("AAPL", order.order_id, 10.0, 1)
    amend_unknown = await bob.amend("AAPL", 987_654, 10.0, 1)
    assert amend_theirs.error_message == amend_unknown.error_message == execution.UNKNOWN_ORDER
    assert book_sequence(exchange) == before
    # Alice's own order is untouched and hers to change.
    amended = await alice.amend("AAPL", order.order_id, 10.0, 2)
    assert amended.error_message == "" and amended.resting_quantity == 2


async def test_the_order_carries_the_authenticated_user(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    order = await alice.insert("AAPL", BUY, 10.0, 5)
    (resting,) = list(exchange.book.engine.resting_orders())
    assert resting.order_id == order.order_id and resting.username == "alice"


async def test_an_admin_trades_as_itself_within_its_admin_layer(exchange: Exchange) -> None:
    """PROTOCOL.md section 3 admits participants and admins to the Gateway and lists
    40/42/46 among the types it accepts, without restricting them to one role (the
    Info row shows how a per-role restriction is written); section 5 lets an admin
    write "the admin layer of the user it names (itself when empty)", which only
    binds someone who trades. So an admin trades like a participant: as itself,
    only its own orders, its fills pushed to it, its admin layer enforced."""
    await exchange.create("AAPL")
    admin = await exchange.trader("admin")
    alice = await exchange.trader("alice")
    theirs = await alice.insert("AAPL", BUY, 9.0, 5)
    mine = await admin.insert("AAPL", SELL, 10.0, 4)
    assert mine.error_message == "" and mine.resting_quantity == 4
    (resting,) = [o for o in exchange.book.engine.resting_orders() if o.order_id == mine.order_id]
    assert resting.username == "admin"
    # Someone else's order stays out of reach, exactly like an unknown one.
    assert (await admin.cancel("AAPL", theirs.order_id)).error_message == execution.UNKNOWN_ORDER
    amended = await admin.amend("AAPL", mine.order_id, 10.0, 3)
    assert amended.error_message == "" and amended.resting_quantity == 3
    hit = await alice.insert("AAPL", BUY, 10.0, 1)
    assert hit.traded_quantity == 1
    await admin.wait_pushes(1)
    (fill,) = admin.fills()
    assert (fill.order_id, fill.side, fill.quantity, fill.remaining_quantity) == (
        mine.order_id,
        SELL,
        1,
        2,
    )
    # Its own admin layer (written without a name) binds it.
    assert (await admin.set_user_limits(max_outstanding_quantity=3)).error_message == ""
    refused = await admin.insert("AAPL", SELL, 10.0, 2)
    assert "max_outstanding_quantity" in refused.error_message
    cancelled = await admin.cancel("AAPL", mine.order_id)
    assert cancelled.error_message == "" and cancelled.cancelled_quantity == 2


async def test_amend_moves_and_trades(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    sell = await alice.insert("AAPL", SELL, 11.0, 5)
    buy = await bob.insert("AAPL", BUY, 10.0, 8)
    amended = await bob.amend("AAPL", buy.order_id, 11.0, 8)
    assert amended.error_message == "" and amended.traded_quantity == 5
    assert amended.resting_quantity == 3
    await bob.wait_pushes(1)
    fill = bob.fills()[0]
    assert (fill.order_id, fill.price, fill.remaining_quantity) == (buy.order_id, 11.0, 3)
    await alice.wait_pushes(1)
    assert alice.fills()[0].order_id == sell.order_id
    reduced = await bob.amend("AAPL", buy.order_id, 11.0, 0)
    assert reduced.error_message == execution.QUANTITY
    gone = await alice.amend("AAPL", sell.order_id, 11.0, 1)
    assert gone.error_message == execution.UNKNOWN_ORDER


def _get_user() -> Any:
    from services.common.pb import risk_limits_pb2

    return risk_limits_pb2.GetUserRiskLimitsRequest()


async def test_many_pipelined_requests_from_many_connections_keep_their_order(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL")
    traders: list[Trader] = [await exchange.trader(n) for n in ("alice", "bob", "carol", "dave")]
    futures = []
    for round_ in range(25):
        for index, trader in enumerate(traders):
            side = BUY if index % 2 == 0 else SELL
            price = 10.0 + (round_ % 3) * 0.01
            futures.append(
                trader.send(
                    MT.EXECUTION_INSERT_ORDER_REQUEST,
                    ex.InsertOrderRequest(
                        instrument_symbol="AAPL",
                        side=side,  # type: ignore[arg-type]
                        price=price,
                        quantity=1 + round_ % 4,
                    ),
                )
            )
    responses = await asyncio.wait_for(asyncio.gather(*futures), 20)
    assert all(r.error_message == "" for r in responses)
    engine = exchange.book.engine
    stats = engine.stats()
    # Every order either rests or traded: the Gateway's table agrees with the book.
    assert exchange.gateway is not None
    gateway_resting = {e.order_id for e in exchange.gateway.table.resting()}
    assert gateway_resting == {o.order_id for o in engine.resting_orders()}
    filled = sum(len(t.fills()) for t in traders)
    assert filled <= 2 * stats.trade_count


async def test_answers_stay_exact_when_the_event_stream_arrives_in_pieces(
    exchange: Exchange,
) -> None:
    """Events usually arrive in the same read as their answer; when they do not,
    the Gateway waits for a barrier before answering (same results either way)."""
    await exchange.create("AAPL")
    assert exchange.gateway is not None
    conn = exchange.gateway.order_book.conn
    assert conn is not None
    loop = asyncio.get_running_loop()
    original = conn.data_received
    backlog: list[bytes] = []

    def trickle(data: bytes) -> None:
        # Deliver in 9-byte pieces, one per event-loop turn.
        idle = not backlog
        backlog.extend(data[i : i + 9] for i in range(0, len(data), 9))
        if idle:
            loop.call_soon(drain)

    def drain() -> None:
        if backlog:
            original(backlog.pop(0))
            loop.call_soon(drain)

    conn.data_received = trickle  # type: ignore[method-assign]
    link = exchange.gateway.order_book
    barrier = link.barrier
    barriers: list[int] = []

    def counted() -> asyncio.Future[None]:
        barriers.append(1)
        return barrier()

    link.barrier = counted  # type: ignore[method-assign]
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    await alice.set_user_limits(max_outstanding_quantity=20)
    rest = await alice.insert("AAPL", SELL, 10.0, 10)
    assert rest.error_message == "" and rest.resting_quantity == 10
    ioc = await bob.insert("AAPL", BUY, 10.0, 15, tif=IOC)
    assert ioc.traded_quantity == 10 and ioc.resting_quantity == 0
    (fill,) = bob.fills()  # already queued behind the answer
    assert fill.order_id == ioc.order_id and fill.remaining_quantity == 5
    order = await alice.insert("AAPL", BUY, 9.0, 20)
    assert order.error_message == ""
    # Alice's first order is gone (filled): only the new one counts.
    assert "max_outstanding_quantity" in (await alice.insert("AAPL", BUY, 9.0, 1)).error_message
    amended = await alice.amend("AAPL", order.order_id, 9.5, 5)
    assert amended.error_message == "" and amended.resting_quantity == 5
    assert (await alice.insert("AAPL", BUY, 9.0, 15)).error_message == ""
    cancelled = await alice.cancel("AAPL", order.order_id)
    assert cancelled.cancelled_quantity == 5
    assert (await alice.cancel("AAPL", order.order_id)).error_message == execution.UNKNOWN_ORDER
    await alice.wait_pushes(1)
    assert [f.order_id for f in alice.fills()] == [rest.order_id]
    assert alice.cancels() == []
    assert barriers  # the fallback was needed (and used)
