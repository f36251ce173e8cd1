"""Risk limits over the wire: Get/Set semantics per PROTOCOL.md, limits enforced
end to end (manual clock, no sleeps), Order Book refusals taken out of the
windows, and client_order_id resends counted only as messages."""

from __future__ import annotations

import asyncio
from copy import copy
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.pb import execution_pb2, risk_limits_pb2
from services.risk_gateway import execution, limits_api
from tests.risk_gateway.conftest import BUY, MT, SELL, Exchange, Trader

rl = risk_limits_pb2
ex = execution_pb2


def window(limit: int, seconds: int) -> Any:
    return rl.RollingWindowLimit(limit=limit, window_in_seconds=seconds)


async def get_user(trader: Trader, username: str = "") -> Any:
    return await trader.call(
        MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, rl.GetUserRiskLimitsRequest(username=username)
    )


async def get_instruments(trader: Trader, username: str = "") -> Any:
    return await trader.call(
        MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
        rl.GetInstrumentRiskLimitsRequest(username=username),
    )


def clock_of(exchange: Exchange) -> ManualClock:
    assert isinstance(exchange.clock, ManualClock)
    return exchange.clock


# ---------------------------------------------------------------- Get / Set


async def test_a_participant_reads_both_layers_and_writes_its_own(exchange: Exchange) -> None:
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    assert (await alice.set_user_limits(max_outstanding_quantity=100)).error_message == ""
    answer = await admin.set_user_limits(
        "alice", max_outstanding_quantity=50, message_rate_rolling_limit=window(10, 1)
    )
    assert answer.error_message == ""
    mine = await get_user(alice)
    assert mine.error_message == ""
    assert mine.user_risk_limits.max_outstanding_quantity == 100
    assert mine.admin_user_risk_limits.max_outstanding_quantity == 50
    assert mine.admin_user_risk_limits.message_rate_rolling_limit.limit == 10
    same = await get_user(alice, "alice")
    assert same == mine.__class__(
        request_id=same.request_id,
        user_risk_limits=mine.user_risk_limits,
        admin_user_risk_limits=mine.admin_user_risk_limits,
    )
    as_admin_sees = await get_user(admin, "alice")
    assert as_admin_sees.user_risk_limits == mine.user_risk_limits
    assert as_admin_sees.admin_user_risk_limits == mine.admin_user_risk_limits


async def test_get_returns_each_layer_as_it_was_set(exchange: Exchange) -> None:
    """A layer reads back as the message that set it, byte for byte: an unset
    (or all-zero) RollingWindowLimit stays absent rather than coming back as an
    empty sub-message, so a client comparing what it set with what it reads
    (``==`` on the messages, or their bytes) sees them equal."""
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    own = rl.UserRiskLimits(max_outstanding_quantity=10)
    ceiling = rl.UserRiskLimits(message_rate_rolling_limit=window(5, 0))
    assert (await alice.set_user_limits(max_outstanding_quantity=10)).error_message == ""
    answer = await admin.set_user_limits("alice", message_rate_rolling_limit=window(5, 0))
    assert answer.error_message == ""
    got = await get_user(alice)
    assert got.user_risk_limits == own
    assert got.admin_user_risk_limits == ceiling
    assert got.user_risk_limits.SerializeToString() == own.SerializeToString()
    entry = rl.InstrumentRiskLimits(
        max_outstanding_amount=99.5, order_amount_rolling_limit=window(0, 60)
    )
    answer = await alice.set_instrument_limits(
        "AAPL", max_outstanding_amount=99.5, order_amount_rolling_limit=window(0, 60)
    )
    assert answer.error_message == ""
    got_instruments = await get_instruments(alice)
    assert dict(got_instruments.risk_limits_by_instrument) == {"AAPL": entry}
    assert got_instruments.risk_limits_by_instrument["AAPL"].SerializeToString() == (
        entry.SerializeToString()
    )


async def test_a_participant_may_name_only_itself(exchange: Exchange) -> None:
    alice = await exchange.trader("alice")
    assert (await get_user(alice, "bob")).error_message == limits_api.NOT_YOURS
    assert (await get_instruments(alice, "bob")).error_message == limits_api.NOT_YOURS
    refused = await alice.set_user_limits("bob", max_outstanding_quantity=1)
    assert refused.error_message == limits_api.NOT_YOURS
    refused = await alice.set_instrument_limits("AAPL", "bob", max_outstanding_quantity=1)
    assert refused.error_message == limits_api.NOT_YOURS
    bob = await exchange.trader("bob")
    assert (await get_user(bob)).user_risk_limits.max_outstanding_quantity == 0


async def test_an_admin_without_a_name_writes_its_own_admin_layer(exchange: Exchange) -> None:
    admin = await exchange.trader("admin")
    assert (await admin.set_user_limits(max_outstanding_quantity=7)).error_message == ""
    mine = await get_user(admin)
    assert mine.admin_user_risk_limits.max_outstanding_quantity == 7
    assert mine.user_risk_limits.max_outstanding_quantity == 0
    assert (await get_user(admin, "nobody")).error_message == limits_api.unknown_user("nobody")


async def test_set_instrument_limits_replaces_the_entry_and_zero_removes_it(
    exchange: Exchange,
) -> None:
    alice = await exchange.trader("alice")
    first = await alice.set_instrument_limits(
        "AAPL", max_outstanding_quantity=10, max_outstanding_amount=99.5
    )
    assert first.error_message == ""
    await alice.set_instrument_limits("MSFT", order_quantity_rolling_limit=window(5, 60))
    await alice.set_instrument_limits("AAPL", order_amount_rolling_limit=window(1000, 10))
    got = await get_instruments(alice)
    assert set(got.risk_limits_by_instrument) == {"AAPL", "MSFT"}
    aapl = got.risk_limits_by_instrument["AAPL"]
    assert aapl.max_outstanding_quantity == 0 and aapl.max_outstanding_amount == 0
    assert aapl.order_amount_rolling_limit.limit == 1000
    assert dict(got.admin_risk_limits_by_instrument) == {}
    await alice.set_instrument_limits("AAPL")
    got = await get_instruments(alice)
    assert set(got.risk_limits_by_instrument) == {"MSFT"}


async def test_bad_limits_are_refused_and_change_nothing(exchange: Exchange) -> None:
    alice = await exchange.trader("alice")
    await alice.set_user_limits(max_outstanding_quantity=5)
    for fields, problem in [
        ({"max_outstanding_quantity": -1}, "max_outstanding_quantity"),
        ({"message_rate_rolling_limit": window(-1, 5)}, "message_rate_rolling_limit"),
        ({"message_rate_rolling_limit": window(5, 86401)}, "at most 86400"),
    ]:
        answer = await alice.set_user_limits(**fields)
        assert problem in answer.error_message
    for fields, problem in [
        ({"max_outstanding_amount": float("nan")}, "max_outstanding_amount"),
        ({"max_outstanding_amount": -2.0}, "max_outstanding_amount"),
        ({"order_amount_rolling_limit": window(1, -1)}, "order_amount_rolling_limit"),
    ]:
        answer = await alice.set_instrument_limits("AAPL", **fields)
        assert problem in answer.error_message
    bad_symbol = await alice.set_instrument_limits("aapl", max_outstanding_quantity=1)
    assert bad_symbol.error_message == limits_api.INVALID_SYMBOL
    assert (await get_user(alice)).user_risk_limits.max_outstanding_quantity == 5
    assert dict((await get_instruments(alice)).risk_limits_by_instrument) == {}


# ---------------------------------------------------------------- enforcement


async def test_message_rate_end_to_end(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    await admin.set_user_limits("alice", message_rate_rolling_limit=window(3, 2))
    order = await alice.insert("AAPL", BUY, 10.0, 1)
    await alice.amend("AAPL", order.order_id, 10.0, 1)  # same price and quantity: a message
    assert (await alice.cancel("AAPL", order.order_id)).error_message == ""
    refused = await alice.insert("AAPL", BUY, 10.0, 1)
    assert "message_rate_rolling_limit" in refused.error_message
    clock_of(exchange).advance(1.999)
    assert "message_rate_rolling_limit" in (await alice.insert("AAPL", BUY, 1.0, 1)).error_message
    clock_of(exchange).advance(0.001)
    assert (await alice.insert("AAPL", BUY, 10.0, 1)).error_message == ""


async def test_outstanding_quantity_follows_fills_and_cancels(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice, bob = await exchange.trader("alice"), await exchange.trader("bob")
    await alice.set_user_limits(max_outstanding_quantity=10)
    order = await alice.insert("AAPL", BUY, 10.0, 10)
    refused = await alice.insert("AAPL", SELL, 20.0, 1)  # both sides count
    assert "max_outstanding_quantity" in refused.error_message
    await bob.insert("AAPL", SELL, 10.0, 4)  # fills 4 of alice's order
    assert (await alice.insert("AAPL", SELL, 20.0, 4)).error_message == ""
    assert "max_outstanding" in (await alice.insert("AAPL", SELL, 20.0, 1)).error_message
    await alice.cancel("AAPL", order.order_id)
    assert (await alice.insert("AAPL", SELL, 20.0, 6)).error_message == ""


async def test_instrument_limits_end_to_end(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    await exchange.create("MSFT")
    alice = await exchange.trader("alice")
    admin = await exchange.trader("admin")
    await admin.set_instrument_limits("AAPL", "alice", max_outstanding_amount=1000.0)
    await admin.set_instrument_limits("MSFT", "alice", order_quantity_rolling_limit=window(150, 60))
    assert (await alice.insert("AAPL", BUY, 10.0, 100)).error_message == ""
    refused = await alice.insert("AAPL", BUY, 0.01, 1)
    assert "max_outstanding_amount for AAPL" in refused.error_message
    assert (await alice.insert("MSFT", BUY, 10.0, 100)).error_message == ""
    ioc = await alice.insert("MSFT", SELL, 50.0, 50, tif=1)  # never rests, still counts
    assert ioc.error_message == "" and ioc.resting_quantity == 0
    limited = await alice.insert("MSFT", SELL, 50.0, 1, tif=1)
    assert "order_quantity_rolling_limit for MSFT" in limited.error_message
    clock_of(exchange).advance(60)
    assert (await alice.insert("MSFT", SELL, 50.0, 150, tif=1)).error_message == ""


async def test_an_order_book_refusal_counts_only_as_a_message(exchange: Exchange) -> None:
    assert exchange.gateway is not None
    alice = await exchange.trader("alice")
    await alice.set_user_limits(message_rate_rolling_limit=window(2, 60))
    await alice.set_instrument_limits("GHOST", order_quantity_rolling_limit=window(10, 60))
    # An instrument the Gateway believes in but the Order Book does not know.
    exchange.gateway.directory.added("GHOST", 999, 0.01, 0)
    refused = await alice.insert("GHOST", BUY, 1.0, 10)
    assert refused.error_message == execution.UNKNOWN_INSTRUMENT
    account = exchange.gateway.engine.user("alice").accounts["GHOST"]
    assert account.orders.sum_since(60, clock_of(exchange).monotonic()) == 0
    assert len(exchange.gateway.engine.user("alice").messages) == 1
    refused = await alice.insert("GHOST", BUY, 1.0, 10)  # still fits the quantity window
    assert refused.error_message == execution.UNKNOWN_INSTRUMENT
    assert "message_rate_rolling_limit" in (await alice.insert("GHOST", BUY, 1.0, 1)).error_message


async def test_pipelined_inserts_cannot_jointly_exceed_outstanding(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    await alice.set_user_limits(max_outstanding_quantity=10)
    futures = [
        alice.send(
            MT.EXECUTION_INSERT_ORDER_REQUEST,
            ex.InsertOrderRequest(instrument_symbol="AAPL", side=BUY, price=10.0, quantity=3),  # type: ignore[arg-type]
        )
        for _ in range(5)
    ]
    answers = await asyncio.gather(*futures)
    accepted = [a for a in answers if not a.error_message]
    assert len(accepted) == 3  # 9 lots; a 4th would make 12
    assert all("max_outstanding_quantity" in a.error_message for a in answers[3:])


# ---------------------------------------------------------------- client_order_id


async def test_a_resend_returns_the_original_outcome_and_counts_only_as_a_message(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL")
    alice1, alice2, bob = (
        await exchange.trader("alice"),
        await exchange.trader("alice"),
        await exchange.trader("bob"),
    )
    await bob.insert("AAPL", SELL, 10.0, 3)
    await alice1.set_user_limits(message_rate_rolling_limit=window(3, 60))
    await alice1.set_instrument_limits("AAPL", order_quantity_rolling_limit=window(5, 60))
    first = await alice1.insert("AAPL", BUY, 10.0, 5, client_order_id="order-1")
    assert first.error_message == "" and first.traded_quantity == 3 and first.resting_quantity == 2
    sequence = exchange.book.engine.last_sequence_number
    # Whatever the other fields say, on another connection: the same outcome.
    again = await alice2.insert("AAPL", SELL, 99.0, 1000, client_order_id="order-1")
    assert again.error_message == ""
    assert (again.order_id, list(again.trade_ids), again.traded_quantity) == (
        first.order_id,
        list(first.trade_ids),
        3,
    )
    assert again.resting_quantity == 2 and again.timestamp == first.timestamp
    assert exchange.book.engine.last_sequence_number == sequence
    # Not counted in the quantity window (5 + 1000 would be far over), but a message:
    refused = await alice1.insert("AAPL", BUY, 10.0, 1, client_order_id="order-2")
    assert "order_quantity_rolling_limit" in refused.error_message  # 5 already used
    assert (await alice1.cancel("AAPL", first.order_id)).error_message == ""  # 3rd message
    limited = await alice2.insert("AAPL", BUY, 10.0, 1, client_order_id="order-1")
    assert "message_rate_rolling_limit" in limited.error_message
    # Other users have their own ids.
    theirs = await bob.insert("AAPL", BUY, 1.0, 1, client_order_id="order-1")
    assert theirs.error_message == "" and theirs.order_id != first.order_id


async def test_a_refused_insert_does_not_use_up_its_client_order_id(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    refused = await alice.insert("AAPL", BUY, 10.001, 5, client_order_id="c")
    assert refused.error_message
    accepted = await alice.insert("AAPL", BUY, 10.0, 5, client_order_id="c")
    assert accepted.error_message == "" and accepted.order_id > 0


async def test_the_same_client_order_id_in_flight_twice_inserts_once(exchange: Exchange) -> None:
    await exchange.create("AAPL")
    alice1, alice2 = await exchange.trader("alice"), await exchange.trader("alice")
    request = ex.InsertOrderRequest(
        instrument_symbol="AAPL",
        side=BUY,  # type: ignore[arg-type]
        price=10.0,
        quantity=5,
        client_order_id="twice",
    )
    answers = await asyncio.gather(
        alice1.send(MT.EXECUTION_INSERT_ORDER_REQUEST, request),
        alice2.send(MT.EXECUTION_INSERT_ORDER_REQUEST, copy(request)),
    )
    assert answers[0].order_id == answers[1].order_id
    assert len(list(exchange.book.engine.resting_orders())) == 1
    assert exchange.gateway is not None
    account = exchange.gateway.engine.user("alice").accounts["AAPL"]
    assert account.orders.sum_since(60, clock_of(exchange).monotonic()) == 5


async def test_a_resend_the_gateway_forgot_is_recognised_from_the_order_book(
    exchange: Exchange,
) -> None:
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    first = await alice.insert("AAPL", BUY, 10.0, 5, client_order_id="lost")
    assert exchange.gateway is not None
    exchange.gateway.coids._table.clear()  # as if its record had been lost
    again = await alice.insert("AAPL", BUY, 10.0, 5, client_order_id="lost")
    assert again.order_id == first.order_id
    account = exchange.gateway.engine.user("alice").accounts["AAPL"]
    assert account.orders.sum_since(60, clock_of(exchange).monotonic()) == 5
    assert exchange.gateway.coids.get("alice", "lost") is not None


# ---------------------------------------------------------------- saving before forwarding


async def test_a_batch_whose_journal_write_fails_is_refused_whole_and_refunded(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined inserts of one loop turn share one journal write; when it fails
    none of them may reach the Order Book, and their windows are refunded."""
    gateway = exchange.gateway
    assert gateway is not None
    await exchange.create("AAPL")
    alice = await exchange.trader("alice")
    await alice.set_user_limits(message_rate_rolling_limit=window(4, 60))
    resting_before = exchange.book.engine.stats().resting_orders
    flush = gateway.store.flush

    def failing_flush() -> None:
        raise OSError("disk full")

    monkeypatch.setattr(gateway.store, "flush", failing_flush)
    futures = [
        alice.send(
            MT.EXECUTION_INSERT_ORDER_REQUEST,
            ex.InsertOrderRequest(instrument_symbol="AAPL", side=BUY, price=10.0, quantity=1),  # type: ignore[arg-type]
        )
        for _ in range(4)
    ]
    answers = await asyncio.gather(*futures)
    assert [a.error_message for a in answers] == [execution.NOT_SAVED] * 4
    assert exchange.book.engine.stats().resting_orders == resting_before
    messages = gateway.engine.user("alice").messages
    assert messages.sum_since(60, clock_of(exchange).monotonic()) == 0
    monkeypatch.setattr(gateway.store, "flush", flush)
    # The whole window is still there: four more messages fit, a fifth does not.
    for _ in range(4):
        assert (await alice.insert("AAPL", BUY, 10.0, 1)).error_message == ""
    assert "message_rate_rolling_limit" in (await alice.insert("AAPL", BUY, 10.0, 1)).error_message
