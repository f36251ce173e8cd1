"""Order Book translation cost per command, in-process: what the service's handler
does for one request besides the wire layer and the disk.

Why this benchmark: profiles of the running service showed the protobuf <-> engine
translation (``CommandProcessor`` and ``EventEncoder`` in
``services/order_book/translate.py``) taking about two thirds of its CPU, several
times the matching itself.  This isolates exactly that path so a change to it can be
measured without sockets, fsync or other processes on a shared machine:

    request (decoded protobuf) -> engine -> response frame
    -> journal record (request bytes, ``encode_record``)
    -> every event the command caused -> encoded frames

It is the body of the service's request handler, timed with ``time.process_time_ns``
(CPU, not wall time) per phase of a deterministic workload on one book with a tick
of 0.01:

* ``insert (rests)``: inserts that do not cross (two sides, several users);
* ``amend``: price or quantity changes of resting orders (none crosses);
* ``insert (trades)``: crossing inserts that each trade with one to three orders;
* ``cancel``: cancels of the orders still resting.

Each run rebuilds the engine and replays the same requests; the figure reported is
the median over ``--runs`` runs of the CPU per command of each phase.  The matching
engine's own cost is included (it is part of the handler), and so is the engine
alone (``engine only``, the same commands straight into ``Engine``), so the
translation's share is the difference.

``python -m bench.order_book_translate [--orders N] [--runs R]``
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from services.common.pb import order_book_pb2
from services.common.prices import to_ticks
from services.common.wire.framing import encode_frame
from services.common.wire.registry import RESPONSE_TYPE
from services.order_book.engine import Engine
from services.order_book.journal import encode_record
from services.order_book.translate import (
    AMEND,
    CANCEL,
    CREATE,
    INSERT,
    CommandProcessor,
    EventEncoder,
)

pb = order_book_pb2
TICK = 0.01
USERS = ("alice", "bob", "carol", "dave")
START_NS = 1_763_000_000_000_000_000
"""Realistic nanosecond timestamps: their varints are 9 bytes long, as in service."""

Command = tuple[int, Any]
Phase = tuple[str, list[Command]]
Step = Callable[[int, Any, int], None]


def workload(orders: int, seed: int = 9) -> list[Phase]:
    """The four phases' requests, deterministic for ``seed``.

    Order ids are predictable (the engine numbers accepted inserts from 1), so the
    amends and cancels can name them before anything runs.
    """
    rng = random.Random(seed)
    request_id = 0

    def next_id() -> int:
        nonlocal request_id
        request_id += 1
        return request_id

    rests: list[Command] = []
    sides: list[int] = []
    for _ in range(orders):
        side = rng.randrange(2)
        sides.append(side)
        ticks = rng.randint(9_000, 9_999) if side == 0 else rng.randint(10_001, 11_000)
        rests.append(
            (
                INSERT,
                pb.InsertOrderRequest(
                    request_id=next_id(),
                    order_book_id=1,
                    side=side,  # type: ignore[arg-type]
                    price=round(ticks * TICK, 2),
                    quantity=rng.randint(1, 100),
                    on_behalf_of_username=rng.choice(USERS),
                ),
            )
        )
    amends: list[Command] = []
    for order_id in range(1, orders // 2 + 1):
        side = sides[order_id - 1]
        ticks = rng.randint(9_000, 9_999) if side == 0 else rng.randint(10_001, 11_000)
        rest = rests[order_id - 1][1]
        amends.append(
            (
                AMEND,
                pb.AmendOrderRequest(
                    request_id=next_id(),
                    order_book_id=1,
                    order_id=order_id,
                    price=round(ticks * TICK, 2) if rng.random() < 0.7 else rest.price,
                    quantity=max(1, rest.quantity - rng.randint(0, 5)),
                    on_behalf_of_username=rest.on_behalf_of_username,
                ),
            )
        )
    trades: list[Command] = []
    for _ in range(orders // 4):
        side = rng.randrange(2)
        trades.append(
            (
                INSERT,
                pb.InsertOrderRequest(
                    request_id=next_id(),
                    order_book_id=1,
                    side=side,  # type: ignore[arg-type]
                    price=99.0 if side == 1 else 101.0,
                    quantity=rng.randint(1, 150),
                    time_in_force=rng.choice((0, 1)),  # type: ignore[arg-type]
                    on_behalf_of_username=rng.choice(USERS),
                ),
            )
        )
    cancels: list[Command] = [
        (
            CANCEL,
            pb.CancelOrderRequest(request_id=next_id(), order_book_id=1, order_id=order_id),
        )
        for order_id in range(1, orders + 1)
    ]
    return [
        ("insert (rests)", rests),
        ("amend", amends),
        ("insert (trades)", trades),
        ("cancel", cancels),
    ]


def service_path(processor: CommandProcessor, encoder: EventEncoder) -> Step:
    """The service handler's work for one request (as in ``OrderBookApp._handler``)."""
    engine = processor.engine
    encode = encoder.encode
    encode_all = getattr(encoder, "encode_all", None)
    if encode_all is None:  # earlier revisions, as for ``process`` below

        def encode_all(events: list[Any]) -> list[bytes]:
            return [encode(e) for e in events]

    answers: list[bytes] = []
    journal: list[bytes] = []
    events: list[bytes] = []
    process = getattr(processor, "process", None)
    if process is None:
        # Earlier revisions built a response message; kept so that this file
        # measures them too (run it in a worktree of the older commit).
        apply = processor.apply

        def old_process(kind: int, request: Any, timestamp: int) -> tuple[bytes, bool]:
            response, accepted = apply(kind, request, timestamp)
            return encode_frame(RESPONSE_TYPE[kind], response.SerializeToString()), accepted

        process = old_process

    def step(kind: int, request: Any, timestamp: int) -> None:
        frame, accepted = process(kind, request, timestamp)
        if accepted:
            journal.append(encode_record(kind, timestamp, request.SerializeToString()))
            events.extend(encode_all(engine.drain_events()))
        answers.append(frame)
        if len(answers) > 1024:
            # What a commit does with them; keeps memory flat between commits.
            answers.clear()
            journal.clear()
            events.clear()

    return step


def engine_path(engine: Engine) -> Step:
    """The same commands straight into the engine (no protobuf at all)."""

    def step(kind: int, r: Any, timestamp: int) -> None:
        if kind == INSERT:
            ticks = to_ticks(r.price, TICK)
            assert isinstance(ticks, int)
            engine.insert(
                1,
                r.on_behalf_of_username,
                r.side,
                ticks,
                r.quantity,
                r.time_in_force,
                "",
                timestamp,
            )
        elif kind == AMEND:
            ticks = to_ticks(r.price, TICK)
            assert isinstance(ticks, int)
            engine.amend(1, r.order_id, r.on_behalf_of_username, ticks, r.quantity, timestamp)
        else:
            engine.cancel(1, r.order_id, "", timestamp)
        engine.drain_events()

    return step


def run_once(phases: list[Phase], engine_only: bool) -> dict[str, float]:
    """One pass over every phase on a fresh engine; CPU µs per command per phase."""
    engine = Engine()
    processor = CommandProcessor(engine)
    encoder = EventEncoder()
    _, accepted = processor.apply(CREATE, pb.CreateOrderBookRequest(tick_size=TICK), START_NS)
    assert accepted
    for event in engine.drain_events():
        encoder.encode(event)
    step = engine_path(engine) if engine_only else service_path(processor, encoder)
    timestamp = START_NS
    figures: dict[str, float] = {}
    gc.collect()
    for name, commands in phases:
        started = time.process_time_ns()
        for kind, request in commands:
            timestamp += 997
            step(kind, request, timestamp)
        elapsed = time.process_time_ns() - started
        figures[name] = elapsed / len(commands) / 1000
    return figures


def measure(orders: int, runs: int) -> dict[str, dict[str, float]]:
    """Median CPU µs per command of each phase, for the service path and the engine."""
    phases = workload(orders)
    results: dict[str, dict[str, float]] = {}
    for label, engine_only in (("service path", False), ("engine only", True)):
        samples = [run_once(phases, engine_only) for _ in range(runs)]
        results[label] = {
            name: statistics.median(sample[name] for sample in samples) for name, _ in phases
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=40_000, help="resting inserts per run")
    parser.add_argument("--runs", type=int, default=7, help="runs; the median is reported")
    args = parser.parse_args()
    results = measure(args.orders, args.runs)
    names = list(results["service path"])
    print(f"CPU µs per command, median of {args.runs} runs ({args.orders} resting inserts)")
    print("| phase | service path | engine only | translation |")
    print("| --- | --- | --- | --- |")
    for name in names:
        service = results["service path"][name]
        engine = results["engine only"][name]
        print(f"| {name} | {service:.2f} | {engine:.2f} | {service - engine:.2f} |")


if __name__ == "__main__":
    main()
