"""The admin CLI end to end against running services (exit codes, JSON, bootstrap)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients import admin_cli
from clients.admin_cli_bootstrap import Progress, read_listings
from clients.admin_cli_common import UsageError
from clients.admin_cli_limits import parse_count, parse_rate
from tests.admin.conftest import Exchange, free_port
from tests.admin.fakes import FakeGateway

SAMPLE = admin_cli.SAMPLE_LISTINGS
SAMPLE_SYMBOLS = [
    "AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA",
    "TSLA", "NFLX", "INTC", "CSCO", "ADBE", "PEP",
]  # fmt: skip


class Cli:
    """Runs ``optivex admin`` in a worker thread (it has its own event loop)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], admin_port: int, gateway_port: int):
        self.capsys = capsys
        self.base = [
            "--host", "127.0.0.1",
            "--admin-port", str(admin_port),
            "--gateway-port", str(gateway_port),
            "--timeout", "10",
        ]  # fmt: skip

    async def __call__(
        self, *argv: str, env: dict[str, str] | None = None, stdin: str = ""
    ) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = await asyncio.to_thread(
            admin_cli.main, [*self.base, *argv], environ=env or {}, stdin=io.StringIO(stdin)
        )
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    async def json(self, *argv: str) -> Any:
        status, out, err = await self("--json", *argv)
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = FakeGateway()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def cli(running: Exchange, gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, running.admin_port, gateway.port)


async def test_create_list_clear_stats_delete_round_trip(cli: Cli, running: Exchange) -> None:
    status, out, err = await cli(
        "create", "AAPL", "--tick-size", "0.01", "--description", "Apple Inc.",
        "--price-rule", "spread-capture",
    )  # fmt: skip
    assert status == 0 and err == ""
    assert out.startswith("created AAPL: order book ")
    made = await cli.json("create", "MSFT", "--tick-size", "0.05")
    assert set(made) == {"symbol", "order_book_id", "created_timestamp"}
    assert made["symbol"] == "MSFT" and made["order_book_id"] > 0

    listed = await cli.json("list")
    assert [i["symbol"] for i in listed["instruments"]] == ["AAPL", "MSFT"]
    aapl = listed["instruments"][0]
    assert set(aapl) == {
        "symbol", "description", "currency", "multiplier", "tick_size",
        "price_rule", "order_book_id", "created_timestamp",
    }  # fmt: skip
    assert (aapl["description"], aapl["currency"], aapl["multiplier"]) == ("Apple Inc.", "USD", 1.0)
    assert (aapl["tick_size"], aapl["price_rule"]) == (0.01, "spread-capture")

    status, table, _ = await cli("list")
    assert status == 0
    header, first, second = table.splitlines()
    assert header.split() == [
        "SYMBOL", "BOOK", "TICK", "RULE", "CURRENCY", "MULT", "CREATED", "DESCRIPTION",
    ]  # fmt: skip
    assert first.startswith("AAPL") and "spread-capture" in first and "Apple Inc." in first
    assert second.split()[2] == "0.05"

    assert await cli.json("clear", "AAPL") == {"symbol": "AAPL", "cancelled_orders": 0}
    stats = await cli.json("stats")
    assert stats == {
        "exchange_profit": 0.0, "trade_count": 0, "traded_volume": 0, "resting_orders": 0,
    }  # fmt: skip
    status, out, _ = await cli("delete", "AAPL")
    assert (status, out) == (0, "deleted AAPL\n")
    assert await cli.json("delete", "MSFT") == {"symbol": "MSFT", "deleted": True}
    status, out, _ = await cli("list")
    assert out == "no instruments\n"


async def test_refusals_exit_1_with_one_line_on_stderr(cli: Cli) -> None:
    assert (await cli("create", "AAPL", "--tick-size", "0.01"))[0] == 0
    status, out, err = await cli("--json", "create", "AAPL", "--tick-size", "0.01")
    assert (status, out) == (1, "")
    assert err == "optivex admin: refused: instrument 'AAPL' already exists\n"
    status, _, err = await cli("create", "BAD", "--tick-size", "0")
    assert status == 1 and "tick_size" in err and err.count("\n") == 1
    status, _, err = await cli("delete", "NOPE")
    assert (status, err) == (1, "optivex admin: refused: unknown instrument 'NOPE'\n")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["create", "AAPL"],
        ["create", "AAPL", "--tick-size", "abc"],
        ["create", "AAPL", "--tick-size", "1", "--price-rule", "cheap"],
        ["frobnicate"],
        ["limits", "set", "--user", "alice"],
        ["limits", "set", "--user", "alice", "--message-rate", "10"],
        ["limits", "set-instrument", "bad symbol", "--user", "alice", "--order-quantity", "1/1"],
        ["bootstrap", "/nonexistent/listings.csv"],
        ["--timeout", "0", "list"],
    ],
)
async def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    status, out, err = await cli(*argv)
    assert status == 2 and out == ""
    assert err.startswith("optivex admin: ") and err.count("\n") == 1


async def test_connection_problems_exit_3(
    cli: Cli, running: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = Cli(capsys, free_port(), free_port())
    status, _, err = await nowhere("list")
    assert status == 3 and "cannot connect to admin service" in err and "refused" in err
    status, _, err = await cli("--password-stdin", "list", stdin="wrong\n")
    assert (status, err.strip()) == (
        3,
        f"optivex admin: login to admin service at 127.0.0.1:{running.admin_port} refused: "
        "invalid username or password",
    )
    status, _, err = await cli("list", env={"OPTIVEX_ADMIN_PASSWORD": "nope"})
    assert status == 3 and "invalid username or password" in err
    status, _, _ = await cli("--password-stdin", "list", stdin="admin-demo\n")
    assert status == 0
    status, _, err = await cli("--username", "alice", "list", stdin="alice-demo\n")
    assert status == 3  # the demo default is admin's password, and alice is no admin


async def test_options_after_the_command_and_config_layers(
    cli: Cli, running: Exchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = await cli("list", "--json")
    assert status == 0 and json.loads(out) == {"instruments": []}
    config = tmp_path / "exchange.toml"
    config.write_text(f"[admin]\nport = {running.admin_port}\n")
    bare = Cli(capsys, 0, 0)
    bare.base = []
    status, out, err = await bare("--config", str(config), "--json", "list")
    assert status == 0, err
    status, out, err = await bare(
        "--json", "list", env={"OPTIVEX_ADMIN_PORT": str(running.admin_port)}
    )
    assert status == 0, err
    status, _, err = await bare("list", env={"OPTIVEX_ADMIN_PORT": "abc"})
    assert status == 2 and "OPTIVEX_ADMIN_PORT" in err


async def test_bootstrap_sample_then_again(cli: Cli, running: Exchange) -> None:
    status, _, err = await cli("bootstrap", str(SAMPLE))
    assert status == 0, err
    assert "bootstrap: 12 created, 0 existing, 0 skipped, 0 failed" in err
    assert sorted(running.info.instruments) == sorted(SAMPLE_SYMBOLS)
    assert running.info.instruments["AAPL"].instrument.description == "Apple Inc."
    assert running.info.instruments["AAPL"].instrument.currency == "USD"
    assert running.info.instruments["AAPL"].tick_size == 0.01
    report = await cli.json("bootstrap", str(SAMPLE))
    assert report["counts"] == {"created": 0, "existing": 12, "skipped": 0, "failed": 0}
    assert sorted(report["existing"]) == sorted(SAMPLE_SYMBOLS)


async def test_bootstrap_skips_invalid_and_reports_failures(
    cli: Cli, running: Exchange, tmp_path: Path
) -> None:
    listings = tmp_path / "listings.csv"
    listings.write_text(
        "\ufeffSymbol,Company Name,Security Name,Market Category\n"
        'ABC,"ABC Holdings, Inc.",Common Stock,Q\n'
        "BRK/B,Berkshire,Class B,N\n"
        "lower,Lower Case Corp,Common,Q\n"
        "ABC,Again,Common,Q\n"
        ",,,\n"
        "XYZ,XYZ Corp,Common,Q\n",
        encoding="utf-8",
    )
    assert (await cli("create", "XYZ", "--tick-size", "0.01"))[0] == 0
    report = await cli.json("bootstrap", str(listings), "--tick-size", "0.05")
    assert report["created"][0]["symbol"] == "ABC"
    assert report["existing"] == ["XYZ"]
    assert [(s["symbol"], s["line"]) for s in report["skipped"]] == [
        ("BRK/B", 3), ("lower", 4), ("ABC", 5),
    ]  # fmt: skip
    assert running.info.instruments["ABC"].instrument.description == "ABC Holdings, Inc."
    assert running.info.instruments["ABC"].tick_size == 0.05

    running.info.mode = "refuse"
    more = tmp_path / "more.csv"
    more.write_text("Symbol,Company Name\nNEW1,One\nNEW2,Two\n")
    status, out, err = await cli("--json", "bootstrap", str(more))
    assert status == 1
    document = json.loads(out)
    assert [f["symbol"] for f in document["failed"]] == ["NEW1", "NEW2"]
    assert "failed NEW1: info refused: refused by the fake" in err


async def test_bootstrap_of_a_file_that_is_no_listing(cli: Cli, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Ticker,Name\nAAPL,Apple\n")
    status, _, err = await cli("bootstrap", str(wrong))
    assert status == 2 and "no 'Symbol', 'Company Name' column" in err


async def test_limits_get_and_merge_set(cli: Cli, gateway: FakeGateway) -> None:
    empty = await cli.json("limits", "get", "--user", "alice")
    assert empty["user"] == "alice"
    assert empty["user_limits"]["admin"] == {
        "max_outstanding_quantity": 0,
        "message_rate_rolling_limit": {"limit": 0, "window_in_seconds": 0},
    }
    assert empty["instrument_limits"] == {"own": {}, "admin": {}}
    status, out, _ = await cli("limits", "set", "--user", "alice", "--message-rate", "100/1s")
    assert status == 0
    assert out == (
        "admin limits of alice: max_outstanding_quantity none, message_rate_rolling_limit 100/1s\n"
    )
    await cli.json("limits", "set", "--user", "alice", "--max-outstanding-quantity", "500")
    admin_layer = gateway.admin_user["alice"]
    assert admin_layer.max_outstanding_quantity == 500  # kept the rate set before
    assert admin_layer.message_rate_rolling_limit.limit == 100
    assert admin_layer.message_rate_rolling_limit.window_in_seconds == 1

    result = await cli.json(
        "limits", "set-instrument", "AAPL", "--user", "alice",
        "--order-amount", "5000/60", "--max-outstanding-amount", "1e5",
    )  # fmt: skip
    assert result["admin"]["order_amount_rolling_limit"] == {"limit": 5000, "window_in_seconds": 60}
    await cli.json(
        "limits", "set-instrument", "AAPL", "--user", "alice", "--order-quantity", "10/1"
    )
    aapl = gateway.admin_instrument["alice"]["AAPL"]
    assert aapl.max_outstanding_amount == 1e5 and aapl.order_amount_rolling_limit.limit == 5000
    assert aapl.order_quantity_rolling_limit.limit == 10

    status, table, _ = await cli("limits", "get", "--user", "alice")
    assert status == 0
    lines = table.splitlines()
    assert lines[0] == "user limits of alice"
    assert lines[2].split() == ["max_outstanding_quantity", "none", "500"]
    assert lines[3].split() == ["message_rate_rolling_limit", "none", "100/1s"]
    assert lines[-1].split() == ["AAPL", "admin", "none", "100000", "10/1s", "5000/60s"]

    # 'none' removes limits; an all-zero entry disappears.
    await cli.json(
        "limits", "set-instrument", "AAPL", "--user", "alice", "--order-amount", "none",
        "--order-quantity", "0", "--max-outstanding-amount", "none",
    )  # fmt: skip
    assert "AAPL" not in gateway.admin_instrument["alice"]
    own = await cli.json("limits", "get")
    assert own["user"] == "admin"


async def test_cli_as_a_process_like_the_launcher_runs_it(running: Exchange) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "admin",
        "--host", "127.0.0.1", "--admin-port", str(running.admin_port),
        "bootstrap", str(SAMPLE),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().count("created ") == 12
    assert len(running.info.instruments) == 12


# ------------------------------------------------------------------ pure helpers


def test_parse_rate_and_count() -> None:
    assert parse_rate("100/1") == (100, 1)
    assert parse_rate("100/60s") == (100, 60)
    assert parse_rate("5000.0/60") == (5000, 60)
    assert parse_rate("none") == (0, 0)
    assert parse_count("none") == 0 and parse_count("12") == 12
    import argparse

    for bad in ("100", "1.5/1", "x/1", "1/x", "-1/1", f"{2**31}/1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_rate(bad)
    for bad in ("-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_count(bad)


def test_progress_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(200, stream)
    for _ in range(200):
        progress.advance()
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "bootstrap: 20/200" and lines[-1] == "bootstrap: 200/200"
    assert len(lines) == 10
    quiet = io.StringIO()
    small = Progress(12, quiet)
    for _ in range(12):
        small.advance()
    assert quiet.getvalue() == ""


def test_read_listings_sample_file() -> None:
    rows = read_listings(SAMPLE)
    assert [r.symbol for r in rows] == SAMPLE_SYMBOLS
    assert rows[0].name == "Apple Inc." and rows[0].line == 2


def test_read_listings_refuses_non_csv(tmp_path: Path) -> None:
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UsageError):
        read_listings(binary)
