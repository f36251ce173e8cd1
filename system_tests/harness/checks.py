"""Assertions whose first line says what was expected and what was received."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from google.protobuf import text_format
from google.protobuf.message import Message

from system_tests.harness.conn import describe
from system_tests.harness.messages import type_of
from system_tests.pb import common_pb2, info_pb2

BUY, SELL = common_pb2.BUY, common_pb2.SELL
GTC, IOC, FOK = common_pb2.GOOD_TILL_CANCEL, common_pb2.IMMEDIATE_OR_CANCEL, common_pb2.FILL_OR_KILL
RESTING_ORDER_PRICE, SPREAD_CAPTURE = common_pb2.RESTING_ORDER_PRICE, common_pb2.SPREAD_CAPTURE
TOP_OF_BOOK, PRICE_DEPTH_BOOK = info_pb2.TOP_OF_BOOK, info_pb2.PRICE_DEPTH_BOOK
PARTICIPANT, ADMIN, SERVICE = common_pb2.PARTICIPANT, common_pb2.ADMIN, common_pb2.SERVICE

Side: TypeAlias = common_pb2.Side.ValueType
TimeInForce: TypeAlias = common_pb2.TimeInForce.ValueType
PriceRule: TypeAlias = common_pb2.PriceRule.ValueType
SubscriptionType: TypeAlias = info_pb2.SubscriptionType.ValueType


def has(**fields: Any) -> Callable[[Any], bool]:
    """A predicate: the message's fields equal ``fields`` (for Conn.expect)."""

    def predicate(msg: Any) -> bool:
        return all(getattr(msg, name) == value for name, value in fields.items())

    return predicate


def show(msg: Any) -> str:
    """A message on one line, for failure texts."""
    try:
        return describe(type_of(msg), msg)
    except KeyError:
        return repr(msg)


def ok(response: Any, what: str) -> Any:
    """``response`` must carry an empty ``error_message``."""
    assert not response.error_message, (
        f"{what}: expected success (empty error_message), received error {response.error_message!r}"
    )
    return response


def refused(response: Any, what: str, contains: str | None = None) -> Any:
    """``response`` must carry a non-empty ``error_message`` (containing ``contains``)."""
    assert response.error_message, f"{what}: expected an error, received success {show(response)}"
    if contains is not None:
        assert contains.lower() in response.error_message.lower(), (
            f"{what}: expected an error_message containing {contains!r}, received "
            f"{response.error_message!r}"
        )
    return response


def _fmt(value: Any) -> str:
    """repr on one line, with protobuf messages in their one-line text form."""
    if isinstance(value, Message):
        return "{" + text_format.MessageToString(value, as_one_line=True) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_fmt(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def eq(actual: Any, expected: Any, what: str) -> None:
    assert actual == expected, f"{what}: expected {_fmt(expected)}, received {_fmt(actual)}"


def same_price(a: float, b: float) -> bool:
    """Prices equal up to the contract's grid tolerance (1e-9 relative)."""
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300)


def price_eq(actual: float, expected: float, what: str) -> None:
    assert same_price(actual, expected), f"{what}: expected price {expected!r}, received {actual!r}"


def levels(price_levels: Iterable[Any]) -> list[tuple[float, int]]:
    """``[(price, quantity), ...]`` of repeated PriceLevel, prices rounded for comparison."""
    return [(round(level.price, 9), level.quantity) for level in price_levels]


def norm(book: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    return [(round(price, 9), quantity) for price, quantity in book]


def top(msg: Any) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """(best bid, best ask) of an OnTopOfBook; None where the field is absent."""
    bid = (
        (round(msg.best_bid.price, 9), msg.best_bid.quantity) if msg.HasField("best_bid") else None
    )
    ask = (
        (round(msg.best_ask.price, 9), msg.best_ask.quantity) if msg.HasField("best_ask") else None
    )
    return bid, ask
