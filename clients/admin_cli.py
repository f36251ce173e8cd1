"""``optivex admin``: administer instruments and risk limits from the command line.

Commands (``optivex admin COMMAND --help`` for each)::

    create SYMBOL --tick-size X [--description D] [--currency C] [--multiplier M]
                  [--price-rule resting|spread-capture]
    delete SYMBOL
    list
    clear SYMBOL
    stats
    limits get [--user U]
    limits set --user U [--max-outstanding-quantity N] [--message-rate N/SECONDS]
    limits set-instrument SYMBOL --user U [--max-outstanding-quantity N]
                  [--max-outstanding-amount X] [--order-quantity N/SECONDS]
                  [--order-amount X/SECONDS]
    bootstrap FILE [--tick-size X] [--price-rule R] [--currency C] [--multiplier M]

Instrument commands talk to the Admin service, ``limits`` to the Risk Gateway
(logged in as the admin user). Output is a table for people, or stable JSON
with ``--json``. Errors are one line on stderr; the exit status says what went
wrong: 0 ok, 1 the service refused the request, 2 usage or configuration error,
3 connection or login problem.

Where to connect comes from the same layers as the services' own settings:
the TOML file (``--config`` or ``OPTIVEX_CONFIG``: ``[admin]`` and
``[risk_gateway]`` host and port), then ``OPTIVEX_ADMIN_HOST`` /
``OPTIVEX_ADMIN_PORT`` / ``OPTIVEX_RISK_GATEWAY_HOST`` /
``OPTIVEX_RISK_GATEWAY_PORT``, then ``--host``, ``--admin-port`` and
``--gateway-port``. The password comes from ``--password-stdin``, else
``OPTIVEX_ADMIN_PASSWORD``, else the demo password ``admin-demo`` (demo only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from clients import admin_cli_format as fmt
from clients.admin_cli_common import (
    PASSWORD_ENV,
    PROG,
    Command,
    Parser,
    Target,
    UsageError,
    add_connection_options,
)
from clients.wireclient import RequestRefused, WireClientError
from services.admin.model import PriceRule
from services.common.config import AdminConfig, ConfigError, RiskGatewayConfig, load_config
from services.common.pb import admin_pb2, common_pb2

__all__ = ["SAMPLE_LISTINGS", "Target", "UsageError", "main"]

MT = common_pb2.MessageType
DEMO_PASSWORD = "admin-demo"
SAMPLE_LISTINGS = Path(__file__).resolve().parent / "data" / "sample-listings.csv"
"""The listings file ``make run`` bootstraps by default."""

PRICE_RULES = {rule.label: rule for rule in PriceRule}


# ------------------------------------------------------------------ instrument commands


async def cmd_create(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    request = admin_pb2.CreateInstrumentRequest(
        instrument=common_pb2.Instrument(
            symbol=args.symbol,
            description=args.description,
            currency=args.currency,
            multiplier=args.multiplier,
        ),
        tick_size=args.tick_size,
        price_rule=int(PRICE_RULES[args.price_rule]),  # type: ignore[arg-type]
    )
    async with await target.admin() as client:
        response = await client.call(MT.ADMIN_CREATE_INSTRUMENT_REQUEST, request)
    if target.json:
        print(
            fmt.dump_json(
                {
                    "symbol": args.symbol,
                    "order_book_id": response.order_book_id,
                    "created_timestamp": response.created_timestamp,
                }
            ),
            file=out,
        )
    else:
        print(
            f"created {args.symbol}: order book {response.order_book_id}, "
            f"{fmt.format_timestamp(response.created_timestamp)}",
            file=out,
        )
    return 0


async def cmd_delete(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    async with await target.admin() as client:
        await client.call(
            MT.ADMIN_DELETE_INSTRUMENT_REQUEST,
            admin_pb2.DeleteInstrumentRequest(instrument_symbol=args.symbol),
        )
    if target.json:
        print(fmt.dump_json({"symbol": args.symbol, "deleted": True}), file=out)
    else:
        print(f"deleted {args.symbol}", file=out)
    return 0


async def cmd_list(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    async with await target.admin() as client:
        response = await client.call(
            MT.ADMIN_LIST_INSTRUMENTS_REQUEST, admin_pb2.ListInstrumentsRequest()
        )
    entries = list(response.instruments)
    if target.json:
        print(fmt.dump_json({"instruments": [fmt.instrument_json(e) for e in entries]}), file=out)
    else:
        print(fmt.instruments_table(entries), file=out)
    return 0


async def cmd_clear(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    async with await target.admin() as client:
        response = await client.call(
            MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST,
            admin_pb2.ClearOrderBookRequest(instrument_symbol=args.symbol),
        )
    if target.json:
        print(
            fmt.dump_json({"symbol": args.symbol, "cancelled_orders": response.cancelled_orders}),
            file=out,
        )
    else:
        print(f"cleared {args.symbol}: {response.cancelled_orders} order(s) cancelled", file=out)
    return 0


async def cmd_stats(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    async with await target.admin() as client:
        response = await client.call(
            MT.ADMIN_GET_EXCHANGE_STATS_REQUEST, admin_pb2.GetExchangeStatsRequest()
        )
    figures = {
        "exchange_profit": response.exchange_profit,
        "trade_count": response.trade_count,
        "traded_volume": response.traded_volume,
        "resting_orders": response.resting_orders,
    }
    if target.json:
        print(fmt.dump_json(figures), file=out)
    else:
        shown = {
            k: fmt.format_float(v) if isinstance(v, float) else str(v) for k, v in figures.items()
        }
        print(fmt.key_value_table(shown), file=out)
    return 0


# ------------------------------------------------------------------ the parser


def build_parser() -> argparse.ArgumentParser:
    from clients import admin_cli_bootstrap, admin_cli_limits

    parser = Parser(
        prog=PROG,
        description="Administer Optivex instruments and risk limits.",
        epilog="Exit status: 0 ok, 1 refused by the service, 2 usage, 3 connection problem.",
    )
    add_connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_connection_options(sub, top=False)
        sub.set_defaults(func=func)
        return sub

    create = command("create", cmd_create, "create an instrument (order book and market data)")
    create.add_argument("symbol", metavar="SYMBOL")
    create.add_argument("--tick-size", type=float, required=True, metavar="X")
    create.add_argument("--description", default="")
    create.add_argument("--currency", default="USD")
    create.add_argument("--multiplier", type=float, default=1.0)
    create.add_argument("--price-rule", choices=sorted(PRICE_RULES), default="resting")
    command("delete", cmd_delete, "delete an instrument (cancels its resting orders)").add_argument(
        "symbol", metavar="SYMBOL"
    )
    command("list", cmd_list, "list the live instruments")
    command("clear", cmd_clear, "cancel every resting order of an instrument").add_argument(
        "symbol", metavar="SYMBOL"
    )
    command("stats", cmd_stats, "exchange-wide statistics")
    admin_cli_limits.add_commands(commands)
    admin_cli_bootstrap.add_command(command)
    return parser


# ------------------------------------------------------------------ settings


def _connectable(host: str) -> str:
    """A bind-all address is not somewhere to connect to: use loopback instead."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO) -> Target:
    """Config file < environment < flags, exactly as the services resolve theirs."""
    layers = ["--config", args.config] if args.config else []
    try:
        admin = load_config(AdminConfig, layers, environ=environ)
        gateway = load_config(RiskGatewayConfig, layers, environ=environ)
    except ConfigError as exc:
        raise UsageError(f"configuration error: {exc}") from None
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
    else:
        password = environ.get(PASSWORD_ENV) or DEMO_PASSWORD
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    return Target(
        admin_host=args.host or _connectable(admin.host),
        admin_port=args.admin_port or admin.port,
        gateway_host=args.host or _connectable(gateway.host),
        gateway_port=args.gateway_port or gateway.port,
        username=args.username,
        password=password,
        timeout_s=args.timeout,
        json=args.json,
    )


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run one admin command; returns the exit status (see the module docstring)."""
    environ = os.environ if environ is None else environ
    out = stdout or sys.stdout
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        target = resolve_target(args, environ, stdin or sys.stdin)
        func: Command = args.func
        return asyncio.run(func(args, target, out))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except RequestRefused as exc:
        print(f"{PROG}: refused: {exc}", file=sys.stderr)
        return exc.exit_status
    except WireClientError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
