"""Hostile input, one test per class, against every service port it applies to.

Each test checks the connection's fate as PROTOCOL.md says (``ON_ERROR`` then
close for a bad length; ``ON_ERROR`` and the connection kept for a bad type or
payload; a response with ``error_message`` for a bad request), that nothing
changed (the Order Book's state hash, which covers every book, order, id and
counter), and that other clients are served as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import struct
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from services.common.pb import (
    admin_pb2,
    common_pb2,
    execution_pb2,
    info_pb2,
    order_book_pb2,
    risk_limits_pb2,
)
from services.common.wire import errors
from services.common.wire.framing import encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, RESPONSE_TYPE
from tests.reliability.inprocess import IDLE_TIMEOUT_S, LOGIN_TIMEOUT_S, InProcessExchange, Port
from tests.support.inprocess import DEMO_PASSWORDS
from tests.wire.rawclient import RawClient

MT = common_pb2.MessageType
PORTS = ("order_book", "info", "admin", "risk_gateway")
ON_ERROR = MT.ON_ERROR

# Requests whose all-default form is a valid request (it succeeds).
DEFAULT_IS_VALID = {
    MT.ORDER_BOOK_GET_STATS_REQUEST,
    MT.INFO_QUOTES_REQUEST,
    MT.ADMIN_LIST_INSTRUMENTS_REQUEST,
    MT.ADMIN_GET_EXCHANGE_STATS_REQUEST,
    MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST,
    MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST,  # "no limits" for oneself
    MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
}
# Info's internal types are served to the service role only.
SERVICE_ONLY = {MT.INFO_CREATE_INSTRUMENT_REQUEST, MT.INFO_DELETE_INSTRUMENT_REQUEST}


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[InProcessExchange]:
    running = await InProcessExchange(tmp_path).start()
    await running.create("BAD")
    try:
        yield running
    finally:
        await running.stop()


async def reply(client: RawClient, timeout: float = 5.0) -> tuple[int, Any]:
    """The next response or ON_ERROR, skipping pushes (login snapshots, announcements)."""
    while True:
        kind, message = await client.recv(timeout)
        if kind in RESPONSE_TYPE.values() or kind == ON_ERROR:
            return kind, message


async def answer_to(client: RawClient, request_id: int, timeout: float = 5.0) -> tuple[int, Any]:
    """The response (or ON_ERROR) carrying ``request_id``, skipping pushes."""
    while True:
        kind, message = await client.recv(timeout)
        if (
            kind in RESPONSE_TYPE.values() or kind == ON_ERROR
        ) and message.request_id == request_id:
            return kind, message


async def closed_after_error(client: RawClient) -> list[Any]:
    """Read to EOF; the ON_ERRORs seen (there must be one)."""
    frames = await client.expect_closed(timeout=5)
    on_errors = [
        MESSAGE_CLASSES[ON_ERROR].FromString(payload)
        for kind, payload in frames
        if kind == ON_ERROR
    ]
    assert on_errors, frames
    return on_errors


def request(message_type: int, request_id: int, **fields: Any) -> Message:
    message = MESSAGE_CLASSES[message_type](**fields)
    message.request_id = request_id  # type: ignore[attr-defined]
    return message


async def unchanged(exchange: InProcessExchange, before: str) -> None:
    assert exchange.state_hash() == before, "a refused request changed the Order Book"
    await exchange.healthy()


# ---------------------------------------------------------------------- framing


@pytest.mark.parametrize("name", PORTS)
@pytest.mark.parametrize("length", [0, 1, 3])
@pytest.mark.parametrize("logged_in", [False, True])
async def test_length_below_four_is_an_error_then_close(
    exchange: InProcessExchange, name: str, length: int, logged_in: bool
) -> None:
    port = exchange.ports[name]
    client = await (port.logged_in() if logged_in else port.client())
    client.send_raw(struct.pack(">II", length, 60))
    (error,) = await closed_after_error(client)
    assert "below the minimum" in error.error_message and error.message_type == 60
    await exchange.healthy()


@pytest.mark.parametrize("name", PORTS)
@pytest.mark.parametrize("logged_in", [False, True])
async def test_oversized_lengths_are_refused_before_any_body_is_read(
    exchange: InProcessExchange, name: str, logged_in: bool
) -> None:
    port = exchange.ports[name]
    limit = 1 << 20 if logged_in else 4096
    for length in (limit + 1, 0xFFFFFFFF):
        client = await (port.logged_in() if logged_in else port.client())
        tracemalloc.start()
        try:
            # Only the header: the answer must not wait for (or reserve) the body.
            client.send_raw(struct.pack(">II", length, 40))
            (error,) = await closed_after_error(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert f"exceeds the maximum of {limit}" in error.error_message
        assert peak < 1 << 20, f"{peak} bytes allocated for a refused {length}-byte frame"
    await exchange.healthy()


async def test_never_completed_frames_are_closed_by_the_deadlines(
    exchange: InProcessExchange,
) -> None:
    async def half_frame(port: Port, logged_in: bool) -> tuple[str, float]:
        client = await (port.logged_in() if logged_in else port.client())
        started = time.monotonic()
        client.send_raw(encode_frame(60, b"\x08\x01" * 20)[:15])
        (error,) = await closed_after_error(client)
        return error.error_message, time.monotonic() - started

    outcomes = await asyncio.gather(
        *(
            half_frame(port, logged_in)
            for port in exchange.ports.values()
            for logged_in in (False, True)
        )
    )
    for index, (text, seconds) in enumerate(outcomes):
        if index % 2 == 0:
            assert text == errors.LOGIN_TIMEOUT and seconds < LOGIN_TIMEOUT_S + 1
        else:
            assert text == errors.IDLE_TIMEOUT and seconds < IDLE_TIMEOUT_S + 1
    await exchange.healthy()


@pytest.mark.parametrize("name", PORTS)
async def test_random_bytes_never_hurt_the_service(
    exchange: InProcessExchange, name: str, seed: int
) -> None:
    rng = random.Random(seed)
    before = exchange.state_hash()
    port = exchange.ports[name]
    for logged_in in (False, True):
        for _ in range(5):
            client = await (port.logged_in() if logged_in else port.client())
            client.send_raw(rng.randbytes(rng.randrange(1, 3000)))
            # Either a bad length (ON_ERROR, then closed) or frames of unknown
            # types (ON_ERROR each, kept open): never silence, never a crash.
            try:
                kind = -1
                while kind != ON_ERROR:  # pushes (a login snapshot) may come first
                    kind, _ = await client.recv_frame(timeout=IDLE_TIMEOUT_S + 2)
            except EOFError:
                pass
            await client.close()
    await unchanged(exchange, before)


@pytest.mark.parametrize("name", PORTS)
async def test_unparsable_payloads_get_on_error_naming_the_type_and_keep_the_connection(
    exchange: InProcessExchange, name: str
) -> None:
    before = exchange.state_hash()
    port = exchange.ports[name]
    client = await port.logged_in()
    for message_type in port.serves:
        client.send_raw(encode_frame(message_type, b"\xff\xff\xff\xff\xff"))
        kind, error = await reply(client)
        assert kind == ON_ERROR and error.message_type == message_type
        assert "does not parse" in error.error_message
    await _still_answers(client, name)
    await client.close()
    await unchanged(exchange, before)


async def _still_answers(client: RawClient, name: str) -> None:
    probe = {
        "order_book": order_book_pb2.GetStatsRequest(request_id=4242),
        "info": info_pb2.QuotesRequest(request_id=4242),
        "admin": admin_pb2.ListInstrumentsRequest(request_id=4242),
        "risk_gateway": risk_limits_pb2.GetUserRiskLimitsRequest(request_id=4242),
    }[name]
    client.send(probe)
    _, answer = await answer_to(client, 4242)
    assert answer.error_message == ""


@pytest.mark.parametrize("name", PORTS)
async def test_unknown_and_unserved_types_get_on_error_and_keep_the_connection(
    exchange: InProcessExchange, name: str
) -> None:
    port = exchange.ports[name]
    client = await port.logged_in()
    for message_type in (4, 29, 99, 129, 148, 1000, 0xFFFFFFFF):
        client.send_raw(encode_frame(message_type, b""))
        kind, error = await reply(client)
        assert (kind, error.message_type) == (ON_ERROR, message_type)
        assert "unknown message type" in error.error_message
    for message_type in (10, 21, 30, 40, 130, 140):
        if message_type in port.serves:
            continue
        client.send_raw(encode_frame(message_type, b""))
        kind, error = await reply(client)
        assert (kind, error.message_type) == (ON_ERROR, message_type)
        assert "not served on this port" in error.error_message
    await _still_answers(client, name)
    await client.close()


# ---------------------------------------------------------------------- requests


@pytest.mark.parametrize("name", PORTS)
async def test_default_only_messages_get_a_clear_answer_and_change_nothing(
    exchange: InProcessExchange, name: str
) -> None:
    before = exchange.state_hash()
    port = exchange.ports[name]
    client = await port.logged_in()
    service = await exchange.ports["info"].logged_in("service") if name == "info" else None
    for index, message_type in enumerate(port.serves, start=1):
        sender = service if message_type in SERVICE_ONLY and service else client
        sender.send_raw(encode_frame(message_type, b""))  # request_id 0, every field default
        kind, answer = await reply(sender)
        assert kind == RESPONSE_TYPE[message_type], (message_type, kind, answer)
        if message_type in DEFAULT_IS_VALID:
            assert answer.error_message == "", (message_type, answer)
        else:
            assert answer.error_message, f"type {message_type}: empty request accepted"
        assert index
    await client.close()
    if service is not None:
        await service.close()
    await unchanged(exchange, before)


BAD_ENUMS: list[tuple[str, int, dict[str, Any], str]] = [
    (
        "risk_gateway",
        40,
        {"instrument_symbol": "BAD", "price": 1.0, "quantity": 1, "side": 7},
        "side",
    ),
    (
        "risk_gateway",
        40,
        {"instrument_symbol": "BAD", "price": 1.0, "quantity": 1, "time_in_force": 9},
        "time_in_force",
    ),
    ("order_book", 10, {"order_book_id": 1, "price": 1.0, "quantity": 1, "side": 2}, "side"),
    (
        "order_book",
        10,
        {"order_book_id": 1, "price": 1.0, "quantity": 1, "time_in_force": 3},
        "time_in_force",
    ),
    ("order_book", 140, {"tick_size": 0.01, "price_rule": 5}, "price_rule"),
    (
        "admin",
        30,
        {"instrument": common_pb2.Instrument(symbol="ENUM"), "tick_size": 0.01, "price_rule": 7},
        "price_rule",
    ),
    ("info", 21, {"instrument_symbol": "BAD", "subscription_type": 3}, "subscription_type"),
]


@pytest.mark.parametrize(("name", "message_type", "fields", "word"), BAD_ENUMS)
async def test_out_of_range_enums_are_refused(
    exchange: InProcessExchange, name: str, message_type: int, fields: dict[str, Any], word: str
) -> None:
    before = exchange.state_hash()
    client = await exchange.ports[name].logged_in()
    client.send(request(message_type, 5, **fields))
    _, answer = await answer_to(client, 5)
    assert word in answer.error_message
    await client.close()
    await unchanged(exchange, before)


BAD_PRICES = [0.0, -1.0, -0.01, math.nan, math.inf, -math.inf, 10.005, 1e300, 2.0**53 * 0.01 * 4]


@pytest.mark.parametrize("price", BAD_PRICES)
async def test_bad_prices_are_refused_at_the_gateway_and_the_order_book(
    exchange: InProcessExchange, price: float
) -> None:
    before = exchange.state_hash()
    book_id = exchange.symbols["BAD"]
    participant = await exchange.ports["risk_gateway"].logged_in()
    service = await exchange.ports["order_book"].logged_in()
    participant.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="BAD", price=price, quantity=1
        )
    )
    service.send(
        order_book_pb2.InsertOrderRequest(
            request_id=1, order_book_id=book_id, price=price, quantity=1, on_behalf_of_username="x"
        )
    )
    for client in (participant, service):
        _, answer = await answer_to(client, 1)
        assert "price" in answer.error_message, answer
    # An amend to a bad price of a real order is refused too, and the order stays.
    participant.send(
        execution_pb2.InsertOrderRequest(
            request_id=2, instrument_symbol="BAD", price=10.0, quantity=3
        )
    )
    _, placed = await answer_to(participant, 2)
    resting = exchange.state_hash()
    participant.send(
        execution_pb2.AmendOrderRequest(
            request_id=3, instrument_symbol="BAD", order_id=placed.order_id, price=price, quantity=1
        )
    )
    _, answer = await answer_to(participant, 3)
    assert "price" in answer.error_message
    assert exchange.state_hash() == resting
    participant.send(
        execution_pb2.CancelOrderRequest(
            request_id=4, instrument_symbol="BAD", order_id=placed.order_id
        )
    )
    _, cancelled = await answer_to(participant, 4)
    assert cancelled.cancelled_quantity == 3
    await participant.close()
    await service.close()
    assert before != exchange.state_hash()  # the real order came and went
    await exchange.healthy()


@pytest.mark.parametrize("quantity", [0, -1, -(2**31)])
async def test_zero_and_negative_quantities_are_refused(
    exchange: InProcessExchange, quantity: int
) -> None:
    before = exchange.state_hash()
    participant = await exchange.ports["risk_gateway"].logged_in()
    service = await exchange.ports["order_book"].logged_in()
    participant.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="BAD", price=10.0, quantity=quantity
        )
    )
    service.send(
        order_book_pb2.InsertOrderRequest(
            request_id=1,
            order_book_id=exchange.symbols["BAD"],
            price=10.0,
            quantity=quantity,
            on_behalf_of_username="x",
        )
    )
    for client in (participant, service):
        _, answer = await answer_to(client, 1)
        assert "quantity" in answer.error_message, answer
    await participant.close()
    await service.close()
    await unchanged(exchange, before)


async def test_huge_quantities_flow_end_to_end(exchange: InProcessExchange) -> None:
    """The largest int32 quantities, twice at one price: accepted, mirrored, traded."""
    huge = 2**31 - 1
    view = await exchange.ports["info"].logged_in()
    view.send(
        info_pb2.OrderBookSubscribeRequest(
            request_id=1, instrument_symbol="BAD", subscription_type=info_pb2.PRICE_DEPTH_BOOK
        )
    )
    await answer_to(view, 1)
    alice = await exchange.ports["risk_gateway"].logged_in("alice")
    for request_id in (1, 2):
        alice.send(
            execution_pb2.InsertOrderRequest(
                request_id=request_id, instrument_symbol="BAD", price=10.0, quantity=huge
            )
        )
        _, answer = await answer_to(alice, request_id)
        assert answer.error_message == "" and answer.resting_quantity == huge
    bob = await exchange.ports["risk_gateway"].logged_in("bob")
    bob.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="BAD", price=10.0, quantity=huge, side=common_pb2.SELL
        )
    )
    _, answer = await answer_to(bob, 1)
    assert answer.traded_quantity == huge
    await exchange.healthy()
    await view.close()


async def test_a_price_level_above_int32_is_never_published_negative(
    exchange: InProcessExchange,
) -> None:
    huge = 2**31 - 1
    view = await exchange.ports["info"].logged_in()
    for request_id, kind in ((1, info_pb2.TOP_OF_BOOK), (2, info_pb2.PRICE_DEPTH_BOOK)):
        view.send(
            info_pb2.OrderBookSubscribeRequest(
                request_id=request_id, instrument_symbol="BAD", subscription_type=kind
            )
        )
        await answer_to(view, request_id)
    alice = await exchange.ports["risk_gateway"].logged_in("alice")
    # Two maximal orders at one price, then a small one at the next price down.
    for request_id, price, quantity in ((1, 10.0, huge), (2, 10.0, huge), (3, 9.99, 5)):
        alice.send(
            execution_pb2.InsertOrderRequest(
                request_id=request_id, instrument_symbol="BAD", price=price, quantity=quantity
            )
        )
        assert (await answer_to(alice, request_id))[1].error_message == ""
    quantities: list[int] = []
    small_order_seen = False
    with contextlib.suppress(TimeoutError, EOFError):  # EOF: idle timeout, we sent nothing
        while not small_order_seen:
            kind, message = await view.recv(timeout=1.5)
            if kind == MT.INFO_ON_PRICE_DEPTH_BOOK:
                quantities += [level.quantity for level in message.bids]
                small_order_seen = (9.99, 5) in [(lv.price, lv.quantity) for lv in message.bids]
            elif kind == MT.INFO_ON_TOP_OF_BOOK and message.HasField("best_bid"):
                quantities.append(message.best_bid.quantity)
    assert all(quantity > 0 for quantity in quantities), quantities
    assert small_order_seen, "Info stopped publishing the book after the overflow"
    await view.close()
    await alice.close()


async def test_unknown_and_deleted_instruments_are_refused(exchange: InProcessExchange) -> None:
    book_id = await exchange.create("GONE")
    await exchange.delete("GONE")
    before = exchange.state_hash()
    alice = await exchange.ports["risk_gateway"].logged_in()
    dave = await exchange.ports["info"].logged_in()
    admin = await exchange.ports["admin"].logged_in()
    service = await exchange.ports["order_book"].logged_in()
    for request_id, symbol in enumerate(("NOPE", "GONE"), start=1):
        alice.send(
            execution_pb2.InsertOrderRequest(
                request_id=request_id, instrument_symbol=symbol, price=1.0, quantity=1
            )
        )
        _, answer = await answer_to(alice, request_id)
        assert answer.error_message == "unknown instrument"
        dave.send(
            info_pb2.OrderBookSubscribeRequest(request_id=request_id, instrument_symbol=symbol)
        )
        _, answer = await answer_to(dave, request_id)
        assert "unknown instrument" in answer.error_message
        for admin_request in (
            admin_pb2.DeleteInstrumentRequest(request_id=request_id, instrument_symbol=symbol),
            admin_pb2.ClearOrderBookRequest(request_id=request_id, instrument_symbol=symbol),
        ):
            admin.send(admin_request)
            _, answer = await answer_to(admin, request_id)
            assert "unknown instrument" in answer.error_message
    for message in (
        order_book_pb2.InsertOrderRequest(
            request_id=9, order_book_id=book_id, price=1.0, quantity=1
        ),
        order_book_pb2.InsertOrderRequest(
            request_id=9, order_book_id=10**12, price=1.0, quantity=1
        ),
        order_book_pb2.ClearOrderBookRequest(request_id=9, order_book_id=book_id),
        order_book_pb2.DeleteOrderBookRequest(request_id=9, order_book_id=book_id),
    ):
        service.send(message)
        _, answer = await answer_to(service, 9)
        assert answer.error_message, message
    for client in (alice, dave, admin, service):
        await client.close()
    await unchanged(exchange, before)


@pytest.mark.parametrize("name", PORTS)
async def test_requests_before_login_are_refused_and_change_nothing(
    exchange: InProcessExchange, name: str
) -> None:
    before = exchange.state_hash()
    port = exchange.ports[name]
    client = await port.client()
    for message_type in port.serves:
        client.send(request(message_type, 31))
        kind, answer = await answer_to(client, 31)
        assert answer.error_message == errors.NOT_LOGGED_IN
        assert kind in (RESPONSE_TYPE[message_type], ON_ERROR)
    # The connection is still usable: a correct login now succeeds.
    assert (await client.login(port.user, DEMO_PASSWORDS[port.user])).error_message == ""
    await client.close()
    await unchanged(exchange, before)


@pytest.mark.parametrize("name", PORTS)
async def test_wrong_passwords_read_like_unknown_users_and_are_throttled(
    exchange: InProcessExchange, name: str
) -> None:
    port = exchange.ports[name]
    client = await port.client()
    answers = set()
    for username, password in (
        (port.user, "wrong"),
        ("nobody-here", "wrong"),
        ("nobody-here", DEMO_PASSWORDS[port.user]),
        (port.user, ""),
        ("", ""),
    ):
        answers.add((await client.login(username, password)).error_message)
    assert answers == {errors.INVALID_CREDENTIALS}
    # Past five failures for one name, every further attempt is delayed.
    for _ in range(5):
        await client.login("mallory", "guess")
    started = time.monotonic()
    assert (await client.login("mallory", "guess")).error_message == errors.INVALID_CREDENTIALS
    assert time.monotonic() - started >= 0.4
    # The connection stayed unauthenticated and usable; the real user is not locked out.
    assert (await client.login(port.user, DEMO_PASSWORDS[port.user])).error_message == ""
    await client.close()


async def test_another_users_order_ids_read_like_unknown_ones(exchange: InProcessExchange) -> None:
    alice = await exchange.ports["risk_gateway"].logged_in("alice")
    bob = await exchange.ports["risk_gateway"].logged_in("bob")
    alice.send(
        execution_pb2.InsertOrderRequest(
            request_id=1, instrument_symbol="BAD", price=10.0, quantity=5
        )
    )
    _, placed = await answer_to(alice, 1)
    before = exchange.state_hash()
    texts = []
    for request_id, order_id in enumerate((placed.order_id, 10**15), start=1):
        bob.send(
            execution_pb2.CancelOrderRequest(
                request_id=request_id, instrument_symbol="BAD", order_id=order_id
            )
        )
        texts.append((await answer_to(bob, request_id))[1].error_message)
        bob.send(
            execution_pb2.AmendOrderRequest(
                request_id=request_id + 10,
                instrument_symbol="BAD",
                order_id=order_id,
                price=11.0,
                quantity=1,
            )
        )
        texts.append((await answer_to(bob, request_id + 10))[1].error_message)
    assert set(texts) == {"unknown order"}
    assert str(placed.order_id) not in "".join(texts)
    assert exchange.state_hash() == before
    await alice.close()
    await bob.close()


# ---------------------------------------------------------------------- delivery


def _probe_frame(name: str, request_id: int) -> bytes:
    message: Message = {
        "order_book": order_book_pb2.GetStatsRequest(request_id=request_id),
        "info": info_pb2.QuotesRequest(request_id=request_id),
        "admin": admin_pb2.ListInstrumentsRequest(request_id=request_id),
        "risk_gateway": risk_limits_pb2.GetUserRiskLimitsRequest(request_id=request_id),
    }[name]
    types = {"order_book": 146, "info": 60, "admin": 34, "risk_gateway": 50}
    return encode_frame(types[name], message.SerializeToString())


@pytest.mark.parametrize("name", PORTS)
async def test_one_byte_writes_and_a_thousand_frames_in_one_write(
    exchange: InProcessExchange, name: str
) -> None:
    port = exchange.ports[name]
    client = await port.client()
    login = common_pb2.LoginRequest(
        request_id=1, username=port.user, password=DEMO_PASSWORDS[port.user]
    )
    data = encode_frame(MT.LOGIN_REQUEST, login.SerializeToString()) + _probe_frame(name, 2)
    for byte in data:
        client.send_raw(bytes([byte]))
        await client.writer.drain()
    assert (await answer_to(client, 1))[1].error_message == ""
    assert (await answer_to(client, 2))[1].error_message == ""
    client.send_raw(b"".join(_probe_frame(name, i) for i in range(10, 1010)))
    seen = [(await answer_to_any(client)).request_id for _ in range(1000)]
    assert seen == list(range(10, 1010))
    await client.close()


async def answer_to_any(client: RawClient) -> Any:
    while True:
        kind, message = await client.recv()
        if kind in RESPONSE_TYPE.values():
            return message


async def test_a_flood_above_the_message_rate_is_refused_by_name_and_disturbs_nobody(
    exchange: InProcessExchange,
) -> None:
    admin = await exchange.ports["risk_gateway"].logged_in("admin")
    admin.send(
        risk_limits_pb2.SetUserRiskLimitsRequest(
            request_id=1,
            username="alice",
            user_risk_limits=risk_limits_pb2.UserRiskLimits(
                message_rate_rolling_limit=risk_limits_pb2.RollingWindowLimit(
                    limit=20, window_in_seconds=60
                )
            ),
        )
    )
    assert (await answer_to(admin, 1))[1].error_message == ""
    alice = await exchange.ports["risk_gateway"].logged_in("alice")
    bob = await exchange.ports["risk_gateway"].logged_in("bob")
    flood = b"".join(
        encode_frame(
            40,
            execution_pb2.InsertOrderRequest(
                request_id=i,
                instrument_symbol="BAD",
                price=1.0,
                quantity=1,
                time_in_force=common_pb2.IMMEDIATE_OR_CANCEL,
            ).SerializeToString(),
        )
        for i in range(1, 501)
    )
    alice.send_raw(flood)
    # Meanwhile bob trades as usual, promptly.
    started = time.monotonic()
    bob.send(
        execution_pb2.InsertOrderRequest(
            request_id=7,
            instrument_symbol="BAD",
            price=1.0,
            quantity=1,
            time_in_force=common_pb2.IMMEDIATE_OR_CANCEL,
        )
    )
    assert (await answer_to(bob, 7))[1].error_message == ""
    assert time.monotonic() - started < 2.0
    answers = [await answer_to_any(alice) for _ in range(500)]
    accepted = [a for a in answers if not a.error_message]
    refused = [a for a in answers if a.error_message]
    assert len(accepted) == 20
    assert all("message_rate_rolling_limit" in a.error_message for a in refused)
    assert [a.request_id for a in answers] == list(range(1, 501))
    for client in (admin, alice, bob):
        await client.close()


@pytest.mark.parametrize("name", PORTS)
async def test_a_request_flood_on_one_connection_does_not_starve_another(
    exchange: InProcessExchange, name: str
) -> None:
    port = exchange.ports[name]
    flooder = await port.logged_in()
    other = await port.logged_in()
    flooder.send_raw(b"".join(_probe_frame(name, i) for i in range(20_000)))
    started = time.monotonic()
    other.send_raw(_probe_frame(name, 99))
    assert (await answer_to(other, 99, timeout=5))[1].error_message == ""
    waited = time.monotonic() - started
    await flooder.close()
    await other.close()
    assert waited < 2.0, f"a flood on another connection delayed an answer by {waited:.2f} s"
    await exchange.healthy()
