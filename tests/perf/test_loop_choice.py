"""The ``--loop`` flag and ``OPTIVEX_LOOP`` honoured by every service (lifecycle.run_service)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.lifecycle import choose_loop, run_loop, split_loop_flag


def test_split_loop_flag_takes_both_spellings_out() -> None:
    assert split_loop_flag(["--port", "0", "--loop", "uvloop", "--quiet"]) == (
        "uvloop",
        ["--port", "0", "--quiet"],
    )
    assert split_loop_flag(["--loop=asyncio"]) == ("asyncio", [])
    assert split_loop_flag(["--port", "7"]) == (None, ["--port", "7"])


def test_choose_loop_prefers_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTIVEX_LOOP", raising=False)
    assert choose_loop(None) == "asyncio"
    monkeypatch.setenv("OPTIVEX_LOOP", "uvloop")
    assert choose_loop(None) == "uvloop"
    assert choose_loop("asyncio") == "asyncio"


def test_choose_loop_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown event loop"):
        choose_loop("twisted")


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_run_loop_runs_a_coroutine_on_the_chosen_loop(name: str) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = run_loop(which(), name)
    assert ("uvloop" in module) == (name == "uvloop")
