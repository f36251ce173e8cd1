"""``optivex bot market-maker|noise``: run a sample bot until stopped.

Stops cleanly (exit 0, its resting orders cancelled) on SIGINT/SIGTERM, after
``--max-orders`` inserts or ``--duration`` seconds.  If the exchange is not up
yet, or restarts, the bot waits and carries on; a wrong password, or a TLS
setting that does not match the ports (see ``--tls``), exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from ssl import SSLContext

from clients.bots.base import Settings
from clients.bots.strategies import STRATEGIES
from clients.sdk import Client, Disconnected, LoginFailed
from clients.tls_args import add_tls_options, ssl_context, tls_mismatch

log = logging.getLogger("optivex.bot")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="optivex bot", description=__doc__.split("\n\n")[0])
    parser.add_argument("strategy", choices=sorted(STRATEGIES))
    parser.add_argument(
        "symbols", nargs="*", metavar="SYMBOL", help="instruments to trade (default: a few listed)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--gateway-port", type=int, default=7404)
    parser.add_argument("--info-port", type=int, default=7402)
    parser.add_argument("--username", default="alice")
    parser.add_argument("--password", default="alice-demo")
    parser.add_argument("--rate", type=float, default=5.0, help="steps per second (default 5)")
    parser.add_argument("--seed", type=int, help="random seed (default: random, logged)")
    parser.add_argument("--max-orders", type=int, default=0, help="stop after N inserts")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds")
    parser.add_argument("--log-level", default="INFO")
    add_tls_options(parser)
    options = parser.parse_intermixed_args(argv)  # symbols may come after the options
    if options.rate <= 0:
        parser.error("--rate must be > 0")
    options.ssl = ssl_context(options, parser)
    return options


class TlsMismatch(Exception):
    """The ports' TLS setting and the bot's differ: retrying cannot help."""


async def connect(options: argparse.Namespace, stop: asyncio.Event) -> Client | None:
    """Connect, retrying while the exchange is not reachable (it may be starting).

    Raises :class:`TlsMismatch` when the failure is a TLS setting that does not
    match the ports': without that check a plain bot at a TLS port (which
    drops it without a word) would wait forever for an exchange that is up.
    """
    context: SSLContext | None = options.ssl
    delay = 0.1
    warned = False
    while not stop.is_set():
        try:
            return await Client.connect(
                options.host,
                options.gateway_port,
                options.info_port,
                options.username,
                options.password,
                ssl=context,
            )
        except Disconnected as exc:
            ports = [(options.host, options.gateway_port), (options.host, options.info_port)]
            reason = await tls_mismatch(ports, context)
            if reason:
                raise TlsMismatch(reason) from None
            if not warned:
                log.warning("%s; retrying until it is up", exc)
                warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 2.0)
    return None


async def run(options: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        client = await connect(options, stop)
    except LoginFailed as exc:
        log.error("cannot log in: %s", exc.message)
        return 1
    except TlsMismatch as exc:
        log.error("cannot connect: %s", exc)
        return 1
    if client is None:
        return 0
    settings = Settings(
        symbols=[s.upper() for s in options.symbols],
        rate=options.rate,
        seed=options.seed,
        max_orders=options.max_orders,
        duration=options.duration,
    )
    bot = STRATEGIES[options.strategy](client, settings, stop)
    try:
        await bot.run()
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(run(options))


if __name__ == "__main__":
    raise SystemExit(main())
