"""Steady, seeded order flow through the SDK, and a ledger of every outcome.

:class:`Traders` drives participants (one :class:`clients.sdk.Client` each)
open-loop: order *i* is due at ``start + i / rate`` whatever happened to the
earlier ones, so a fault makes orders wait rather than thinning the flow.  The
mix comes from the load generator's seeded planner
(:class:`clients.load_plan.Planner`): passive GTC orders, IOC orders that
cross, amends and cancels of the participant's own resting orders.

Every insert carries a ``client_order_id`` and is resent **with the same id**
until it gets a definitive answer: a success (the order is *acknowledged*) or
a refusal other than ``order book unavailable``.  That is what a careful
client does when the exchange fails under it (PROTOCOL.md: a resend returns
the original outcome), and what lets :class:`Ledger` prove that every
acknowledged order exists exactly once.  Amends and cancels are not
idempotent; their failures during a fault are counted, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clients.load_plan import Instrument, Kind, Mix, Planner, RestingOrders
from clients.sdk import Client, Disconnected, ExchangeError, OrderRejected
from tests.reliability.observe import Replay

UNAVAILABLE = "unavailable"
"""Refusals containing this are not definitive: the order may be resent."""


@dataclass
class Ledger:
    """Every insert's fate, by (user, client_order_id)."""

    acked: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    undecided: set[tuple[str, str]] = field(default_factory=set)
    contradictions: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    unavailable: list[tuple[float, float]] = field(default_factory=list)
    """(time.perf_counter() when sent, seconds to the answer) of 'unavailable' answers."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from an insert's due time to its definitive answer."""
    other_failures: Counter[str] = field(default_factory=Counter)

    def ack(self, key: tuple[str, str], order_id: int) -> None:
        earlier = self.acked.get(key)
        if earlier is not None and earlier != order_id:
            self.contradictions.append(f"{key}: acknowledged as {earlier} and as {order_id}")
        self.acked[key] = order_id

    def problems(self, replay: Replay) -> list[str]:
        """What the journal contradicts: lost, duplicated or untold orders."""
        problems = list(self.contradictions)
        problems += [f"{key}: never decided" for key in sorted(self.undecided)]
        owners: dict[int, tuple[str, str]] = {}
        for key, order_id in self.acked.items():
            other = owners.setdefault(order_id, key)
            if other != key:
                problems.append(f"order {order_id} acknowledged for {other} and {key}")
            prior = replay.engine.previous_insert(*key)
            if prior is None:
                problems.append(f"{key}: acknowledged as order {order_id}, not in the journal")
            elif prior.order_id != order_id:
                problems.append(f"{key}: acknowledged {order_id}, journal has {prior.order_id}")
        for key, count in replay.inserts.items():
            if count > 1:
                problems.append(f"{key}: inserted {count} times")
            if key not in self.acked:
                problems.append(f"{key}: in the journal but its client was told otherwise")
        return problems

    def summary(self) -> str:
        return (
            f"{len(self.acked)} acknowledged, {len(self.refused)} refused, "
            f"{len(self.undecided)} undecided, {self.attempts} attempts "
            f"({self.retries} resends), other failures {dict(self.other_failures)}"
        )


class Traders:
    """Participants sending a steady, seeded flow (see the module docstring)."""

    def __init__(
        self,
        gateway_port: int,
        users: list[tuple[str, str]],
        symbols: list[str],
        *,
        seed: int,
        rate: float,
        tick_size: float = 0.01,
        mix: Mix | None = None,
        decide_within_s: float = 60.0,
        heartbeat_interval_s: float = 1.0,
        idle_timeout_s: float = 15.0,
    ) -> None:
        self.gateway_port = gateway_port
        self.users = users
        self.instruments = [Instrument.around(s, tick_size) for s in symbols]
        self.seed = seed
        self.rate = rate
        self.mix = mix or Mix(passive=55, cross=25, amend=5, cancel=15)
        self.decide_within_s = decide_within_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.ledger = Ledger()
        self.clients: list[Client] = []
        self.planners: list[Planner] = []
        self.books: list[RestingOrders] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self._rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def connect(self) -> Traders:
        for index, (user, password) in enumerate(self.users):
            client = await Client.connect(
                gateway_port=self.gateway_port,
                info_port=None,
                username=user,
                password=password,
                backoff_max_s=0.2,
                request_timeout_s=self.decide_within_s,
                heartbeat_interval_s=self.heartbeat_interval_s,
                idle_timeout_s=self.idle_timeout_s,
            )
            self.clients.append(client)
            self.planners.append(
                Planner(self.instruments, self.mix, self.seed * 7919 + index, max_resting=50)
            )
            self.books.append(RestingOrders())
        return self

    def start(self) -> None:
        """Start sending in the background until :meth:`stop`."""
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        start = time.perf_counter()
        interval = 1.0 / self.rate
        i = 0
        while not self._stop.is_set():
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                continue
            index = i % len(self.clients)
            task = asyncio.get_running_loop().create_task(self._one(index, i, due))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            i += 1
            self.sent = i

    async def stop(self, timeout: float = 60.0) -> None:
        """Stop scheduling and wait for every request to be decided."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        for task in list(self.tasks):
            task.cancel()

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    async def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        """Wait until at least ``count`` more inserts have been acknowledged."""
        target = len(self.ledger.acked) + count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.ledger.acked) < target:
            if loop.time() > deadline:
                raise AssertionError(f"no progress: {self.ledger.summary()}")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ one request

    async def _one(self, index: int, seq: int, due: float) -> None:
        client = self.clients[index]
        intent = self.planners[index].next(self.books[index])
        instrument = self.instruments[intent.instrument]
        price = instrument.price(intent.ticks)
        if intent.kind in (Kind.AMEND, Kind.CANCEL):
            try:
                if intent.kind is Kind.CANCEL:
                    await client.cancel(instrument.symbol, intent.order_id)
                    self.books[index].gone(intent.order_id)
                else:
                    result = await client.amend(
                        instrument.symbol, intent.order_id, price, intent.quantity
                    )
                    if result.resting_quantity == 0:
                        self.books[index].gone(intent.order_id)
            except (ExchangeError, Disconnected, TimeoutError) as exc:
                self.books[index].gone(intent.order_id)
                self.ledger.other_failures[type(exc).__name__] += 1
            return
        await self._insert(client, index, seq, due, intent)

    async def _insert(self, client: Client, index: int, seq: int, due: float, intent: Any) -> None:
        user = client.username
        coid = f"rel-{self.seed}-{index}-{seq}"
        key = (user, coid)
        instrument = self.instruments[intent.instrument]
        side = "buy" if intent.side == 0 else "sell"
        tif = "ioc" if intent.kind is Kind.CROSS else "gtc"
        ledger = self.ledger
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.decide_within_s
        backoff = 0.02
        ledger.undecided.add(key)
        while True:
            ledger.attempts += 1
            sent = time.perf_counter()
            try:
                result = await client.insert(
                    instrument.symbol,
                    side,
                    instrument.price(intent.ticks),
                    intent.quantity,
                    tif,
                    client_order_id=coid,
                )
            except OrderRejected as exc:
                if UNAVAILABLE not in exc.message:
                    ledger.undecided.discard(key)
                    ledger.refused[key] = exc.message
                    ledger.latencies.append(time.perf_counter() - due)
                    return
                ledger.unavailable.append((sent, time.perf_counter() - sent))
            except (Disconnected, TimeoutError, ExchangeError) as exc:
                ledger.other_failures[type(exc).__name__] += 1
            else:
                ledger.undecided.discard(key)
                ledger.ack(key, result.order_id)
                ledger.latencies.append(time.perf_counter() - due)
                self.books[index].rested(result.order_id, intent, result.resting_quantity)
                return
            if loop.time() > deadline:
                return  # stays undecided: the check reports it
            ledger.retries += 1
            # The service is down or catching up; resend after a short backoff.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.2)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


__all__ = ["Ledger", "Traders", "percentile"]
