"""``optivex admin limits``: read and set risk limits through the Risk Gateway.

The CLI logs in to the Gateway as the admin user, so it reads and writes the
*admin layer* of the named user's limits (PROTOCOL.md, "Limit semantics"); the
participant's own layer is shown but never changed here.

``set`` and ``set-instrument`` change only the limits given on the command line:
the CLI reads the current admin layer, applies the options and writes the whole
layer back (the protocol's Set replaces a layer). ``0`` or ``none`` removes a
limit. Rates are written ``N/SECONDS`` (``100/1``, ``100/1s``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any, TextIO

from clients import admin_cli_format as fmt
from clients.admin_cli_common import Target, UsageError, add_connection_options
from services.admin.model import check_symbol
from services.common.pb import common_pb2, risk_limits_pb2

__all__ = ["add_commands", "parse_amount", "parse_count", "parse_rate"]

MT = common_pb2.MessageType
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
NONE_WORDS = frozenset({"none", "0", "off"})


# ------------------------------------------------------------------ option values


def parse_count(text: str) -> int:
    """A whole number >= 0 (``none`` = 0 = no limit)."""
    if text.strip().lower() in NONE_WORDS:
        return 0
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"out of range: {text!r}")
    return value


def parse_amount(text: str) -> float:
    """A finite number >= 0 (``none`` = 0 = no limit)."""
    if text.strip().lower() in NONE_WORDS:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def parse_rate(text: str) -> tuple[int, int]:
    """``N/SECONDS`` as (limit, window); both int32 on the wire. ``none`` = (0, 0)."""
    if text.strip().lower() in NONE_WORDS:
        return 0, 0
    limit_text, slash, window_text = text.partition("/")
    window_text = window_text.strip().removesuffix("s")
    if not slash:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS (e.g. 100/1), got {text!r}")
    try:
        limit_value = float(limit_text)
        window = int(window_text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS (e.g. 100/1), got {text!r}") from None
    if not limit_value.is_integer():
        raise argparse.ArgumentTypeError(
            f"the limit in {text!r} must be a whole number (RollingWindowLimit.limit is int32)"
        )
    limit = int(limit_value)
    if not (0 <= limit <= INT32_MAX and 0 <= window <= INT32_MAX):
        raise argparse.ArgumentTypeError(f"out of range: {text!r}")
    return limit, window


def parse_symbol(text: str) -> str:
    problem = check_symbol(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


# ------------------------------------------------------------------ rendering


def _rolling(limit: Any) -> dict[str, int]:
    return {"limit": limit.limit, "window_in_seconds": limit.window_in_seconds}


def user_limits_json(limits: Any) -> dict[str, Any]:
    return {
        "max_outstanding_quantity": limits.max_outstanding_quantity,
        "message_rate_rolling_limit": _rolling(limits.message_rate_rolling_limit),
    }


def instrument_limits_json(limits: Any) -> dict[str, Any]:
    return {
        "max_outstanding_quantity": limits.max_outstanding_quantity,
        "max_outstanding_amount": limits.max_outstanding_amount,
        "order_quantity_rolling_limit": _rolling(limits.order_quantity_rolling_limit),
        "order_amount_rolling_limit": _rolling(limits.order_amount_rolling_limit),
    }


def _value(number: float) -> str:
    return fmt.format_float(number) if number else "none"


def _rate(limit: Any) -> str:
    return fmt.rolling_text(limit.limit, limit.window_in_seconds)


def _instrument_cells(limits: Any) -> list[str]:
    return [
        _value(limits.max_outstanding_quantity),
        _value(limits.max_outstanding_amount),
        _rate(limits.order_quantity_rolling_limit),
        _rate(limits.order_amount_rolling_limit),
    ]


INSTRUMENT_HEADERS = [
    "max_outstanding_quantity",
    "max_outstanding_amount",
    "order_quantity_rolling_limit",
    "order_amount_rolling_limit",
]


def _describe_user(limits: Any) -> str:
    return (
        f"max_outstanding_quantity {_value(limits.max_outstanding_quantity)}, "
        f"message_rate_rolling_limit {_rate(limits.message_rate_rolling_limit)}"
    )


# ------------------------------------------------------------------ commands


def _set_rolling(limits: Any, name: str, value: tuple[int, int]) -> None:
    """Set a RollingWindowLimit field; "no limit" is written as an unset field.

    An explicitly present but empty sub-message would make an all-zero entry
    look non-empty to a peer comparing messages, so it is cleared instead.
    """
    limit, window = value
    if limit == 0 or window == 0:
        limits.ClearField(name)
    else:
        field = getattr(limits, name)
        field.limit, field.window_in_seconds = limit, window


async def _get_user(client: Any, user: str) -> Any:
    return await client.call(
        MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST,
        risk_limits_pb2.GetUserRiskLimitsRequest(username=user),
    )


async def _get_instruments(client: Any, user: str) -> Any:
    return await client.call(
        MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST,
        risk_limits_pb2.GetInstrumentRiskLimitsRequest(username=user),
    )


async def cmd_get(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    user = args.user or ""
    async with await target.gateway() as client:
        users = await _get_user(client, user)
        instruments = await _get_instruments(client, user)
    shown = user or target.username
    if target.json:
        document = {
            "user": shown,
            "user_limits": {
                "own": user_limits_json(users.user_risk_limits),
                "admin": user_limits_json(users.admin_user_risk_limits),
            },
            "instrument_limits": {
                "own": {
                    s: instrument_limits_json(v)
                    for s, v in sorted(instruments.risk_limits_by_instrument.items())
                },
                "admin": {
                    s: instrument_limits_json(v)
                    for s, v in sorted(instruments.admin_risk_limits_by_instrument.items())
                },
            },
        }
        print(fmt.dump_json(document), file=out)
        return 0
    own, admin = users.user_risk_limits, users.admin_user_risk_limits
    print(f"user limits of {shown}", file=out)
    rows = [
        [
            "max_outstanding_quantity",
            _value(own.max_outstanding_quantity),
            _value(admin.max_outstanding_quantity),
        ],
        [
            "message_rate_rolling_limit",
            _rate(own.message_rate_rolling_limit),
            _rate(admin.message_rate_rolling_limit),
        ],
    ]
    print(fmt.table(["LIMIT", "OWN", "ADMIN"], rows), file=out)
    print(f"\ninstrument limits of {shown}", file=out)
    instrument_rows = [
        [symbol, layer, *_instrument_cells(limits)]
        for layer, table in (
            ("own", instruments.risk_limits_by_instrument),
            ("admin", instruments.admin_risk_limits_by_instrument),
        )
        for symbol, limits in sorted(table.items())
    ]
    instrument_rows.sort(key=lambda row: (row[0], row[1]))
    if instrument_rows:
        print(fmt.table(["SYMBOL", "LAYER", *INSTRUMENT_HEADERS], instrument_rows), file=out)
    else:
        print("none", file=out)
    return 0


async def cmd_set(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    if args.max_outstanding_quantity is None and args.message_rate is None:
        raise UsageError("limits set: give at least one limit to set")
    async with await target.gateway() as client:
        current = (await _get_user(client, args.user)).admin_user_risk_limits
        limits = risk_limits_pb2.UserRiskLimits()
        limits.CopyFrom(current)
        if args.max_outstanding_quantity is not None:
            limits.max_outstanding_quantity = args.max_outstanding_quantity
        if args.message_rate is not None:
            _set_rolling(limits, "message_rate_rolling_limit", args.message_rate)
        await client.call(
            MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST,
            risk_limits_pb2.SetUserRiskLimitsRequest(user_risk_limits=limits, username=args.user),
        )
    if target.json:
        print(fmt.dump_json({"user": args.user, "admin": user_limits_json(limits)}), file=out)
    else:
        print(f"admin limits of {args.user}: {_describe_user(limits)}", file=out)
    return 0


async def cmd_set_instrument(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    given = (
        args.max_outstanding_quantity,
        args.max_outstanding_amount,
        args.order_quantity,
        args.order_amount,
    )
    if all(value is None for value in given):
        raise UsageError("limits set-instrument: give at least one limit to set")
    async with await target.gateway() as client:
        table = (await _get_instruments(client, args.user)).admin_risk_limits_by_instrument
        limits = risk_limits_pb2.InstrumentRiskLimits()
        if args.symbol in table:
            limits.CopyFrom(table[args.symbol])
        if args.max_outstanding_quantity is not None:
            limits.max_outstanding_quantity = args.max_outstanding_quantity
        if args.max_outstanding_amount is not None:
            limits.max_outstanding_amount = args.max_outstanding_amount
        for option, name in (
            (args.order_quantity, "order_quantity_rolling_limit"),
            (args.order_amount, "order_amount_rolling_limit"),
        ):
            if option is not None:
                _set_rolling(limits, name, option)
        await client.call(
            MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST,
            risk_limits_pb2.SetInstrumentRiskLimitsRequest(
                instrument_symbol=args.symbol, instrument_risk_limits=limits, username=args.user
            ),
        )
    if target.json:
        document = {
            "user": args.user,
            "symbol": args.symbol,
            "admin": instrument_limits_json(limits),
        }
        print(fmt.dump_json(document), file=out)
    else:
        cells = ", ".join(
            f"{name} {value}"
            for name, value in zip(INSTRUMENT_HEADERS, _instrument_cells(limits), strict=True)
        )
        print(f"admin limits of {args.user} for {args.symbol}: {cells}", file=out)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``limits get|set|set-instrument`` to the admin CLI's parser."""
    limits = commands.add_parser(
        "limits", help="risk limits (through the Risk Gateway)", description=__doc__
    )
    actions = limits.add_subparsers(dest="limits_command", metavar="ACTION", required=True)

    def action(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=help_text
        )
        add_connection_options(sub, top=False)
        sub.set_defaults(func=func)
        return sub

    get = action("get", cmd_get, "show a user's limits (both layers)")
    get.add_argument("--user", help="whose limits (default: the admin user itself)")
    setter = action("set", cmd_set, "set limits of the admin layer of a user")
    setter.add_argument("--user", required=True)
    setter.add_argument("--max-outstanding-quantity", type=parse_count, metavar="N")
    setter.add_argument("--message-rate", type=parse_rate, metavar="N/SECONDS")
    per = action(
        "set-instrument", cmd_set_instrument, "set a user's admin-layer limits for one instrument"
    )
    per.add_argument("symbol", metavar="SYMBOL", type=parse_symbol)
    per.add_argument("--user", required=True)
    per.add_argument("--max-outstanding-quantity", type=parse_count, metavar="N")
    per.add_argument("--max-outstanding-amount", type=parse_amount, metavar="X")
    per.add_argument("--order-quantity", type=parse_rate, metavar="N/SECONDS")
    per.add_argument("--order-amount", type=parse_rate, metavar="X/SECONDS")
