"""``optivex users``: manage a users file without ever showing a password.

    optivex users add NAME --role ROLE [--file users.toml] [--password-stdin]
    optivex users remove NAME [--file users.toml]
    optivex users list [--file users.toml]

``add`` creates the file if needed, or replaces NAME's entry with a fresh salted
hash. The password is read with :func:`getpass.getpass` (asked twice, nothing
echoed) or, with ``--password-stdin``, as one line from standard input, for
scripts (``printf '%s\\n' "$PW" | optivex users add ...``) -- never from the
command line, where it would end up in shell history and ``ps``. The file is
rewritten atomically with mode 0600. ``list`` shows names and roles only.

:func:`main` takes the arguments after ``users``; ``services/cli.py`` wires it into
the ``optivex`` command.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from services.common.users import Role, UserStore, UserStoreError, validate_username

__all__ = ["build_parser", "main"]

DEFAULT_FILE = "users.toml"


def build_parser(prog: str = "optivex users") -> argparse.ArgumentParser:
    """The ``users`` argument parser (exposed so the top-level CLI can reuse its help)."""
    parser = argparse.ArgumentParser(prog=prog, description="Manage an Optivex users file.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="create or update a user (asks for the password)")
    add.add_argument("name", help="username (1-64 of A-Z a-z 0-9 _ . @ -)")
    add.add_argument("--role", required=True, choices=Role.names(), help="the account's role")
    add.add_argument("--file", default=DEFAULT_FILE, help=f"users file (default {DEFAULT_FILE})")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input instead of prompting",
    )

    remove = commands.add_parser("remove", help="delete a user")
    remove.add_argument("name")
    remove.add_argument("--file", default=DEFAULT_FILE, help=f"users file (default {DEFAULT_FILE})")

    listing = commands.add_parser("list", help="show users and roles (never hashes)")
    listing.add_argument(
        "--file", default=DEFAULT_FILE, help=f"users file (default {DEFAULT_FILE})"
    )
    return parser


def main(
    argv: Sequence[str],
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Run one ``users`` subcommand; returns the process exit status.

    The keyword arguments exist for tests; the real streams and prompt are used
    when they are left out.
    """
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    args = build_parser().parse_args(list(argv))
    try:
        if args.command == "add":
            return _add(args, stdin, stdout, stderr, prompt)
        if args.command == "remove":
            return _remove(args, stdout, stderr)
        return _list(args, stdout)
    except (UserStoreError, ValueError, OSError) as exc:
        print(f"optivex users {args.command}: {exc}", file=stderr)
        return 1


def _load(path: Path, *, must_exist: bool) -> UserStore:
    if not path.exists() and not must_exist:
        return UserStore()
    return UserStore.from_toml(path)


def _read_password(
    args: argparse.Namespace, stdin: TextIO, stderr: TextIO, prompt: Callable[[str], str]
) -> str | None:
    if args.password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not stdin.isatty():
            print(
                "standard input is not a terminal; use --password-stdin to pipe a password",
                file=stderr,
            )
            return None
        password = prompt(f"Password for {args.name}: ")
        if prompt("Repeat password: ") != password:
            print("passwords do not match; nothing changed", file=stderr)
            return None
    if not password:
        print("empty password; nothing changed", file=stderr)
        return None
    return password


def _add(
    args: argparse.Namespace,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    prompt: Callable[[str], str],
) -> int:
    validate_username(args.name)
    path = Path(args.file)
    store = _load(path, must_exist=False)  # fail on a broken file before asking
    existed = args.name in store
    password = _read_password(args, stdin, stderr, prompt)
    if password is None:
        return 1
    store.add_user(args.name, Role.from_name(args.role), password=password)
    store.save(path)
    verb = "updated" if existed else "added"
    print(f"{verb} user {args.name} ({args.role}) in {path}", file=stdout)
    return 0


def _remove(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    path = Path(args.file)
    store = _load(path, must_exist=True)
    if not store.remove_user(args.name):
        print(f"no user {args.name!r} in {path}; nothing changed", file=stderr)
        return 1
    store.save(path)
    print(f"removed user {args.name} from {path}", file=stdout)
    return 0


def _list(args: argparse.Namespace, stdout: TextIO) -> int:
    store = _load(Path(args.file), must_exist=True)
    width = max((len(user.name) for user in store), default=4)
    for user in store:
        print(f"{user.name:<{width}}  {user.role.config_name}", file=stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover - convenience entry point
    sys.exit(main(sys.argv[1:]))
