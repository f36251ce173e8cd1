"""``optivex``: one console script, one subcommand per tool.

Subcommands are imported lazily, so ``optivex users add`` does not pay for the
market-data viewer's imports, and a subcommand whose optional dependency is
missing fails alone with a clear message.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> (module, function, one-line help).  Each function takes argv (without
# the subcommand) and returns an exit status.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("services.launcher", "main", "start the whole exchange (demo configuration by default)"),
    "order-book": ("services.order_book.__main__", "main", "run the Order Book service"),
    "info": ("services.info.__main__", "main", "run the Info (market data) service"),
    "admin-service": ("services.admin.__main__", "main", "run the Admin service"),
    "risk-gateway": ("services.risk_gateway.__main__", "main", "run the Risk Gateway service"),
    "admin": ("clients.admin_cli", "main", "administer instruments and limits"),
    "users": ("services.common.users_cli", "main", "manage the users file (add, list)"),
    "watch": ("clients.watch", "main", "live market-data viewer (terminal UI)"),
    "bot": ("clients.bots.cli", "main", "run a sample trading bot"),
    "load": ("clients.load", "main", "open-loop load generator"),
    "grade": ("system_tests.grade", "main", "grade an exchange with the black-box system tests"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: optivex COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "Run 'optivex COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    entry = COMMANDS.get(name)
    if entry is None:
        print(f"optivex: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"optivex {name}: not available ({exc})", file=sys.stderr)
        return 2
    function: Callable[[list[str]], int] = getattr(module, function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
