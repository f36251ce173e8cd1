"""``optivex watch``: a live market-data viewer in the terminal (Textual).

Instruments on the left (last price and volume), the selected instrument's
depth ladder and trade tape on the right, a summary line on top.  Up/down or
j/k move between instruments, q quits.  It is a read-only Info client built
on the participant SDK, so it reconnects and resubscribes by itself when Info
restarts; the status line says when it is waiting.  Against an Info that speaks
TLS it needs ``--tls-ca-file`` (or ``--tls``); a TLS setting that does not match
Info's, a refused login or a port that is not Info ends it with the reason
(exit status 1) instead of a status line that retries forever.

What it shows is computed in :mod:`clients.watch_model`; this module paints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from ssl import SSLContext
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from clients.sdk import Client, Depth, EventStream, ExchangeError, SdkError, Trade
from clients.tls_args import add_tls_options, ssl_context, tls_mismatch
from clients.watch_model import LADDER_LEVELS, SymbolState, format_price, ladder_rows


class WatchApp(App[int]):
    """The viewer.  ``symbol`` is selected first when given (else the first listed).

    ``ssl``: a TLS context when Info speaks TLS.  :attr:`failure` says why the
    viewer gave up (exit status 1), when it did.
    """

    TITLE = "Optivex watch"
    CSS = """
    Screen { layout: vertical; }
    #status { height: 1; background: $boost; color: $text-muted; padding: 0 1; }
    #body { height: 1fr; }
    #instruments { width: 36; height: 1fr; border: round $primary; }
    #main { width: 1fr; }
    #summary { height: 3; border: round $secondary; padding: 0 1; }
    #panes { height: 1fr; }
    #ladder { width: 1fr; height: 1fr; border: round $success; }
    #tape { width: 1fr; height: 1fr; border: round $warning; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("j,down", "move(1)", "Next", key_display="j/down"),
        Binding("k,up", "move(-1)", "Previous", key_display="k/up"),
    ]

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7402,
        username: str = "alice",
        password: str = "alice-demo",
        symbol: str | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.ssl = ssl
        self.failure: str | None = None
        self.username, self.password = username, password
        self.wanted = symbol.upper() if symbol else None
        self.client: Client | None = None
        self.states: dict[str, SymbolState] = {}
        self.selected: str | None = None
        self._listed: list[str] = []

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        with Horizontal(id="body"):
            yield DataTable(id="instruments", cursor_type="row", zebra_stripes=True)
            with Vertical(id="main"):
                yield Static("", id="summary")
                with Horizontal(id="panes"):
                    yield DataTable(id="ladder", cursor_type="none")
                    yield DataTable(id="tape", cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        instruments = self.query_one("#instruments", DataTable)
        instruments.border_title = "Instruments"
        instruments.add_column("Symbol", key="symbol")
        instruments.add_column("Last", key="last")
        instruments.add_column("Volume", key="volume")
        ladder = self.query_one("#ladder", DataTable)
        ladder.border_title = "Depth"
        ladder.add_columns("Bid qty", "Bid", "Ask", "Ask qty")
        tape = self.query_one("#tape", DataTable)
        tape.border_title = "Trades"
        tape.add_columns("Time", "Price", "Qty", "Aggressor")
        for table in (ladder, tape):
            table.can_focus = False
        instruments.focus()
        self.run_worker(self._feed(), name="feed", group="feed")

    # ------------------------------------------------------------------ data

    async def _feed(self) -> None:
        status = self.query_one("#status", Static)
        delay = 0.2
        while self.client is None:
            try:
                self.client = await Client.connect(
                    self.host, None, self.port, self.username, self.password, ssl=self.ssl
                )
            except SdkError as exc:
                # A refused login (or a port that is not Info) is not fixed by
                # retrying either: say so and stop, like a TLS mismatch.
                refused = str(exc) if isinstance(exc, ExchangeError) else None
                reason = refused or await tls_mismatch([(self.host, self.port)], self.ssl)
                if reason:  # retrying cannot help: say what to change, and stop
                    self.failure = reason
                    self.exit(1, return_code=1)
                    return
                status.update(f"cannot reach Info at {self.host}:{self.port}: {exc}; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        client = self.client
        events = client.instrument_events()
        self._sync_instruments()
        await self._poll_quotes()
        while True:
            connected = client.connected
            where = f"Info {self.host}:{self.port} as {self.username}"
            status.update(
                f"{where}: live" if connected else f"{where}: connection lost, reconnecting..."
            )
            if events.drain():
                self._sync_instruments()
            if connected:
                with contextlib.suppress(SdkError, TimeoutError):
                    await self._poll_quotes()
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                event = await events.get(timeout=1.0)
                events.drain()
                del event
                self._sync_instruments()

    async def _poll_quotes(self) -> None:
        assert self.client is not None
        for symbol, quote in (await self.client.quotes()).items():
            state = self.states.get(symbol)
            if state is not None:
                state.on_quote(quote)
        self._paint_instruments()
        self._paint_summary()

    def _sync_instruments(self) -> None:
        """Rebuild the instrument list after instruments came or went."""
        assert self.client is not None
        listed = sorted(self.client.instruments)
        for symbol in listed:
            instrument = self.client.instruments[symbol]
            state = self.states.get(symbol)
            if state is None or state.instrument.order_book_id != instrument.order_book_id:
                self.states[symbol] = SymbolState(instrument)
        for symbol in set(self.states) - set(listed):
            del self.states[symbol]
        if listed == self._listed:
            return
        self._listed = listed
        table = self.query_one("#instruments", DataTable)
        keep = self.selected if self.selected in listed else None
        table.clear()
        for symbol in listed:
            name, last, volume = self._instrument_cells(symbol)
            table.add_row(name, _right(last), _right(volume), key=symbol)
        target = keep or (self.wanted if self.wanted in listed else None)
        if target is None and listed:
            target = listed[0]
        if target is not None:
            table.move_cursor(row=listed.index(target))
            self._select(target)
        else:
            self.selected = None
            self._paint_book()

    def _instrument_cells(self, symbol: str) -> tuple[str, str, str]:
        state = self.states[symbol]
        tick = state.instrument.tick_size
        return symbol, format_price(state.last_price, tick), f"{state.volume:,}"

    def _select(self, symbol: str) -> None:
        if symbol == self.selected:
            return
        self.selected = symbol
        self._paint_book()

        async def follow() -> None:  # a function, not a coroutine: it may never start
            await self._follow(symbol)

        self.run_worker(
            follow,  # type: ignore[arg-type]  # textual's stub infers Never here
            name=f"follow {symbol}",
            group="book",
            exclusive=True,
        )

    async def _follow(self, symbol: str) -> None:
        """Stream the selected instrument's depth and trades until another is selected."""
        assert self.client is not None
        async with (
            self.client.depth(symbol, LADDER_LEVELS) as depth,
            self.client.trades(symbol) as trades,
        ):
            await asyncio.gather(self._pump_depth(symbol, depth), self._pump_trades(symbol, trades))

    async def _pump_depth(self, symbol: str, stream: EventStream[Depth]) -> None:
        with contextlib.suppress(SdkError):
            async for book in stream:
                state = self.states.get(symbol)
                if state is not None:
                    state.depth = book
                if symbol == self.selected:
                    self._paint_book()

    async def _pump_trades(self, symbol: str, stream: EventStream[Trade]) -> None:
        with contextlib.suppress(SdkError):
            async for trade in stream:
                state = self.states.get(symbol)
                if state is not None:
                    state.on_trade(trade)
                if symbol == self.selected:
                    self._paint_book()
                    self._paint_instruments()

    # ------------------------------------------------------------------ painting

    def _paint_instruments(self) -> None:
        table = self.query_one("#instruments", DataTable)
        for symbol in self._listed:
            if symbol not in self.states:
                continue
            _, last, volume = self._instrument_cells(symbol)
            with contextlib.suppress(Exception):
                table.update_cell(symbol, "last", _right(last), update_width=True)
                table.update_cell(symbol, "volume", _right(volume), update_width=True)

    def _paint_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        state = self.states.get(self.selected or "")
        summary.update(state.summary() if state else "no instruments listed yet")

    def _paint_book(self) -> None:
        self._paint_summary()
        state = self.states.get(self.selected or "")
        ladder = self.query_one("#ladder", DataTable)
        tape = self.query_one("#tape", DataTable)
        ladder.clear()
        tape.clear()
        if state is None:
            return
        ladder.border_title = f"Depth {state.instrument.symbol}"
        for row in ladder_rows(state.depth, state.instrument.tick_size):
            ladder.add_row(*(_right(cell) for cell in row))
        tape.border_title = f"Trades {state.instrument.symbol}"
        for time_text, price, quantity, side in state.tape_rows():
            style = "green" if side == "BUY" else "red"
            tape.add_row(time_text, _right(price), _right(quantity), Text(side, style=style))

    # ------------------------------------------------------------------ input

    def action_move(self, step: int) -> None:
        if not self._listed:
            return
        table = self.query_one("#instruments", DataTable)
        row = max(0, min(len(self._listed) - 1, table.cursor_row + step))
        table.move_cursor(row=row)
        self._select(self._listed[row])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "instruments" and event.row_key.value in self.states:
            self._select(str(event.row_key.value))

    async def on_unmount(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 2)


def _right(text: str) -> Text:
    return Text(text, justify="right")


def build_app(argv: list[str]) -> WatchApp:
    """The viewer the command line asks for (``--help`` and usage errors exit here)."""
    parser = argparse.ArgumentParser(prog="optivex watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("symbol", nargs="?", help="instrument to show first")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7402, help="Info port (default 7402)")
    parser.add_argument("--username", default="alice")
    parser.add_argument("--password", default="alice-demo")
    add_tls_options(parser, "Info")
    options = parser.parse_args(argv)
    return WatchApp(
        options.host,
        options.port,
        options.username,
        options.password,
        options.symbol,
        ssl=ssl_context(options, parser),
    )


def main(argv: list[str] | None = None) -> int:
    app = build_app(list(sys.argv[1:] if argv is None else argv))
    result: Any = app.run()
    if app.failure:
        print(f"optivex watch: {app.failure}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
