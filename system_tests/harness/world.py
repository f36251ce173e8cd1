"""Per-test access to the exchange: logged-in connections, fresh instruments, barriers.

Every test gets its own :class:`World`: the connections it opens are closed and
the instruments it creates are deleted when it ends (best effort: deleting is
graded by its own tests, so a broken delete must not fail every other test).
Symbols are unique per run, so tests are independent of each other and of
earlier runs against a long-lived exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import string
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from system_tests.harness import checks
from system_tests.harness.checks import (
    BUY,
    GTC,
    IOC,
    SELL,
    PriceRule,
    Side,
    SubscriptionType,
    TimeInForce,
    has,
    ok,
)
from system_tests.harness.conn import LAST_EXECUTION_REQUEST, Conn, Endpoint
from system_tests.harness.exchange import Target
from system_tests.pb import admin_pb2, common_pb2, execution_pb2, info_pb2, order_book_pb2

_RUN_TAG = "".join(random.Random(time.time_ns()).choice(string.ascii_uppercase) for _ in range(4))
_symbol_numbers = itertools.count(1)


def new_symbol(prefix: str = "G") -> str:
    """A symbol no other test or earlier run uses (1-16 chars of A-Z, 0-9)."""
    return f"{prefix}{_RUN_TAG}{next(_symbol_numbers):05d}"


@dataclass
class Instrument:
    symbol: str
    book_id: int
    tick: float
    price_rule: PriceRule
    created_timestamp: int

    def px(self, ticks: int) -> float:
        """The price ``ticks`` ticks above zero (exact multiple of the tick)."""
        return round(ticks * self.tick, 10)


@dataclass
class World:
    """See the module docstring."""

    target: Target
    test_name: str
    conns: list[Conn] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    raw_books: list[int] = field(default_factory=list)
    _admin: Conn | None = None
    _barrier: dict[str, Any] = field(default_factory=dict)
    _raw_ob: Conn | None = None

    @property
    def seed(self) -> int:
        """A fixed seed per test (printed by the tests that use it)."""
        return zlib.crc32(self.test_name.encode())

    # ------------------------------------------------------------ logins

    def participant(self, index: int) -> tuple[str, str]:
        if index >= len(self.target.participants):
            pytest.skip(f"needs at least {index + 1} participant logins (--participants)")
        return self.target.participants[index]

    def user(self, index: int) -> str:
        return self.participant(index)[0]

    def service_login(self) -> tuple[str, str]:
        if self.target.service_login is None:
            pytest.skip("needs the service account's login (--service-password)")
        return self.target.service_login

    async def connect(self, endpoint: Endpoint, label: str = "", **kwargs: Any) -> Conn:
        conn = await Conn.open(endpoint, label or endpoint.name, **kwargs)
        self.conns.append(conn)
        return conn

    async def logged_in(
        self, endpoint: Endpoint, user: str, password: str, label: str = "", **kwargs: Any
    ) -> Conn:
        conn = await self.connect(endpoint, label or f"{endpoint.name} as {user}", **kwargs)
        response = await conn.login(user, password)
        assert not response.error_message, (
            f"login of {user!r} on {endpoint}: expected success, received error "
            f"{response.error_message!r}"
        )
        return conn

    async def gateway(self, who: int = 0, **kwargs: Any) -> Conn:
        user, password = self.participant(who)
        return await self.logged_in(self.target.gateway, user, password, **kwargs)

    async def info(self, who: int = 0, **kwargs: Any) -> Conn:
        user, password = self.participant(who)
        return await self.logged_in(self.target.info, user, password, **kwargs)

    async def admin_conn(self, endpoint: Endpoint | None = None) -> Conn:
        user, password = self.target.admin_login
        return await self.logged_in(endpoint or self.target.admin, user, password)

    async def admin(self) -> Conn:
        """The test's shared admin connection on the Admin port."""
        if self._admin is None or self._admin.is_closed:
            self._admin = await self.admin_conn()
        return self._admin

    async def order_book(self, **kwargs: Any) -> Conn:
        user, password = self.service_login()
        return await self.logged_in(self.target.order_book, user, password, **kwargs)

    # ------------------------------------------------------------ instruments

    async def create_instrument(
        self,
        tick: float = 0.01,
        price_rule: PriceRule = checks.RESTING_ORDER_PRICE,
        symbol: str | None = None,
        description: str = "system test instrument",
    ) -> Instrument:
        admin = await self.admin()
        symbol = symbol or new_symbol()
        request = admin_pb2.CreateInstrumentRequest(
            instrument=common_pb2.Instrument(
                symbol=symbol, description=description, currency="USD", multiplier=1.0
            ),
            tick_size=tick,
            price_rule=price_rule,
        )
        response = ok(await admin.request(request), f"create instrument {symbol}")
        self.created.append(symbol)
        return Instrument(
            symbol, response.order_book_id, tick, price_rule, response.created_timestamp
        )

    async def delete_instrument(self, symbol: str) -> Any:
        admin = await self.admin()
        response = await admin.request(admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol))
        if not response.error_message and symbol in self.created:
            self.created.remove(symbol)
        return response

    async def create_book(
        self, ob: Conn, tick: float = 0.01, price_rule: PriceRule = checks.RESTING_ORDER_PRICE
    ) -> Any:
        """ORDER_BOOK_CREATE_REQUEST straight to the Order Book (deleted at teardown)."""
        response = ok(
            await ob.request(
                order_book_pb2.CreateOrderBookRequest(tick_size=tick, price_rule=price_rule)
            ),
            "create an order book on the Order Book port",
        )
        self.raw_books.append(response.order_book_id)
        self._raw_ob = ob
        return response

    # ------------------------------------------------------------ barriers

    async def gateway_barrier(self, conn: Conn) -> None:
        """Return once the Risk Gateway has routed to ``conn`` every fill caused so far.

        ``conn``'s user trades with itself on a barrier instrument and waits for
        both of its own fills.  The Gateway learns of fills from one ordered
        event stream, so anything routed to ``conn`` for an earlier trade has
        arrived before these.
        """
        instrument = await self._barrier_instrument()
        price = instrument.px(100)
        sell = ok(await insert(conn, instrument.symbol, SELL, price, 1), "barrier sell")
        buy = ok(await insert(conn, instrument.symbol, BUY, price, 1, IOC), "barrier buy")
        for order_id in (sell.order_id, buy.order_id):
            await conn.expect(44, has(order_id=order_id), f"the barrier fill of order {order_id}")

    async def info_barrier(self, conn: Conn) -> None:
        """Return once Info has sent ``conn`` everything caused by events so far.

        ``conn`` subscribes (once) to top of book of a barrier instrument; an
        order is placed there and its update awaited.  Info reads one ordered
        event stream, so updates for earlier events precede it.
        """
        instrument = await self._barrier_instrument()
        key = f"info-sub-{id(conn)}"
        if key not in self._barrier:
            ok(await subscribe(conn, instrument.symbol, checks.TOP_OF_BOOK), "barrier subscribe")
            await conn.expect(23, lambda m: m.instrument_symbol == instrument.symbol, "barrier TOB")
            self._barrier[key] = True
        trader = self._barrier.get("trader")
        if trader is None:
            trader = self._barrier["trader"] = await self.gateway(0)
        self._barrier["ticks"] = self._barrier.get("ticks", 10) + 1
        ok(
            await insert(trader, instrument.symbol, BUY, instrument.px(self._barrier["ticks"]), 1),
            "barrier order",
        )
        await conn.expect(
            23,
            lambda m: (
                m.instrument_symbol == instrument.symbol
                and checks.same_price(m.best_bid.price, instrument.px(self._barrier["ticks"]))
            ),
            "the barrier instrument's top-of-book update",
        )

    async def _barrier_instrument(self) -> Instrument:
        if "instrument" not in self._barrier:
            self._barrier["instrument"] = await self.create_instrument(tick=0.01)
        instrument: Instrument = self._barrier["instrument"]
        return instrument

    async def quiet_period(self, user: str, window_s: float) -> None:
        """Wait until this suite sent no execution request for ``user`` in ``window_s``.

        Only for message-rate tests: the rate window records every request
        from the start, so its count is known only once the window is empty.
        """
        last = LAST_EXECUTION_REQUEST.get(user)
        if last is not None:
            wait = last + window_s + 0.25 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    # ------------------------------------------------------------ teardown

    async def cleanup(self) -> None:
        ob = self._raw_ob
        if ob is not None and not ob.is_closed:
            for book_id in self.raw_books:
                with contextlib.suppress(Exception):
                    await ob.request(
                        order_book_pb2.DeleteOrderBookRequest(order_book_id=book_id), timeout=3
                    )
        with contextlib.suppress(Exception):
            if self.created:
                admin = await self.admin()
                for symbol in list(self.created):
                    with contextlib.suppress(Exception):
                        await admin.request(
                            admin_pb2.DeleteInstrumentRequest(instrument_symbol=symbol), timeout=3
                        )
        for conn in self.conns:
            with contextlib.suppress(Exception):
                await conn.close()


# ------------------------------------------------------------ request helpers


async def insert(
    conn: Conn,
    symbol: str,
    side: Side,
    price: float,
    quantity: int,
    tif: TimeInForce = GTC,
    client_order_id: str = "",
) -> Any:
    """EXECUTION_INSERT_ORDER_REQUEST; returns the response (success or not)."""
    return await conn.request(
        execution_pb2.InsertOrderRequest(
            instrument_symbol=symbol,
            side=side,
            price=price,
            quantity=quantity,
            time_in_force=tif,
            client_order_id=client_order_id,
        )
    )


async def cancel(conn: Conn, symbol: str, order_id: int) -> Any:
    return await conn.request(
        execution_pb2.CancelOrderRequest(instrument_symbol=symbol, order_id=order_id)
    )


async def amend(conn: Conn, symbol: str, order_id: int, price: float, quantity: int) -> Any:
    return await conn.request(
        execution_pb2.AmendOrderRequest(
            instrument_symbol=symbol, order_id=order_id, price=price, quantity=quantity
        )
    )


async def subscribe(conn: Conn, symbol: str, kind: SubscriptionType, depth: int = 0) -> Any:
    return await conn.request(
        info_pb2.OrderBookSubscribeRequest(
            instrument_symbol=symbol, subscription_type=kind, depth=depth
        )
    )


async def unsubscribe(conn: Conn, symbol: str, kind: SubscriptionType) -> Any:
    return await conn.request(
        info_pb2.OrderBookUnsubscribeRequest(instrument_symbol=symbol, subscription_type=kind)
    )
