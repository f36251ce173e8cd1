"""Admin's request handlers: wire messages in, orchestrator calls, wire messages out.

The wire layer (``services/common/wire``) already does login, the admin-only
gate, ordering of responses and bad frames; this module only maps the five
request types of PROTOCOL.md ("admin", types 30-38) onto the orchestrator.
Handlers return awaitables, so one admin connection may pipeline many requests
(the bootstrap does) and still get its answers in request order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.admin import translate
from services.admin.model import InstrumentSpec, describe_symbol
from services.admin.orchestrator import Orchestrator
from services.common.pb import admin_pb2, common_pb2
from services.common.users import Role
from services.common.wire.server import Route
from services.common.wire.session import Session

__all__ = ["AdminService"]

MT = common_pb2.MessageType
T = TypeVar("T")
ADMIN_ONLY = frozenset({int(Role.ADMIN)})


class AdminService:
    """The service object handed to :class:`WireServer` (routes plus hooks)."""

    def __init__(self, orchestrator: Orchestrator, log: logging.Logger) -> None:
        self.orchestrator = orchestrator
        self.log = log
        self.tasks: set[asyncio.Task[Any]] = set()
        """Handlers still running (a crash simulation cancels them)."""

    def routes(self) -> list[Route]:
        return [
            Route(MT.ADMIN_CREATE_INSTRUMENT_REQUEST, self.create, ADMIN_ONLY),
            Route(MT.ADMIN_DELETE_INSTRUMENT_REQUEST, self.delete, ADMIN_ONLY),
            Route(MT.ADMIN_LIST_INSTRUMENTS_REQUEST, self.list, ADMIN_ONLY),
            Route(MT.ADMIN_CLEAR_ORDER_BOOK_REQUEST, self.clear, ADMIN_ONLY),
            Route(MT.ADMIN_GET_EXCHANGE_STATS_REQUEST, self.stats, ADMIN_ONLY),
        ]

    def on_login(self, session: Session) -> None:
        """Admin pushes nothing (PROTOCOL.md section 3)."""

    def on_close(self, session: Session) -> None:
        """Nothing per connection to clean up: operations finish regardless."""

    def _track(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ handlers

    def create(self, session: Session, request: admin_pb2.CreateInstrumentRequest) -> Any:
        spec = translate.spec_from_request(request)
        if isinstance(spec, str):
            self.log.info("%s: create refused: %s", session.username, spec)
            return admin_pb2.CreateInstrumentResponse(
                request_id=request.request_id, error_message=spec
            )
        return self._track(self._create(session.username, request.request_id, spec))

    async def _create(
        self, user: str, request_id: int, spec: InstrumentSpec
    ) -> admin_pb2.CreateInstrumentResponse:
        finished = await self.orchestrator.create(spec)
        if finished.error or finished.listing is None:
            self.log.info("%s: create %s refused: %s", user, spec.symbol, finished.error)
            return admin_pb2.CreateInstrumentResponse(
                request_id=request_id, error_message=finished.error or "internal error"
            )
        listing = finished.listing
        self.log.info(
            "%s: created instrument %s (order book %d, tick %g, %s)",
            user,
            spec.symbol,
            listing.order_book_id,
            spec.tick_size,
            spec.price_rule.label,
        )
        return admin_pb2.CreateInstrumentResponse(
            request_id=request_id,
            created_timestamp=listing.created_timestamp,
            order_book_id=listing.order_book_id,
        )

    def delete(self, session: Session, request: admin_pb2.DeleteInstrumentRequest) -> Any:
        return self._track(
            self._delete(session.username, request.request_id, request.instrument_symbol)
        )

    async def _delete(
        self, user: str, request_id: int, symbol: str
    ) -> admin_pb2.DeleteInstrumentResponse:
        finished = await self.orchestrator.delete(symbol)
        if finished.error:
            self.log.info(
                "%s: delete %s refused: %s", user, describe_symbol(symbol), finished.error
            )
        else:
            self.log.info("%s: deleted instrument %s", user, symbol)
        return admin_pb2.DeleteInstrumentResponse(
            request_id=request_id, error_message=finished.error
        )

    def list(
        self, session: Session, request: admin_pb2.ListInstrumentsRequest
    ) -> admin_pb2.ListInstrumentsResponse:
        error, listings = self.orchestrator.listings()
        return admin_pb2.ListInstrumentsResponse(
            request_id=request.request_id,
            error_message=error,
            instruments=[translate.on_instrument(listing) for listing in listings],
        )

    def clear(self, session: Session, request: admin_pb2.ClearOrderBookRequest) -> Any:
        return self._track(
            self._clear(session.username, request.request_id, request.instrument_symbol)
        )

    async def _clear(
        self, user: str, request_id: int, symbol: str
    ) -> admin_pb2.ClearOrderBookResponse:
        error, cancelled = await self.orchestrator.clear(symbol)
        if error:
            self.log.info("%s: clear %s refused: %s", user, describe_symbol(symbol), error)
        else:
            self.log.info("%s: cleared %s (%d orders cancelled)", user, symbol, cancelled)
        return admin_pb2.ClearOrderBookResponse(
            request_id=request_id, error_message=error, cancelled_orders=cancelled
        )

    def stats(self, session: Session, request: admin_pb2.GetExchangeStatsRequest) -> Any:
        return self._track(self._stats(request.request_id))

    async def _stats(self, request_id: int) -> admin_pb2.GetExchangeStatsResponse:
        error, stats = await self.orchestrator.stats()
        if stats is None:
            return admin_pb2.GetExchangeStatsResponse(request_id=request_id, error_message=error)
        return admin_pb2.GetExchangeStatsResponse(
            request_id=request_id,
            exchange_profit=stats.exchange_profit,
            trade_count=stats.trade_count,
            traded_volume=stats.traded_volume,
            resting_orders=stats.resting_orders,
        )
