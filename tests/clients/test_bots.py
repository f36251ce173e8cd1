"""The sample bots against the real exchange: they trade with each other,
stop by themselves (order count, duration) or on SIGTERM with exit status 0,
leave no orders behind, and back off instead of crashing on risk limits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from typing import Any

from clients.sdk import Client, InstrumentLimits
from tests.clients.conftest import eventually, new_instrument
from tests.launcher.harness import ROOT, Exchange


class BotProcess:
    """``optivex bot ...`` as a subprocess, its log lines collected."""

    def __init__(
        self,
        exchange: Exchange | tuple[int, int],
        strategy: str,
        user: str,
        *args: str,
    ) -> None:
        if isinstance(exchange, Exchange):
            gateway_port, info_port = exchange.ports["risk-gateway"], exchange.ports["info"]
        else:
            gateway_port, info_port = exchange
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "bot",
                strategy,
                "--host",
                "127.0.0.1",
                "--gateway-port",
                str(gateway_port),
                "--info-port",
                str(info_port),
                "--username",
                user,
                "--password",
                f"{user}-demo",
                *args,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    async def wait(self, timeout: float = 20.0) -> int:
        try:
            return await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("bot did not stop:\n" + "\n".join(self.lines)) from None


def watcher(exchange: Exchange) -> Any:
    return Client.connect(
        gateway_port=None, info_port=exchange.ports["info"], username="dave", password="dave-demo"
    )


async def test_market_maker_and_noise_trade(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange, "BOT")
    async with watcher(exchange) as dave:
        top = dave.top_of_book(symbol)
        maker = BotProcess(
            exchange,
            "market-maker",
            "alice",
            symbol,
            "--rate",
            "40",
            "--duration",
            "3",
            "--seed",
            "1",
        )
        try:
            state = await top.get(10)
            while state.bid is None or state.ask is None:  # wait for the two-sided quote
                state = await top.get(10)
        except TimeoutError:
            maker.process.kill()
            raise AssertionError(
                "no quote from the market maker:\n" + "\n".join(maker.lines)
            ) from None
        noise = BotProcess(
            exchange, "noise", "bob", symbol, "--rate", "50", "--max-orders", "30", "--seed", "2"
        )
        assert await noise.wait() == 0, "\n".join(noise.lines)
        assert await maker.wait() == 0, "\n".join(maker.lines)
        quotes = await dave.quotes()
        assert quotes[symbol].volume > 0, "the bots never traded"
        assert noise.saw("noise stopped: Counters(orders=30")
        assert maker.saw("market-maker stopped")
        book = dave.depth(symbol, 0)
        final = await book.get(5)
        assert final.bids == () and final.asks == (), "bots left orders resting"


async def test_bot_backs_off_on_risk_limit_and_stops_on_sigterm(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange, "LIM")
    async with Client.connect(
        gateway_port=exchange.ports["risk-gateway"],
        info_port=exchange.ports["info"],
        username="carol",
        password="carol-demo",
    ) as carol:
        await carol.set_instrument_limits(symbol, InstrumentLimits(max_outstanding_quantity=10))
        try:
            bot = BotProcess(exchange, "noise", "carol", symbol, "--rate", "50", "--seed", "3")
            await eventually(
                lambda: bot.saw("risk limit max_outstanding_quantity hit"), 15, "a limit hit"
            )
            assert bot.process.poll() is None, "the bot died on a refused order"
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait(10) == 0, "\n".join(bot.lines)
            final = await carol.depth(symbol, 0).get(5)
            assert final.bids == () and final.asks == ()
        finally:
            await carol.set_instrument_limits(symbol, InstrumentLimits())
