"""Per-symbol locks and the reconciliation gate."""

from __future__ import annotations

import asyncio

from services.admin.gate import KeyedLocks, OperationGate


async def test_keyed_locks_serialise_one_key_and_are_dropped_after_use() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, name: str, delay: float) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(delay)
            order.append(f"{name}-")

    await asyncio.gather(work("A", "a1", 0.02), work("A", "a2", 0), work("B", "b", 0))
    assert order.index("a1-") < order.index("a2+")
    assert order.index("b+") < order.index("a1-")  # other keys do not wait
    assert len(locks) == 0


async def test_exclusive_waits_for_operations_and_holds_new_ones_back() -> None:
    gate = OperationGate()
    events: list[str] = []
    release = asyncio.Event()

    async def operation(name: str) -> None:
        async with gate.operation():
            events.append(f"{name}+")
            await release.wait()
            events.append(f"{name}-")

    async def exclusive() -> None:
        async with gate.exclusive():
            events.append("X")

    first = asyncio.ensure_future(operation("op1"))
    await asyncio.sleep(0)
    pass_task = asyncio.ensure_future(exclusive())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(operation("op2"))
    for _ in range(5):  # let everything runnable run: nothing more may happen yet
        await asyncio.sleep(0)
    assert events == ["op1+"]
    release.set()
    await asyncio.wait_for(asyncio.gather(first, pass_task, second), 1)
    assert events == ["op1+", "op1-", "X", "op2+", "op2-"]
    assert gate.active == 0


async def test_a_cancelled_operation_releases_the_gate() -> None:
    gate = OperationGate()

    async def stuck() -> None:
        async with gate.operation():
            await asyncio.Event().wait()

    task = asyncio.ensure_future(stuck())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(1), gate.exclusive():
        pass
