"""The null relay and the load generator over real TCP (functional, not timed)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.relay import EchoConfig, RelayConfig, build_echo, build_relay
from clients.load import build_parser, child_argv, find_max
from clients.load_plan import Mix
from clients.load_run import LoadOptions, LoadRun
from services.common.pb import common_pb2, execution_pb2
from services.common.wire.client import UpstreamConnection
from tests.support.inprocess import make_config, start_app

MT = common_pb2.MessageType
REPO = Path(__file__).resolve().parents[2]


async def test_relay_forwards_orders_and_maps_answers_back(relay_port: int) -> None:
    conn = await UpstreamConnection.open("127.0.0.1", relay_port, "alice", "alice-demo")
    try:
        inserts = [
            conn.request(
                MT.EXECUTION_INSERT_ORDER_REQUEST,
                execution_pb2.InsertOrderRequest(
                    instrument_symbol="AAA", side=common_pb2.BUY, price=10.0, quantity=q
                ),
            )
            for q in (1, 2, 3)
        ]
        answers = await asyncio.wait_for(asyncio.gather(*inserts), 5)
        assert [a.resting_quantity for a in answers] == [1, 2, 3]
        assert len({a.order_id for a in answers}) == 3
        cancel = await asyncio.wait_for(
            conn.request(
                MT.EXECUTION_CANCEL_ORDER_REQUEST,
                execution_pb2.CancelOrderRequest(instrument_symbol="AAA", order_id=1),
            ),
            5,
        )
        assert cancel.cancelled_quantity == 1
        amend = await asyncio.wait_for(
            conn.request(
                MT.EXECUTION_AMEND_ORDER_REQUEST,
                execution_pb2.AmendOrderRequest(
                    instrument_symbol="AAA", order_id=2, price=10.0, quantity=7
                ),
            ),
            5,
        )
        assert amend.resting_quantity == 7
    finally:
        conn.close()


async def test_relay_refuses_a_service_login(relay_port: int) -> None:
    from services.common.wire.errors import RemoteError
    from tests.support.inprocess import SERVICE_PASSWORD

    with pytest.raises(RemoteError, match="may not log in"):
        await UpstreamConnection.open("127.0.0.1", relay_port, "service", SERVICE_PASSWORD)


async def test_load_run_counts_every_order_of_a_step(relay_port: int) -> None:
    options = LoadOptions(
        port=relay_port,
        info_port=0,
        symbols=["AAA", "BBB"],
        connections=3,
        mix=Mix(),
        seed=11,
    )
    run = LoadRun(options)
    await run.setup()
    try:
        step = await run.step(rate=2000, duration_s=0.25)
        again = await run.step(rate=1000, duration_s=0.1, count=40)
    finally:
        await run.close()
    assert step["scheduled"] == step["sent"] == step["completed"] == 500
    assert step["unanswered"] == 0 and step["failed"] == 0 and not step["overloaded"]
    assert sum(step["errors"].values()) == 0
    assert step["latency_us"]["count"] == 500
    assert sum(k["count"] for k in step["by_kind"].values() if k["count"]) == 500
    assert step["by_kind"]["cancel"]["count"] > 0 and step["by_kind"]["amend"]["count"] > 0
    assert step["achieved_rate"] > 0
    assert again["completed"] == 40


async def test_find_max_steps_up_then_bisects() -> None:
    ns = argparse.Namespace(
        start_rate=1000.0,
        factor=2.0,
        max_rate=1e6,
        refine=3,
        min_achieved=0.95,
        p99_limit_ms=10.0,
        max_error_ratio=0.2,
        retries=0,
        budget=0.0,
    )
    capacity = 5000.0
    asked: list[float] = []

    async def fake_step(rate: float) -> dict[str, Any]:
        asked.append(rate)
        ok = rate <= capacity
        return {
            "target_rate": rate,
            "achieved_rate": rate if ok else capacity,
            "latency_us": {"p99": 500 if ok else 50_000},
            "errors": {},
            "completed": 1,
            "unanswered": 0,
            "failed": 0,
        }

    async def no_pause() -> None:
        pass

    best, steps = await find_max(fake_step, ns, no_pause)
    assert asked[:4] == [1000.0, 2000.0, 4000.0, 8000.0]
    assert best is not None and 4000.0 <= best["target_rate"] <= capacity
    assert len(steps) == len(asked) <= 7

    asked.clear()
    ns.retries = 1
    best, steps = await find_max(fake_step, ns, no_pause)
    assert asked[:5] == [1000.0, 2000.0, 4000.0, 8000.0, 8000.0]  # a miss is tried twice


def test_child_argv_gives_each_child_its_share() -> None:
    argv = ["--port", "9", "--rate", "900", "--connections", "6", "--processes=3", "--json"]
    ns = build_parser().parse_args(argv)
    child = child_argv(ns, argv, 1, 900.0, 123.5)
    assert child[child.index("--rate") + 1] == "300.0"
    assert child[child.index("--connections") + 1] == "2"
    assert child[child.index("--subscribers") + 1] == "0"
    assert "--processes=3" not in child and "--child" in child
    assert child.count("--rate") == 1 and child.count("--json") == 1


async def test_cli_json_end_to_end_with_two_processes(relay_port: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.load",
        "--port", str(relay_port),
        "--info-port", "0",
        "--symbols", "AAA",
        "--rates", "400,800",
        "--duration", "0.25",
        "--processes", "2",
        "--connections", "2",
        "--pause", "0",
        "--json",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    document = json.loads(out)
    assert [s["target_rate"] for s in document["steps"]] == [400.0, 800.0]
    assert [s["completed"] for s in document["steps"]] == [100, 200]
    assert all(s["processes"] == 2 for s in document["steps"])
    assert "histograms" not in document["steps"][0]
    assert document["seed"] == 1


def test_cli_refuses_a_run_without_instruments(capsys: pytest.CaptureFixture[str]) -> None:
    from clients.load import main

    assert main(["--info-port", "0"]) == 2
    assert "--symbols" in capsys.readouterr().err


def test_relay_and_load_run_work_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport subclasses: the wire must not care."""
    from services.common.lifecycle import run_loop

    async def scenario() -> dict[str, Any]:
        echo, echo_port = await start_app(build_echo, make_config(EchoConfig))
        relay, port = await start_app(
            build_relay, make_config(RelayConfig, order_book_port=echo_port)
        )
        try:
            run = LoadRun(LoadOptions(port=port, info_port=0, symbols=["AAA"], connections=2))
            await run.setup()
            try:
                return await run.step(rate=1000, duration_s=0.1)
            finally:
                await run.close()
        finally:
            await relay.stop()
            await echo.stop()

    step = run_loop(scenario(), "uvloop")
    assert step["completed"] == 100 and step["unanswered"] == 0
