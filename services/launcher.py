"""``optivex up`` / ``make run``: the whole exchange from one command.

Starts Order Book, Info, Admin and Risk Gateway as separate processes, in that
order, each only after the previous one has logged its ``ready`` line (so every
upstream connection succeeds first time), then bootstraps the sample
instruments, prints where everything listens and how to try it, and supervises:
Ctrl-C or SIGTERM stops all four cleanly (reverse order); if one dies, the
others are stopped and the reason is printed.

Ports: the demo uses 7401-7404 on 127.0.0.1.  ``--ports auto`` binds every
service to port 0 and reads the bound port from its ``listening on`` line, which
is how the test suites run many exchanges side by side.

TLS: when the configuration (``--config`` or ``OPTIVEX_...`` variables, read
the way the services read them) puts Info and the Risk Gateway on TLS, the bots
of ``--with-bots`` are started with ``--tls-ca-file`` naming the services' own
certificate files, the natural trust anchor of a local (self-signed) setup, and
the printed ``optivex watch`` line carries it too.  The bots take one TLS
setting for both ports, so ``--with-bots`` refuses a configuration with only
one of the two on TLS before starting anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.common.config import ConfigError, InfoConfig, RiskGatewayConfig, load_config
from services.common.users import generate_service_password

LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
READY = re.compile(r"\bready\s*$")
SAMPLE_LISTINGS = (
    Path(__file__).resolve().parent.parent / "clients" / "data" / "sample-listings.csv"
)

DEMO_LOGINS = (
    ("admin", "admin-demo", "admin"),
    ("alice", "alice-demo", "participant"),
    ("bob", "bob-demo", "participant"),
    ("carol", "carol-demo", "participant"),
    ("dave", "dave-demo", "participant"),
)
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""Where a local client reaches a service bound to every address: a certificate
names 127.0.0.1 or localhost, never the wildcard."""


@dataclass
class Child:
    """One supervised service process."""

    name: str
    module: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    host: str = ""
    port: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))


SERVICES = (
    ("order-book", "services.order_book", "order_book"),
    ("info", "services.info", "info"),
    ("admin", "services.admin", "admin"),
    ("risk-gateway", "services.risk_gateway", "risk_gateway"),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="optivex up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="TOML configuration for all services (default: demo)")
    parser.add_argument("--data-dir", default="./var", help="where journals and state live")
    parser.add_argument("--host", default="127.0.0.1", help="address every service binds")
    parser.add_argument(
        "--ports",
        default="7401,7402,7403,7404",
        help="order-book,info,admin,risk-gateway ports, or 'auto' for free ports",
    )
    parser.add_argument("--with-bots", type=int, default=0, metavar="N", help="start N sample bots")
    parser.add_argument(
        "--listings",
        default=str(SAMPLE_LISTINGS),
        help="listings CSV to bootstrap (nasdaq-listings format); 'none' to skip",
    )
    parser.add_argument(
        "--ready-file", help="write the bound addresses as JSON here once everything is ready"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--quiet", action="store_true", help="do not echo service logs")
    return parser.parse_args(argv)


class Launcher:
    """Starts, watches and stops the four service processes."""

    def __init__(self, options: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.children: list[Child] = []
        self.stopping = False
        self.failure: str | None = None
        self.env = dict(os.environ)
        self.env.setdefault("OPTIVEX_SERVICE_PASSWORD", generate_service_password())
        self.env["PYTHONUNBUFFERED"] = "1"
        self.bots: list[asyncio.subprocess.Process] = []
        self._pumps: list[asyncio.Future[None]] = []
        self.client_tls: list[str] = []
        """TLS options for clients of Info and the Gateway (see :meth:`participant_tls`)."""
        self.info_tls: list[str] = []
        """The same for a client of Info alone (the printed ``optivex watch`` line)."""

    def participant_tls(self) -> tuple[str, str]:
        """The certificate files of the Risk Gateway and Info ("" for plain TCP).

        Read from the same layers the services read (``--config``, else
        ``OPTIVEX_CONFIG``, then the environment the launcher passes on), so
        the bots follow the services' configuration.  A configuration the
        services will refuse counts as plain TCP: the failing service reports
        the problem itself.
        """
        argv = ["--config", self.options.config] if self.options.config else []
        try:
            gateway = load_config(RiskGatewayConfig, argv, environ=self.env)
            info = load_config(InfoConfig, argv, environ=self.env)
        except ConfigError:
            return "", ""
        return gateway.tls_cert_file, info.tls_cert_file

    def plan_client_tls(self) -> None:
        """Set :attr:`client_tls` and :attr:`info_tls` from the services' configuration.

        Raises :class:`_StartFailed` when bots are wanted and only one of the
        two ports speaks TLS: a bot has one TLS setting for both.
        """
        gateway_cert, info_cert = self.participant_tls()
        self.info_tls = bot_tls_argv("", info_cert)
        if bool(gateway_cert) != bool(info_cert) and self.options.with_bots > 0:
            on, off = ("the Risk Gateway", "Info") if gateway_cert else ("Info", "the Risk Gateway")
            raise _StartFailed(
                f"--with-bots: {on} speaks TLS and {off} does not; the bots take one "
                "TLS setting for both, so configure both with tls_cert_file/tls_key_file "
                "or neither"
            )
        self.client_tls = bot_tls_argv(gateway_cert, info_cert)

    def _ports(self) -> list[int]:
        if self.options.ports == "auto":
            return [0, 0, 0, 0]
        ports = [int(p) for p in self.options.ports.split(",")]
        if len(ports) != 4:
            raise SystemExit("optivex up: --ports takes four comma-separated numbers or 'auto'")
        return ports

    def _args(self, index: int, ports: list[int]) -> list[str]:
        o = self.options
        _, _, data_name = SERVICES[index]
        args = ["--host", o.host, "--port", str(ports[index]), "--log-level", o.log_level]
        args += ["--data-dir", str(Path(o.data_dir) / data_name)]
        if o.config:
            args += ["--config", o.config]
        book = self.children[0] if self.children else None
        if index >= 1 and book is not None:
            args += ["--order-book-host", book.host, "--order-book-port", str(book.port)]
        if index >= 2:
            info = self.children[1]
            args += ["--info-host", info.host, "--info-port", str(info.port)]
        return args

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        ports = self._ports()
        try:
            self.plan_client_tls()
        except _StartFailed as exc:
            print(f"optivex up: {exc}", file=sys.stderr)
            return 2
        started = time.perf_counter()
        try:
            for index, (name, module, _) in enumerate(SERVICES):
                child = Child(name, module, self._args(index, ports))
                self.children.append(child)
                await self._start(child)
            if self.options.listings != "none":
                await self._bootstrap()
            await self._start_bots()
        except _StartFailed as exc:
            self.failure = str(exc)
        if self.failure is None:
            self._announce(time.perf_counter() - started)
            waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
            waiters += [asyncio.ensure_future(c.process.wait()) for c in self.children if c.process]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            dead = [c for c in self.children if c.process and c.process.returncode is not None]
            if dead and not stop.is_set():
                child = dead[0]
                self.failure = f"{child.name} exited with status {child.process.returncode}"  # type: ignore[union-attr]
        await self.shutdown()
        if self.failure:
            print(f"\noptivex up: {self.failure}; stopped the others.", file=sys.stderr)
            for child in self.children:
                if child.tail and child.process and child.process.returncode not in (0, None):
                    print(f"--- last lines of {child.name} ---", file=sys.stderr)
                    print("\n".join(child.tail), file=sys.stderr)
            return 1
        print("optivex up: all services stopped cleanly.", file=self.out)
        return 0

    async def _start(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            child.module,
            *child.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        self._pumps.append(asyncio.ensure_future(self._pump(child)))
        ready = asyncio.ensure_future(child.ready.wait())
        died = asyncio.ensure_future(child.process.wait())
        done, _ = await asyncio.wait({ready, died}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        died.cancel()
        if not child.ready.is_set():
            reason = "did not become ready within 60 s" if not done else "exited during start-up"
            raise _StartFailed(f"{child.name} {reason}")

    async def _pump(self, child: Child) -> None:
        """Echo a child's log lines (prefixed) and watch for listening/ready."""
        assert child.process is not None and child.process.stderr is not None
        stream = child.process.stderr
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            child.tail.append(line)
            if not child.ready.is_set():
                match = LISTENING.search(line)
                if match:
                    child.host, child.port = match.group(1), int(match.group(2))
                elif READY.search(line) and child.port:
                    child.ready.set()
            if not self.options.quiet:
                print(f"[{child.name:>12}] {line}", file=sys.stderr)

    async def _bootstrap(self) -> None:
        admin = self.children[2]
        listings = self.options.listings
        if not Path(listings).exists():
            print(
                f"optivex up: no listings file at {listings}; nothing bootstrapped", file=sys.stderr
            )
            return
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "admin",
            "--host",
            admin.host,
            "--admin-port",
            str(admin.port),
            "bootstrap",
            listings,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        status = await process.wait()
        if status not in (0, 1):
            raise _StartFailed(f"bootstrap of {listings} failed with status {status}")

    async def _start_bots(self) -> None:
        count = self.options.with_bots
        if count <= 0:
            return
        gateway, info = self.children[3], self.children[1]
        for i in range(count):
            process = await asyncio.create_subprocess_exec(
                *bot_argv(i, gateway.host, gateway.port, info.port, self.client_tls),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL if self.options.quiet else None,
                start_new_session=True,
            )
            self.bots.append(process)

    def _announce(self, seconds: float) -> None:
        c = {child.name: child for child in self.children}
        lines = [
            "",
            f"Optivex is up ({seconds:.1f} s). Services:",
            *(f"  {name:<13} {child.host}:{child.port}" for name, child in c.items()),
            "",
            "Demo logins (never use in production):",
            *(f"  {user:<6} / {password:<11} ({role})" for user, password, role in DEMO_LOGINS),
            "",
            "Try next, in another terminal:",
            " ".join(
                [
                    f"  .venv/bin/optivex watch --host {client_host(c['info'].host)}",
                    f"--port {c['info'].port}",
                    *self.info_tls,
                ]
            ),
            f"  .venv/bin/optivex admin --host {c['admin'].host} --admin-port {c['admin'].port} list",
            "",
            "Ctrl-C stops everything.",
        ]
        print("\n".join(lines), file=self.out, flush=True)
        if self.options.ready_file:
            info: dict[str, dict[str, object]] = {
                name: {"host": child.host, "port": child.port} for name, child in c.items()
            }
            info["service_password"] = {"value": self.env["OPTIVEX_SERVICE_PASSWORD"]}
            # It holds the service password: readable by its owner only.
            tmp = Path(self.options.ready_file + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(info, indent=2))
            tmp.replace(self.options.ready_file)

    async def shutdown(self) -> None:
        """Stop bots, then services in reverse start order (SIGTERM, then SIGKILL)."""
        self.stopping = True
        for bot in self.bots:
            with contextlib.suppress(ProcessLookupError):
                bot.terminate()
        for bot in self.bots:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bot.wait(), 5)
        for child in reversed(self.children):
            process = child.process
            if process is None or process.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                print(f"optivex up: {child.name} did not stop in 15 s; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            if process.returncode not in (0, None) and self.failure is None:
                self.failure = f"{child.name} stopped with status {process.returncode}"


class _StartFailed(Exception):
    pass


def client_host(host: str) -> str:
    """The address a client on this machine uses for a service bound to ``host``."""
    return WILDCARDS.get(host, host)


def bot_tls_argv(gateway_cert: str, info_cert: str) -> list[str]:
    """A bot's TLS options for services with these certificate files ("" = plain TCP).

    The services' own certificates are the trust anchors: right for the
    self-signed certificate of a local exchange, and (each certificate being
    trusted by itself, see :func:`clients.tls_args.ssl_context`) for one a CA
    issued.  Paths are made absolute so they do not depend on a working directory.
    (The option is ``clients/tls_args.py``'s; the services do not import the clients.)
    """
    files = [str(Path(cert).absolute()) for cert in (gateway_cert, info_cert) if cert]
    return [arg for name in dict.fromkeys(files) for arg in ("--tls-ca-file", name)]


def bot_argv(index: int, host: str, gateway_port: int, info_port: int, tls: list[str]) -> list[str]:
    """The command line of sample bot ``index``: market makers and noise traders
    alternate, as the demo participants in turn, with the services' TLS options."""
    users = [name for name, _, role in DEMO_LOGINS if role == "participant"]
    kind = "market-maker" if index % 2 == 0 else "noise"
    user = users[index % len(users)]
    return [
        sys.executable,
        "-m",
        "services.cli",
        "bot",
        kind,
        "--host",
        client_host(host),
        "--gateway-port",
        str(gateway_port),
        "--info-port",
        str(info_port),
        "--username",
        user,
        "--password",
        f"{user}-demo",
        *tls,
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``optivex up``."""
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    return asyncio.run(Launcher(options).run())


if __name__ == "__main__":
    raise SystemExit(main())
