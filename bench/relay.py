"""The null relay baseline: the Risk Gateway's shape with none of its logic.

Two processes built from the same wire code as the real services, started the
same way (:func:`services.common.lifecycle.run_service`, so ``--loop`` and
``OPTIVEX_LOOP`` work and the ``listening on`` / ``ready`` lines appear):

* ``python -m bench.relay echo``: a :class:`WireServer` for the ``service``
  role that answers order_book inserts (10), cancels (12) and amends (62) at
  once, as if every order rested and every cancel succeeded;
* ``python -m bench.relay relay --order-book-port P``: a :class:`WireServer` for
  participants that forwards execution inserts (40), cancels (42) and amends
  (46) to the echo over one :class:`UpstreamConnection` as order_book 10/12/62
  and maps the answers back to 41/43/47, keeping request order.

client -> relay -> echo -> relay -> client is the least work any Python gateway
in front of any Python book can do per order with this wire layer; the
exchange's throughput is reported as a ratio to it.  Cancel and amend are
relayed too (the brief asks only for inserts) so the same order mix can be
sent to both and the ratio compares like with like.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.config import CommonConfig
from services.common.lifecycle import run_service
from services.common.pb import common_pb2, execution_pb2, order_book_pb2
from services.common.users import Role
from services.common.wire.client import UpstreamConnection
from services.common.wire.framing import encode_frame
from services.common.wire.server import Route, WireServer, WireSettings
from services.common.wire.session import Session, Slot

log = logging.getLogger("optivex.relay")

MT = common_pb2.MessageType


@dataclass(frozen=True, kw_only=True)
class EchoConfig(CommonConfig):
    """The echo end: an Order Book that remembers nothing.

    It plays the Order Book's part, so it takes the Order Book's config section
    (the config loader knows only the four services' names).
    """

    SERVICE: ClassVar[str] = "order_book"


@dataclass(frozen=True, kw_only=True)
class RelayConfig(CommonConfig):
    """The relay: a Risk Gateway that checks nothing (and takes its config section)."""

    SERVICE: ClassVar[str] = "risk_gateway"

    order_book_host: str = "127.0.0.1"
    order_book_port: int = 7401


class EchoApp:
    """Answers every order_book request at once, as if it rested or succeeded."""

    def __init__(self, config: EchoConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._next_order_id = 1
        service = frozenset({int(Role.SERVICE)})
        self.server = WireServer(
            "echo",
            self,
            [
                Route(MT.ORDER_BOOK_INSERT_ORDER_REQUEST, self._insert, service),
                Route(MT.ORDER_BOOK_CANCEL_ORDER_REQUEST, self._cancel, service),
                Route(MT.ORDER_BOOK_AMEND_ORDER_REQUEST, self._amend, service),
            ],
            [Role.SERVICE],
            authenticator,
            clock,
            WireSettings.from_config(config),
        )

    async def start(self) -> tuple[str, int]:
        return await self.server.start(self.config.host, self.config.port)

    async def stop(self) -> None:
        await self.server.stop()

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass

    def _insert(
        self, session: Session, request: order_book_pb2.InsertOrderRequest
    ) -> order_book_pb2.InsertOrderResponse:
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_book_pb2.InsertOrderResponse(
            request_id=request.request_id,
            order_id=order_id,
            timestamp=self.clock.now_ns(),
            resting_quantity=request.quantity,
        )

    def _cancel(
        self, session: Session, request: order_book_pb2.CancelOrderRequest
    ) -> order_book_pb2.CancelOrderResponse:
        return order_book_pb2.CancelOrderResponse(
            request_id=request.request_id, cancelled_quantity=1
        )

    def _amend(
        self, session: Session, request: order_book_pb2.AmendOrderRequest
    ) -> order_book_pb2.AmendOrderResponse:
        return order_book_pb2.AmendOrderResponse(
            request_id=request.request_id,
            timestamp=self.clock.now_ns(),
            resting_quantity=request.quantity,
        )


class RelayApp:
    """Forwards participants' orders to the echo and their answers back, in order.

    Each request reserves its place in the session's response order and is
    answered from the upstream response callback (no task, coroutine or future
    per order): the leanest path the wire layer offers.
    """

    def __init__(self, config: RelayConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.upstream: UpstreamConnection | None = None
        self._books: dict[str, int] = {}
        roles = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN)})
        self.server = WireServer(
            "relay",
            self,
            [
                Route(MT.EXECUTION_INSERT_ORDER_REQUEST, self._insert, roles),
                Route(MT.EXECUTION_CANCEL_ORDER_REQUEST, self._cancel, roles),
                Route(MT.EXECUTION_AMEND_ORDER_REQUEST, self._amend, roles),
            ],
            [Role.PARTICIPANT, Role.ADMIN],
            authenticator,
            clock,
            WireSettings.from_config(config),
        )

    async def start(self) -> tuple[str, int]:
        c = self.config
        self.upstream = await UpstreamConnection.open(
            c.order_book_host,
            c.order_book_port,
            c.service_username,
            c.service_password,
            name="relay->echo",
            heartbeat_interval_s=c.heartbeat_interval_s,
            idle_timeout_s=c.idle_timeout_s,
        )
        return await self.server.start(c.host, c.port)

    async def stop(self) -> None:
        await self.server.stop()
        if self.upstream is not None:
            self.upstream.close()

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass

    def _book(self, symbol: str) -> int:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = len(self._books) + 1
        return book

    def _forward(
        self,
        session: Session,
        request_id: int,
        message_type: int,
        message: Any,
        response_type: int,
        translate: Any,
    ) -> None:
        slot = session.reserve()
        upstream = self.upstream
        assert upstream is not None
        upstream.request_callback(
            message_type,
            message,
            functools.partial(self._answer, session, slot, request_id, response_type, translate),
        )

    @staticmethod
    def _answer(
        session: Session,
        slot: Slot,
        request_id: int,
        response_type: int,
        translate: Any,
        outcome: Any,
    ) -> None:
        if isinstance(outcome, Exception):
            response = translate(None)
            response.request_id = request_id
            response.error_message = "upstream unavailable"
        else:
            response = translate(outcome)
            response.request_id = request_id
        session.fulfil(slot, encode_frame(response_type, response.SerializeToString()))

    def _insert(self, session: Session, request: execution_pb2.InsertOrderRequest) -> None:
        self._forward(
            session,
            request.request_id,
            MT.ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                side=request.side,
                price=request.price,
                quantity=request.quantity,
                time_in_force=request.time_in_force,
                client_order_id=request.client_order_id,
                on_behalf_of_username=session.username,
            ),
            MT.EXECUTION_INSERT_ORDER_RESPONSE,
            _insert_response,
        )

    def _cancel(self, session: Session, request: execution_pb2.CancelOrderRequest) -> None:
        self._forward(
            session,
            request.request_id,
            MT.ORDER_BOOK_CANCEL_ORDER_REQUEST,
            order_book_pb2.CancelOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                order_id=request.order_id,
                on_behalf_of_username=session.username,
            ),
            MT.EXECUTION_CANCEL_ORDER_RESPONSE,
            _cancel_response,
        )

    def _amend(self, session: Session, request: execution_pb2.AmendOrderRequest) -> None:
        self._forward(
            session,
            request.request_id,
            MT.ORDER_BOOK_AMEND_ORDER_REQUEST,
            order_book_pb2.AmendOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                order_id=request.order_id,
                price=request.price,
                quantity=request.quantity,
                on_behalf_of_username=session.username,
            ),
            MT.EXECUTION_AMEND_ORDER_RESPONSE,
            _amend_response,
        )


def _insert_response(
    r: order_book_pb2.InsertOrderResponse | None,
) -> execution_pb2.InsertOrderResponse:
    if r is None:
        return execution_pb2.InsertOrderResponse()
    return execution_pb2.InsertOrderResponse(
        error_message=r.error_message,
        order_id=r.order_id,
        timestamp=r.timestamp,
        trade_ids=r.trade_ids,
        traded_quantity=r.traded_quantity,
        resting_quantity=r.resting_quantity,
    )


def _cancel_response(
    r: order_book_pb2.CancelOrderResponse | None,
) -> execution_pb2.CancelOrderResponse:
    if r is None:
        return execution_pb2.CancelOrderResponse()
    return execution_pb2.CancelOrderResponse(
        error_message=r.error_message, cancelled_quantity=r.cancelled_quantity
    )


def _amend_response(
    r: order_book_pb2.AmendOrderResponse | None,
) -> execution_pb2.AmendOrderResponse:
    if r is None:
        return execution_pb2.AmendOrderResponse()
    return execution_pb2.AmendOrderResponse(
        error_message=r.error_message,
        timestamp=r.timestamp,
        trade_ids=r.trade_ids,
        traded_quantity=r.traded_quantity,
        resting_quantity=r.resting_quantity,
    )


def build_echo(config: EchoConfig, authenticator: Authenticator, clock: Clock) -> EchoApp:
    return EchoApp(config, authenticator, clock)


def build_relay(config: RelayConfig, authenticator: Authenticator, clock: Clock) -> RelayApp:
    return RelayApp(config, authenticator, clock)


USAGE = "usage: python -m bench.relay {echo|relay} [--port P] [--order-book-port P] [--loop uvloop]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("echo", "relay"):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "echo":
        return run_service(EchoConfig, build_echo, args[1:])
    return run_service(RelayConfig, build_relay, args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
