"""Pure parts of the SDK: value parsing, error classification, the order
tracker (property-tested against a naive model) and event streams."""

from __future__ import annotations

import ast
import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.sdk.errors import (
    LIMIT_NAMES,
    OrderRejected,
    RiskLimitExceeded,
    limit_named_in,
    order_error,
)
from clients.sdk.orders import OrderTracker
from clients.sdk.streams import Fanout
from clients.sdk.types import (
    AmendResult,
    Cancel,
    CancelResult,
    Depth,
    Fill,
    Level,
    OrderResult,
    Side,
    TimeInForce,
)

PURE = ("types.py", "errors.py", "orders.py")
SDK = Path(__file__).resolve().parents[2] / "clients" / "sdk"


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io_or_protobuf(name: str) -> None:
    tree = ast.parse((SDK / name).read_text())
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    banned = {m for m in modules if m.split(".")[0] in {"asyncio", "google", "socket", "services"}}
    assert not banned, f"{name} imports {banned}"


def test_side_and_tif_parsing() -> None:
    assert Side.parse("BUY") is Side.BUY and Side.parse("s") is Side.SELL
    assert str(Side.BUY) == "buy" and Side.BUY.opposite is Side.SELL
    assert TimeInForce.parse("IOC") is TimeInForce.IOC
    assert TimeInForce.parse("fill_or_kill") is TimeInForce.FOK
    for bad in ("", "hold", "bu"):
        with pytest.raises(ValueError):
            Side.parse(bad)
    with pytest.raises(ValueError):
        TimeInForce.parse("day")


@pytest.mark.parametrize("name", LIMIT_NAMES)
def test_every_limit_name_is_recognised(name: str) -> None:
    error = order_error(f"refused: {name} would be exceeded", "insert")
    assert isinstance(error, RiskLimitExceeded) and error.limit == name
    assert limit_named_in(f"x {name} y") == name


def test_plain_refusal_is_not_a_limit() -> None:
    error = order_error("unknown instrument 'XYZ'", "cancel", 7)
    assert type(error) is OrderRejected
    assert (error.message, error.operation, error.order_id, error.limit) == (
        "unknown instrument 'XYZ'",
        "cancel",
        7,
        None,
    )


def test_depth_truncation_and_comparison() -> None:
    book = Depth("A", (Level(10, 1), Level(9, 2), Level(8, 3)), (Level(11, 1),), 5, 7)
    cut = book.truncated(2)
    assert [lv.price for lv in cut.bids] == [10, 9] and cut.sequence_number == 7
    assert book.truncated(0) is book and book.truncated(5) is book
    assert cut.same_levels(Depth("A", cut.bids, cut.asks, 99, 99))
    assert not cut.same_levels(None)
    assert book.top.mid == 10.5


# ------------------------------------------------------------------ order tracker

operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "fill", "cancel", "amend", "unsolicited"]),
        st.integers(0, 9),
        st.integers(0, 20),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_tracker_matches_naive_model(ops: list[tuple[str, int, int]]) -> None:
    """Whatever order outcomes arrive in, the tracker equals a dict updated by hand."""
    tracker = OrderTracker()
    model: dict[int, int] = {}
    done: set[int] = set()
    for op, order_id, quantity in ops:
        if op == "insert" and order_id not in model and order_id not in done:
            result = OrderResult(order_id, "A", Side.BUY, 1.0, quantity + 1, 0, quantity)
            tracker.inserted(result)
            if quantity > 0:
                model[order_id] = quantity
        elif op == "fill" and order_id in model:
            remaining = min(quantity, model[order_id] - 1)
            tracker.filled(Fill(order_id, "A", 1, Side.BUY, 1.0, 1, max(remaining, 0), 0))
            if remaining <= 0:
                del model[order_id]
                done.add(order_id)
            else:
                model[order_id] = remaining
        elif op == "cancel":
            tracker.cancelled(CancelResult(order_id, "A", 1))
            model.pop(order_id, None)
            done.add(order_id)
        elif op == "unsolicited":
            tracker.cancelled(Cancel(order_id, "A", 1, "cleared", 0))
            model.pop(order_id, None)
            done.add(order_id)
        elif op == "amend" and order_id in model:
            tracker.amended(AmendResult(order_id, "A", 2.0, quantity, 0, quantity))
            if quantity > 0:
                model[order_id] = quantity
            else:
                del model[order_id]
                done.add(order_id)
        assert {k: o.remaining for k, o in tracker.open_orders().items()} == model
    assert tracker.outstanding_quantity() == sum(model.values())


def test_tracker_fill_before_larger_remaining() -> None:
    tracker = OrderTracker()
    tracker.inserted(OrderResult(1, "A", Side.SELL, 5.0, 10, 5, 5))
    tracker.filled(Fill(1, "A", 1, Side.SELL, 5.0, 3, 7, 0))  # an earlier fill of the insert
    assert tracker.open_orders()[1].remaining == 5
    assert tracker.forget_all()[0].order_id == 1 and len(tracker) == 0


# ------------------------------------------------------------------ streams


async def test_streams_fan_out_and_close() -> None:
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    fanout: Fanout[int] = Fanout()
    closed: list[str] = []
    a = fanout.open(on_close=lambda: closed.append("a"))
    b = fanout.open(maxlen=3, accept=lambda n: n % 2 == 0)
    items = [rng.randrange(100) for _ in range(20)]
    for item in items:
        fanout.publish(item)
    assert [await a.get(1) for _ in items] == items
    evens = [n for n in items if n % 2 == 0]
    assert b.drain() == evens[-3:] and b.dropped == max(0, len(evens) - 3)
    waiter = asyncio.ensure_future(a.get())
    await asyncio.sleep(0)
    fanout.publish(42)
    assert await waiter == 42
    a.close()
    a.close()
    assert closed == ["a"]
    fanout.publish(1)
    assert a.get_nowait() is None
    assert b.drain() == [42]
    with pytest.raises(TimeoutError):
        await b.get(timeout=0.01)
    fanout.finish_all(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        await b.get()


async def test_dropped_stream_releases_itself() -> None:
    fanout: Fanout[int] = Fanout()
    released = asyncio.Event()
    fanout.open(on_close=released.set)  # never kept
    await asyncio.wait_for(released.wait(), 1)
    assert len(fanout) == 0
