"""Small stand-ins for Info (and the Risk Gateway) built on the real WireServer.

Why fakes when the real services exist: the failure cases need a peer that
refuses, hangs or vanishes on command, and a hand-made Info lets a test plant a
dangling instrument to see reconciliation withdraw it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.pb import common_pb2, info_pb2, risk_limits_pb2
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session
from tests.support.inprocess import demo_users

MT = common_pb2.MessageType
ALL_ROLES = frozenset({1, 2, 3})
SERVICE = frozenset({3})


class FakeInfo:
    """Info's instrument list: OnInstrument on login and per change, 130/132/60.

    ``mode`` decides how creates are answered: ``ok``, ``refuse`` (with
    ``refusal``) or ``hang`` (kept until :meth:`release` answers them).
    """

    def __init__(self) -> None:
        self.instruments: dict[str, info_pb2.OnInstrument] = {}
        self.mode = "ok"
        self.refusal = "refused by the fake"
        self.create_requests: list[info_pb2.CreateInstrumentRequest] = []
        self.delete_requests: list[str] = []
        self.received = asyncio.Event()
        self.hung: list[tuple[asyncio.Future[Any], info_pb2.CreateInstrumentRequest]] = []
        self.clock = SystemClock()
        self.server = WireServer(
            "fake-info",
            self,
            [
                Route(MT.INFO_CREATE_INSTRUMENT_REQUEST, self.create, SERVICE),
                Route(MT.INFO_DELETE_INSTRUMENT_REQUEST, self.delete, SERVICE),
                Route(MT.INFO_QUOTES_REQUEST, self.quotes, ALL_ROLES),
            ],
            login_roles=ALL_ROLES,
            authenticator=Authenticator(demo_users(), self.clock),
            clock=self.clock,
        )
        self.port = 0

    async def start(self, port: int = 0) -> int:
        _, self.port = await self.server.start("127.0.0.1", port)
        return self.port

    async def stop(self) -> None:
        for future, _ in self.hung:
            if not future.done():
                future.cancel()
        await self.server.stop(grace_s=0.5)

    def plant(self, symbol: str, book_id: int, tick_size: float = 0.01) -> None:
        """An instrument that exists in Info only (as if left by a crash)."""
        self.instruments[symbol] = info_pb2.OnInstrument(
            instrument=common_pb2.Instrument(symbol=symbol),
            tick_size=tick_size,
            order_book_id=book_id,
            created_timestamp=1,
        )

    def on_login(self, session: Session) -> None:
        for message in self.instruments.values():
            session.send(MT.INFO_ON_INSTRUMENT, message)

    def on_close(self, session: Session) -> None:
        pass

    def _store(self, request: info_pb2.CreateInstrumentRequest) -> Any:
        symbol = request.instrument.symbol
        if symbol in self.instruments:
            return info_pb2.CreateInstrumentResponse(
                request_id=request.request_id, error_message="instrument already exists"
            )
        timestamp = self.clock.now_ns()
        message = info_pb2.OnInstrument(
            instrument=request.instrument,
            created_timestamp=timestamp,
            tick_size=request.tick_size,
            order_book_id=request.order_book_id,
        )
        self.instruments[symbol] = message
        self.server.broadcast(MT.INFO_ON_INSTRUMENT, message)
        return info_pb2.CreateInstrumentResponse(
            request_id=request.request_id, created_timestamp=timestamp
        )

    def create(self, session: Session, request: info_pb2.CreateInstrumentRequest) -> Any:
        self.create_requests.append(request)
        self.received.set()
        if self.mode == "refuse":
            return info_pb2.CreateInstrumentResponse(
                request_id=request.request_id, error_message=self.refusal
            )
        if self.mode == "hang":
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.hung.append((future, request))
            return future
        return self._store(request)

    def release(self, *, store: bool) -> None:
        """Answer the hung creates now: store them (late success) or refuse them."""
        hung, self.hung = self.hung, []
        for future, request in hung:
            if future.done():
                continue
            if store:
                future.set_result(self._store(request))
            else:
                future.set_result(
                    info_pb2.CreateInstrumentResponse(
                        request_id=request.request_id, error_message="gave up"
                    )
                )

    def delete(self, session: Session, request: info_pb2.DeleteInstrumentRequest) -> Any:
        symbol = request.instrument_symbol
        self.delete_requests.append(symbol)
        if self.instruments.pop(symbol, None) is None:
            return info_pb2.DeleteInstrumentResponse(
                request_id=request.request_id, error_message="unknown instrument"
            )
        self.server.broadcast(
            MT.INFO_ON_INSTRUMENT_DELETED,
            info_pb2.OnInstrumentDeleted(instrument_symbol=symbol, timestamp=self.clock.now_ns()),
        )
        return info_pb2.DeleteInstrumentResponse(request_id=request.request_id)

    def quotes(self, session: Session, request: info_pb2.QuotesRequest) -> Any:
        return info_pb2.QuotesResponse(
            request_id=request.request_id,
            quotes=[info_pb2.Quote(instrument_symbol=s) for s in sorted(self.instruments)],
        )


class FakeGateway:
    """The Risk Gateway's limit messages (50-57) with both layers, nothing else.

    Participants read and write their own layer; admins the admin layer of the
    user they name (themselves when the name is empty), as PROTOCOL.md says.
    """

    def __init__(self) -> None:
        self.own_user: dict[str, risk_limits_pb2.UserRiskLimits] = {}
        self.admin_user: dict[str, risk_limits_pb2.UserRiskLimits] = {}
        self.own_instrument: dict[str, dict[str, risk_limits_pb2.InstrumentRiskLimits]] = {}
        self.admin_instrument: dict[str, dict[str, risk_limits_pb2.InstrumentRiskLimits]] = {}
        self.clock = SystemClock()
        people = frozenset({1, 2})
        self.server = WireServer(
            "fake-gateway",
            self,
            [
                Route(MT.RISK_LIMITS_GET_USER_RISK_LIMITS_REQUEST, self.get_user, people),
                Route(MT.RISK_LIMITS_SET_USER_RISK_LIMITS_REQUEST, self.set_user, people),
                Route(MT.RISK_LIMITS_GET_INSTRUMENT_RISK_LIMITS_REQUEST, self.get_inst, people),
                Route(MT.RISK_LIMITS_SET_INSTRUMENT_RISK_LIMITS_REQUEST, self.set_inst, people),
            ],
            login_roles=people,
            authenticator=Authenticator(demo_users(), self.clock),
            clock=self.clock,
        )
        self.port = 0

    async def start(self) -> int:
        _, self.port = await self.server.start("127.0.0.1", 0)
        return self.port

    async def stop(self) -> None:
        await self.server.stop(grace_s=0.5)

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass

    @staticmethod
    def _who(session: Session, username: str) -> str | None:
        if session.role == 1 and username not in ("", session.username):
            return None
        return username or session.username

    def get_user(self, session: Session, request: Any) -> Any:
        user = self._who(session, request.username)
        if user is None:
            return risk_limits_pb2.GetUserRiskLimitsResponse(
                request_id=request.request_id, error_message="not permitted"
            )
        return risk_limits_pb2.GetUserRiskLimitsResponse(
            request_id=request.request_id,
            user_risk_limits=self.own_user.get(user),
            admin_user_risk_limits=self.admin_user.get(user),
        )

    def set_user(self, session: Session, request: Any) -> Any:
        user = self._who(session, request.username)
        if user is None:
            return risk_limits_pb2.SetUserRiskLimitsResponse(
                request_id=request.request_id, error_message="not permitted"
            )
        layer = self.admin_user if session.role == 2 else self.own_user
        layer[user] = request.user_risk_limits
        return risk_limits_pb2.SetUserRiskLimitsResponse(request_id=request.request_id)

    def get_inst(self, session: Session, request: Any) -> Any:
        user = self._who(session, request.username)
        if user is None:
            return risk_limits_pb2.GetInstrumentRiskLimitsResponse(
                request_id=request.request_id, error_message="not permitted"
            )
        response = risk_limits_pb2.GetInstrumentRiskLimitsResponse(request_id=request.request_id)
        for symbol, limits in self.own_instrument.get(user, {}).items():
            response.risk_limits_by_instrument[symbol].CopyFrom(limits)
        for symbol, limits in self.admin_instrument.get(user, {}).items():
            response.admin_risk_limits_by_instrument[symbol].CopyFrom(limits)
        return response

    def set_inst(self, session: Session, request: Any) -> Any:
        user = self._who(session, request.username)
        if user is None or not request.instrument_symbol:
            return risk_limits_pb2.SetInstrumentRiskLimitsResponse(
                request_id=request.request_id, error_message="not permitted"
            )
        layer = self.admin_instrument if session.role == 2 else self.own_instrument
        entry = layer.setdefault(user, {})
        limits = request.instrument_risk_limits
        if limits == risk_limits_pb2.InstrumentRiskLimits():
            entry.pop(request.instrument_symbol, None)
        else:
            entry[request.instrument_symbol] = limits
        return risk_limits_pb2.SetInstrumentRiskLimitsResponse(request_id=request.request_id)
