"""The Info service: market data rebuilt from the Order Book's event stream.

The shell around the pure parts: it wires the :class:`~services.info.feed.OrderBookFeed`
(mirror upkeep), the :class:`~services.info.registry.Registry` (instruments, saved
by :class:`~services.info.store.RegistryStore`), the subscription table and the
:class:`~services.info.publisher.Publisher` to a :class:`WireServer`, and answers
requests:

* any logged-in user: subscribe (21), unsubscribe (26), quotes (60);
* ``service`` only (Admin): create (130) and delete (132) an instrument.

Every logged-in connection receives ``OnInstrument`` for each live instrument on
login, and every creation and deletion afterwards. A creation's ``OnInstrument`` is
written to every other connection *before* the creation is answered, so the Risk
Gateway knows an instrument before Admin can report it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.config import InfoConfig
from services.common.pb import common_pb2, info_pb2
from services.common.users import Role
from services.common.wire.server import Route, WireServer, WireSettings
from services.common.wire.session import Session
from services.info.feed import OrderBookFeed
from services.info.mirror import Mirror
from services.info.publisher import CONNECTION_KEY, Publisher
from services.info.registry import Instrument
from services.info.store import RegistryStore
from services.info.subscriptions import Connection, Subscriptions
from services.info.translate import on_instrument, quote

log = logging.getLogger("optivex.info")

MT = common_pb2.MessageType
ANYONE = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN), int(Role.SERVICE)})
SERVICE = frozenset({int(Role.SERVICE)})


class InfoApp:
    """The Info process (see the module docstring)."""

    def __init__(self, config: InfoConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.store = RegistryStore(config.data_dir)
        self.registry = self.store.load()
        self.subscriptions = Subscriptions()
        for instrument in self.registry:
            self.subscriptions.open_channel(instrument.symbol, instrument.order_book_id)
        self.publisher = Publisher(self.subscriptions, self.registry)
        self.feed = OrderBookFeed(config, clock, self)
        self.server = WireServer(
            "info",
            self,
            [
                Route(MT.INFO_ORDER_BOOK_SUBSCRIBE_REQUEST, self.subscribe, ANYONE),
                Route(MT.INFO_ORDER_BOOK_UNSUBSCRIBE_REQUEST, self.unsubscribe, ANYONE),
                Route(MT.INFO_QUOTES_REQUEST, self.quotes, ANYONE),
                Route(MT.INFO_CREATE_INSTRUMENT_REQUEST, self.create_instrument, SERVICE),
                Route(MT.INFO_DELETE_INSTRUMENT_REQUEST, self.delete_instrument, SERVICE),
            ],
            login_roles=ANYONE,
            authenticator=authenticator,
            clock=clock,
            settings=WireSettings.from_config(config),
        )
        self._book_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._saver: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        """Follow the Order Book (waiting briefly for its snapshot), then serve."""
        await self.feed.start(self.config.upstream_wait_s)
        address = await self.server.start(self.config.host, self.config.port)
        self._saver = asyncio.get_running_loop().create_task(self._save_stats_periodically())
        return address

    async def stop(self) -> None:
        """Stop serving, stop following, save the registry (with its trade figures)."""
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        await self.server.stop()
        await self.feed.stop()
        self._save("stop")

    def _save(self, why: str) -> bool:
        try:
            self.store.save(self.registry)
        except OSError:
            log.exception("cannot save the instrument registry (%s)", why)
            return False
        self.publisher.stats_dirty = False
        return True

    async def _save_stats_periodically(self) -> None:
        """Trade statistics change with every trade: save them now and then, writing
        and fsyncing in a worker thread so market data never waits for the disk."""
        while True:
            await asyncio.sleep(self.config.stats_save_interval_s)
            if not self.publisher.stats_dirty:
                continue
            self.publisher.stats_dirty = False
            data, number = self.store.encode(self.registry)
            try:
                await asyncio.to_thread(self.store.write, data, number)
            except OSError:
                self.publisher.stats_dirty = True
                log.exception("cannot save the trade statistics")

    # ------------------------------------------------------------------ sessions

    def on_login(self, session: Session) -> None:
        session.state[CONNECTION_KEY] = Connection(session)
        session.on_writable = self.publisher.on_writable
        for instrument in self.registry:
            session.send(MT.INFO_ON_INSTRUMENT, on_instrument(instrument))

    def on_close(self, session: Session) -> None:
        conn = session.state.pop(CONNECTION_KEY, None)
        if conn is not None:
            self.subscriptions.drop_connection(conn)

    # ------------------------------------------------------------------ feed sink

    def on_snapshot(self, mirror: Mirror) -> None:
        """A fresh snapshot replaced the mirror: drop instruments whose book is gone."""
        for instrument in self.registry:
            if instrument.order_book_id not in mirror.books:
                self._drop_instrument(instrument, "its order book no longer exists")
        for book_id in list(self._book_waiters):
            if book_id in mirror.books:
                self._wake(book_id)

    def on_batch(self, mirror: Mirror) -> None:
        """Publish what one read of the event stream changed."""
        dirty = self.publisher.publish(mirror)
        books = mirror.books
        for book_id in dirty:
            if book_id in books:
                if book_id in self._book_waiters:
                    self._wake(book_id)
            elif book_id in mirror.deleted:
                instrument = self.registry.by_book(book_id)
                if instrument is not None:
                    self._drop_instrument(instrument, "its order book was deleted")

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, session: Session, request: Any) -> Any:
        conn = session.state[CONNECTION_KEY]
        result = self.subscriptions.subscribe(
            conn, request.instrument_symbol, request.subscription_type, request.depth
        )
        if isinstance(result, str):
            return info_pb2.OrderBookSubscribeResponse(
                request_id=request.request_id, error_message=result
            )
        # Answer first, then the current state right behind it.
        session.respond(
            MT.INFO_ORDER_BOOK_SUBSCRIBE_RESPONSE,
            info_pb2.OrderBookSubscribeResponse(request_id=request.request_id),
        )
        self.publisher.send_initial(
            result, self.feed.mirror.books.get(result.channel.order_book_id)
        )
        return None

    def unsubscribe(self, session: Session, request: Any) -> Any:
        conn = session.state[CONNECTION_KEY]
        error = self.subscriptions.unsubscribe(
            conn, request.instrument_symbol, request.subscription_type
        )
        return info_pb2.OrderBookUnsubscribeResponse(
            request_id=request.request_id, error_message=error or ""
        )

    def quotes(self, session: Session, request: Any) -> Any:
        return info_pb2.QuotesResponse(
            request_id=request.request_id, quotes=[quote(i) for i in self.registry]
        )

    # ------------------------------------------------------------------ instruments (Admin)

    def create_instrument(self, session: Session, request: Any) -> Any:
        """Register an instrument for an existing book (waiting briefly for the book)."""
        problem = self._check_create(request)
        if problem is not None:
            return self._create_response(request, problem)
        book_id = request.order_book_id
        mirror = self.feed.mirror
        if book_id in mirror.books:
            return self._commit_create(request)
        if book_id in mirror.deleted:
            return self._create_response(request, f"order book {book_id} was deleted")
        return self._create_when_book_known(request)

    async def _create_when_book_known(self, request: Any) -> Any:
        book_id = request.order_book_id
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._book_waiters.setdefault(book_id, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, self.config.book_wait_s)
        except TimeoutError:
            pass
        finally:
            waiters = self._book_waiters.get(book_id)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._book_waiters[book_id]
        if book_id not in self.feed.mirror.books:
            return self._create_response(request, f"unknown order book {book_id}")
        problem = self._check_create(request)  # the world may have moved while waiting
        if problem is not None:
            return self._create_response(request, problem)
        return self._commit_create(request)

    def _wake(self, book_id: int) -> None:
        for waiter in self._book_waiters.pop(book_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def _check_create(self, request: Any) -> str | None:
        instrument = request.instrument
        return self.registry.check_new(
            instrument.symbol, request.tick_size, instrument.multiplier, request.order_book_id
        )

    def _commit_create(self, request: Any) -> Any:
        book = self.feed.mirror.books[request.order_book_id]
        tick_size = request.tick_size
        if not math.isclose(tick_size, book.tick_size, rel_tol=1e-12, abs_tol=0.0):
            return self._create_response(
                request,
                f"tick_size {tick_size!r} does not match order book "
                f"{book.order_book_id}'s tick size {book.tick_size!r}",
            )
        spec = request.instrument
        instrument = Instrument(
            symbol=spec.symbol,
            description=spec.description,
            currency=spec.currency,
            multiplier=spec.multiplier,
            tick_size=book.tick_size,
            order_book_id=book.order_book_id,
            price_rule=book.price_rule,
            created_timestamp=self.clock.now_ns(),
        )
        self.registry.add(instrument)
        if not self._save("create"):
            self.registry.remove(instrument.symbol)
            return self._create_response(request, "cannot save the instrument registry")
        self.subscriptions.open_channel(instrument.symbol, instrument.order_book_id)
        log.info("instrument %s created (order book %d)", instrument.symbol, book.order_book_id)
        # Everyone else learns the instrument before Admin learns it exists.
        self.server.broadcast(MT.INFO_ON_INSTRUMENT, on_instrument(instrument))
        return info_pb2.CreateInstrumentResponse(
            request_id=request.request_id, created_timestamp=instrument.created_timestamp
        )

    @staticmethod
    def _create_response(request: Any, error: str) -> Any:
        return info_pb2.CreateInstrumentResponse(request_id=request.request_id, error_message=error)

    def delete_instrument(self, session: Session, request: Any) -> Any:
        symbol = request.instrument_symbol
        instrument = self.registry.get(symbol)
        if instrument is None:
            return info_pb2.DeleteInstrumentResponse(
                request_id=request.request_id, error_message=f"unknown instrument symbol {symbol!r}"
            )
        self.registry.remove(symbol)
        if not self._save("delete"):
            self.registry.add(instrument)
            return info_pb2.DeleteInstrumentResponse(
                request_id=request.request_id, error_message="cannot save the instrument registry"
            )
        self._end_instrument(instrument)
        log.info("instrument %s deleted", symbol)
        return info_pb2.DeleteInstrumentResponse(request_id=request.request_id)

    def _drop_instrument(self, instrument: Instrument, reason: str) -> None:
        """Delete an instrument the Order Book no longer backs (and tell everyone)."""
        if self.registry.remove(instrument.symbol) is None:
            return
        log.warning("dropping instrument %s: %s", instrument.symbol, reason)
        self._save("drop")
        self._end_instrument(instrument)

    def _end_instrument(self, instrument: Instrument) -> None:
        self.subscriptions.close_channel(instrument.symbol)
        self.server.broadcast(
            MT.INFO_ON_INSTRUMENT_DELETED,
            info_pb2.OnInstrumentDeleted(
                instrument_symbol=instrument.symbol, timestamp=self.clock.now_ns()
            ),
        )


def build(config: InfoConfig, authenticator: Authenticator, clock: Clock) -> InfoApp:
    """Factory used by the launcher and in-process tests."""
    return InfoApp(config, authenticator, clock)
