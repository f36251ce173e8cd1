"""Start, announce and stop a service process the same way for all four.

Each service's ``__main__`` hands :func:`run_service` its config class and a
factory; this module does the rest in a fixed order that the launcher and the
system tests rely on:

1. configuration (TOML < ``OPTIVEX_*`` < flags), with a one-line error on failure;
2. logging, then the check that protobuf uses its fast ``upb`` backend;
3. users (a users file, or the embedded demo accounts) and the authenticator;
4. ``start()``: bind, connect upstream, replay journals;
5. the stable lines ``listening on HOST:PORT`` and then ``ready``;
6. on SIGTERM or SIGINT, ``stop()``: finish in-flight work, flush, close; exit 0.

The event loop is the standard asyncio one unless ``OPTIVEX_LOOP=uvloop`` is set
or ``--loop uvloop`` is given (``docs/performance.md`` has the measured
difference); the flag is taken out of ``argv`` before the config sees it, so it
works the same for every service and is not a config field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from services.common.auth import Authenticator
from services.common.clock import Clock, SystemClock
from services.common.config import CommonConfig, ConfigError, load_config, require_upb_backend
from services.common.logs import log_listening, log_ready, setup_logging
from services.common.users import UserStoreError, load_user_store

C = TypeVar("C", bound=CommonConfig)
T = TypeVar("T")

LOOP_ENV = "OPTIVEX_LOOP"
LOOPS = ("asyncio", "uvloop")


def split_loop_flag(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take ``--loop NAME`` / ``--loop=NAME`` out of ``argv``; returns (NAME or None, rest)."""
    rest: list[str] = []
    name: str | None = None
    items = iter(argv)
    for item in items:
        if item == "--loop":
            name = next(items, "")
        elif item.startswith("--loop="):
            name = item.split("=", 1)[1]
        else:
            rest.append(item)
    return name, rest


def choose_loop(flag: str | None = None) -> str:
    """The loop to run: the flag, else ``OPTIVEX_LOOP``, else ``asyncio``.

    Raises ``ValueError`` for an unknown name, or for ``uvloop`` when it is not
    installed (asking for it and silently getting something else would make
    benchmark numbers lie).
    """
    name = (flag or os.environ.get(LOOP_ENV) or "asyncio").strip().lower()
    if name not in LOOPS:
        raise ValueError(f"unknown event loop {name!r} (expected one of: {', '.join(LOOPS)})")
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:
            raise ValueError("uvloop was asked for but is not installed") from exc
    return name


def run_loop(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """``asyncio.run(main)`` on the chosen loop implementation."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


class ServiceApp(Protocol):
    """What a service factory returns."""

    async def start(self) -> tuple[str, int]:
        """Bind and get ready; returns the bound host and port."""
        ...

    async def stop(self) -> None:
        """Finish in-flight work and release everything."""
        ...


Factory = Callable[[C, Authenticator, Clock], ServiceApp]


def run_service(config_cls: type[C], factory: Factory[C], argv: Sequence[str] | None = None) -> int:
    """Run one service until SIGTERM/SIGINT; returns the process exit status."""
    service = config_cls.SERVICE
    loop_flag, argv = split_loop_flag(sys.argv[1:] if argv is None else argv)
    try:
        loop = choose_loop(loop_flag)
        config = load_config(config_cls, argv)
    except (ConfigError, ValueError) as exc:
        print(f"optivex {service.replace('_', '-')}: configuration error: {exc}", file=sys.stderr)
        return 2
    log = setup_logging(config.log_level, service)
    try:
        require_upb_backend()
        users = load_user_store(config.users_file, config.service_password)
        if not config.users_file and not config.service_password:
            log.warning("demo users without OPTIVEX_SERVICE_PASSWORD: no service can log in here")
    except (RuntimeError, UserStoreError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    clock = SystemClock()
    authenticator = Authenticator(users, clock, logger=log.getChild("auth"))
    try:
        if loop != "asyncio":
            log.info("event loop: %s", loop)
        return run_loop(_serve(factory(config, authenticator, clock), log), loop)
    except KeyboardInterrupt:  # pragma: no cover - signal handler normally wins
        return 0


async def _serve(app: ServiceApp, log: logging.Logger) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        host, port = await app.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        await app.stop()
        return 1
    log_listening(log, host, port)
    log_ready(log)
    await stop.wait()
    log.info("stopping (pid %d)", os.getpid())
    await app.stop()
    log.info("stopped")
    return 0
