"""The market-data viewer, headless (Textual's pilot) against the real exchange:
it lists the instruments, shows the selected one's depth and trades as they
happen, moves with j/k, and quits with q.  A screenshot (SVG) is saved in the
test's tmp dir and checked for the symbol and prices."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from clients.sdk import Client
from clients.sdk.types import Depth, Level
from clients.watch import WatchApp
from clients.watch_model import decimals_for, format_price, ladder_rows
from tests.clients.conftest import new_instrument
from tests.launcher.harness import Exchange


def screen_text(svg: str) -> str:
    """The visible characters of a Textual SVG screenshot, spaces normalised."""
    text = html.unescape(re.sub(r"<[^>]+>", "", svg))
    return text.replace("\xa0", " ")


def test_formatting() -> None:
    assert [decimals_for(t) for t in (0.01, 0.5, 1.0, 1e-5, 25.0)] == [2, 1, 0, 5, 0]
    assert format_price(1234.5, 0.01) == "1,234.50" and format_price(None, 0.01) == "-"
    depth = Depth("X", (Level(10.0, 5), Level(9.5, 1)), (Level(10.5, 2),))
    assert ladder_rows(depth, 0.5) == [("5", "10.0", "10.5", "2"), ("1", "9.5", "", "")]
    assert ladder_rows(None, 0.5) == []


async def test_viewer_shows_live_market(exchange: Exchange, tmp_path: Path) -> None:
    first = await new_instrument(exchange, "WA")
    symbol = await new_instrument(exchange, "WB")
    async with Client.connect(
        gateway_port=exchange.ports["risk-gateway"],
        info_port=exchange.ports["info"],
        username="bob",
        password="bob-demo",
    ) as bob:
        await bob.buy(symbol, 123.45, 7)
        await bob.sell(symbol, 123.55, 3)
        app = WatchApp("127.0.0.1", exchange.ports["info"], "alice", "alice-demo", symbol)
        async with app.run_test(size=(150, 40)) as pilot:

            async def until(condition: Callable[[], bool], what: str) -> None:
                for _ in range(400):
                    if condition():
                        return
                    await pilot.pause(0.025)
                raise AssertionError(f"viewer never showed {what}")

            await until(lambda: app.selected == symbol, "the wanted symbol selected")
            await until(
                lambda: (
                    (s := app.states.get(symbol)) is not None
                    and s.depth is not None
                    and len(s.depth.bids) == 1
                ),
                "the book",
            )
            await bob.sell(symbol, 123.45, 2)  # a trade while watching
            await until(lambda: bool(app.states[symbol].tape), "the trade")
            await until(lambda: app.states[symbol].volume == 2, "the volume")
            await pilot.pause(0.1)
            svg_path = Path(app.save_screenshot(path=str(tmp_path), filename="watch.svg"))
            text = screen_text(svg_path.read_text())
            for expected in (symbol, first, "123.45", "123.55", "Trades", "Depth", "SELL"):
                assert expected in text, f"{expected!r} not on screen"
            assert "last 123.45 x 2" in text

            await pilot.press("k")
            await until(lambda: app.selected != symbol, "k to move up")
            await pilot.press("j")
            await until(lambda: app.selected == symbol, "j to move down")
            await pilot.press("q")
        assert app.return_code in (0, None)
        await bob.cancel_all()
