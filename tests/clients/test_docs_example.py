"""The ten-line example of docs/sdk.md runs as written against a real exchange
(only the ports and the symbol are substituted) and prints what the doc says."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

from tests.clients.conftest import new_instrument
from tests.launcher.harness import ROOT, Exchange


def first_python_block(path: Path) -> str:
    match = re.search(r"```python\n(.*?)```", path.read_text(), re.S)
    assert match, f"no python example in {path}"
    return match.group(1)


def test_readme_shows_the_same_example() -> None:
    """The README's quick start is the example tested below, character for character."""
    assert first_python_block(ROOT / "README.md") == first_python_block(ROOT / "docs" / "sdk.md")


async def test_ten_line_example_runs(exchange: Exchange) -> None:
    symbol = await new_instrument(exchange, "DOC")
    code = first_python_block(ROOT / "docs" / "sdk.md")
    ports = f"gateway_port={exchange.ports['risk-gateway']}, info_port={exchange.ports['info']}, "
    code = code.replace("Client.connect(", f"Client.connect({ports}").replace(
        '"AAPL"', repr(symbol)
    )

    def run() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/sdk.md", "exec"), {"__name__": "__main__"})
        return out.getvalue()

    printed = await asyncio.to_thread(run)
    assert re.fullmatch(r"\d+ 4 100\.5 6\n", printed), printed
    # It cleans up after itself: a second run trades with its own new order again
    # (a leftover bid at the same price would have time priority and take the fill).
    again = await asyncio.to_thread(run)
    assert re.fullmatch(r"\d+ 4 100\.5 6\n", again) and again != printed, again
