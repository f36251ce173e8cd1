"""A seeded random order flow run through the exchange and the reference book at once.

Each step is sent through the Risk Gateway and awaited, then applied to
:class:`RefBook`; the response must agree with the reference on every step.  The
reference's book after each step is recorded, so market-data tests can check
that every published state is one the book really had, in order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from system_tests.harness.checks import BUY, FOK, GTC, IOC, SELL, eq, ok
from system_tests.harness.conn import Conn
from system_tests.harness.refbook import RefBook
from system_tests.harness.world import Instrument, amend, cancel, insert

Levels = list[tuple[int, int]]


@dataclass
class WorkloadResult:
    book: RefBook
    states: list[tuple[Levels, Levels]] = field(default_factory=list)
    """Depth (ticks, quantity) after the subscription started and after every step."""
    trades: int = 0


async def run_workload(
    instrument: Instrument, conns: list[Conn], seed: int, steps: int
) -> WorkloadResult:
    rng = random.Random(seed)
    ref = RefBook()
    owner: dict[int, int] = {}
    result = WorkloadResult(ref, [ref.depth()])
    for step in range(steps):
        where = f"workload step {step} (seed {seed})"
        roll = rng.random()
        live = sorted(ref.orders)
        if roll < 0.65 or not live:
            who = rng.randrange(len(conns))
            side = rng.choice((BUY, SELL))
            ticks = rng.randint(95, 102) if side == BUY else rng.randint(98, 105)
            quantity = rng.randint(1, 10)
            tif = rng.choices((GTC, IOC, FOK), (85, 10, 5))[0]
            response = ok(
                await insert(
                    conns[who], instrument.symbol, side, instrument.px(ticks), quantity, tif
                ),
                where,
            )
            trades, resting = ref.insert(response.order_id, side, ticks, quantity, tif)
            what = (
                f"{where}: {'BUY' if side == BUY else 'SELL'} {quantity} @ {ticks} ticks tif {tif}"
            )
            eq(
                response.traded_quantity,
                sum(t.quantity for t in trades),
                f"{what}: traded_quantity",
            )
            eq(response.resting_quantity, resting, f"{what}: resting_quantity")
            eq(len(response.trade_ids), len(trades), f"{what}: number of trades")
            result.trades += len(trades)
            owner[response.order_id] = who
        elif roll < 0.85:
            order_id = rng.choice(live)
            response = ok(await cancel(conns[owner[order_id]], instrument.symbol, order_id), where)
            eq(
                response.cancelled_quantity,
                ref.cancel(order_id),
                f"{where}: cancelled_quantity of {order_id}",
            )
        else:
            order_id = rng.choice(live)
            order = ref.orders[order_id]
            ticks = order.ticks + rng.randint(-2, 2)
            quantity = rng.randint(1, 10)
            response = ok(
                await amend(
                    conns[owner[order_id]],
                    instrument.symbol,
                    order_id,
                    instrument.px(ticks),
                    quantity,
                ),
                where,
            )
            outcome = ref.amend(order_id, ticks, quantity)
            assert outcome is not None
            trades, resting = outcome
            eq(
                (response.traded_quantity, response.resting_quantity),
                (sum(t.quantity for t in trades), resting),
                f"{where}: amend of {order_id} to ({ticks} ticks, {quantity}): (traded, resting)",
            )
            result.trades += len(trades)
        state = ref.depth()
        if state != result.states[-1]:
            result.states.append(state)
    return result
