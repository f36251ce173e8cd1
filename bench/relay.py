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

``relay --books SYMBOL=ID,...`` points the relay at a real Order Book instead
(``bench/relay_front.py`` uses it to price the Risk Gateway's logic), and
``echo --journal loop|thread`` adds a group-committed ``fdatasync`` journal to
the echo (to price durability alone).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar

from google.protobuf.message import Message

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
R = TypeVar("R", bound=Message)

MT = common_pb2.MessageType
# Plain ints: attribute access on a protobuf enum wrapper is a Python call per use.
EXECUTION_AMEND_ORDER_REQUEST: Final = int(MT.EXECUTION_AMEND_ORDER_REQUEST)
EXECUTION_AMEND_ORDER_RESPONSE: Final = int(MT.EXECUTION_AMEND_ORDER_RESPONSE)
EXECUTION_CANCEL_ORDER_REQUEST: Final = int(MT.EXECUTION_CANCEL_ORDER_REQUEST)
EXECUTION_CANCEL_ORDER_RESPONSE: Final = int(MT.EXECUTION_CANCEL_ORDER_RESPONSE)
EXECUTION_INSERT_ORDER_REQUEST: Final = int(MT.EXECUTION_INSERT_ORDER_REQUEST)
EXECUTION_INSERT_ORDER_RESPONSE: Final = int(MT.EXECUTION_INSERT_ORDER_RESPONSE)
ORDER_BOOK_AMEND_ORDER_REQUEST: Final = int(MT.ORDER_BOOK_AMEND_ORDER_REQUEST)
ORDER_BOOK_AMEND_ORDER_RESPONSE: Final = int(MT.ORDER_BOOK_AMEND_ORDER_RESPONSE)
ORDER_BOOK_CANCEL_ORDER_REQUEST: Final = int(MT.ORDER_BOOK_CANCEL_ORDER_REQUEST)
ORDER_BOOK_CANCEL_ORDER_RESPONSE: Final = int(MT.ORDER_BOOK_CANCEL_ORDER_RESPONSE)
ORDER_BOOK_INSERT_ORDER_REQUEST: Final = int(MT.ORDER_BOOK_INSERT_ORDER_REQUEST)
ORDER_BOOK_INSERT_ORDER_RESPONSE: Final = int(MT.ORDER_BOOK_INSERT_ORDER_RESPONSE)


@dataclass(frozen=True, kw_only=True)
class EchoConfig(CommonConfig):
    """The echo end: an Order Book that remembers nothing (but may journal).

    It plays the Order Book's part, so it takes the Order Book's config section
    (the config loader knows only the four services' names).  ``journal``
    measures the cost of durability alone: ``none``; ``loop`` (write and
    ``fdatasync`` once per event-loop turn on the loop, then answer: the Order
    Book's current group commit); ``thread`` (the same group commit on a
    writer thread, the loop keeps reading and the next batch forms meanwhile).
    """

    SERVICE: ClassVar[str] = "order_book"

    journal: Literal["none", "loop", "thread"] = "none"
    data_dir: Path = Path("./var/echo")


@dataclass(frozen=True, kw_only=True)
class RelayConfig(CommonConfig):
    """The relay: a Risk Gateway that checks nothing (and takes its config section)."""

    SERVICE: ClassVar[str] = "risk_gateway"

    order_book_host: str = "127.0.0.1"
    order_book_port: int = 7401
    books: str = ""
    """``SYMBOL=ORDER_BOOK_ID,...``: forward to a real Order Book (else ids 1, 2, ... by first use)."""


class EchoApp:
    """Answers every order_book request at once, as if it rested or succeeded."""

    def __init__(self, config: EchoConfig, authenticator: Authenticator, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._next_order_id = 1
        self._fd = -1
        self._records: list[bytes] = []
        self._answers: list[tuple[Session, Slot, bytes]] = []
        self._commit_scheduled = False
        self._syncing = False
        self._writer = ThreadPoolExecutor(1, "echo-journal") if config.journal == "thread" else None
        service = frozenset({int(Role.SERVICE)})
        self.server = WireServer(
            "echo",
            self,
            [
                Route(ORDER_BOOK_INSERT_ORDER_REQUEST, self._insert, service),
                Route(ORDER_BOOK_CANCEL_ORDER_REQUEST, self._cancel, service),
                Route(ORDER_BOOK_AMEND_ORDER_REQUEST, self._amend, service),
            ],
            [Role.SERVICE],
            authenticator,
            clock,
            WireSettings.from_config(config),
        )

    async def start(self) -> tuple[str, int]:
        if self.config.journal != "none":
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            path = self.config.data_dir / "echo.journal"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return await self.server.start(self.config.host, self.config.port)

    async def stop(self) -> None:
        await self.server.stop()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass

    def _answer(self, session: Session, request: Any, response_type: int, response: R) -> R | None:
        """Answer now, or (journal on) once the request's record is on disk."""
        if self._fd < 0:
            return response
        self._records.append(request.SerializeToString())
        frame = encode_frame(response_type, response.SerializeToString())
        self._answers.append((session, session.reserve(), frame))
        if not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit)
        return None

    def _commit(self) -> None:
        self._commit_scheduled = False
        if self._syncing or not self._records:
            return  # the batch in flight picks these up when it is done
        records, self._records = self._records, []
        answers, self._answers = self._answers, []
        if self._writer is None:
            _write_and_sync(self._fd, records)
            self._release(answers)
            return
        self._syncing = True
        future = asyncio.get_running_loop().run_in_executor(
            self._writer, _write_and_sync, self._fd, records
        )
        future.add_done_callback(lambda _: self._synced(answers))

    def _synced(self, answers: list[tuple[Session, Slot, bytes]]) -> None:
        self._syncing = False
        self._release(answers)
        if self._records:
            self._commit()

    @staticmethod
    def _release(answers: list[tuple[Session, Slot, bytes]]) -> None:
        for session, slot, frame in answers:
            session.fulfil(slot, frame)

    def _insert(
        self, session: Session, request: order_book_pb2.InsertOrderRequest
    ) -> order_book_pb2.InsertOrderResponse | None:
        order_id = self._next_order_id
        self._next_order_id += 1
        response = order_book_pb2.InsertOrderResponse(
            request_id=request.request_id,
            order_id=order_id,
            timestamp=self.clock.now_ns(),
            resting_quantity=request.quantity,
        )
        return self._answer(session, request, ORDER_BOOK_INSERT_ORDER_RESPONSE, response)

    def _cancel(
        self, session: Session, request: order_book_pb2.CancelOrderRequest
    ) -> order_book_pb2.CancelOrderResponse | None:
        response = order_book_pb2.CancelOrderResponse(
            request_id=request.request_id, cancelled_quantity=1
        )
        return self._answer(session, request, ORDER_BOOK_CANCEL_ORDER_RESPONSE, response)

    def _amend(
        self, session: Session, request: order_book_pb2.AmendOrderRequest
    ) -> order_book_pb2.AmendOrderResponse | None:
        response = order_book_pb2.AmendOrderResponse(
            request_id=request.request_id,
            timestamp=self.clock.now_ns(),
            resting_quantity=request.quantity,
        )
        return self._answer(session, request, ORDER_BOOK_AMEND_ORDER_RESPONSE, response)


def _write_and_sync(fd: int, records: list[bytes]) -> None:
    """Append a batch and make it durable (runs on the loop or on the writer thread)."""
    data = memoryview(b"".join(len(r).to_bytes(4, "big") + r for r in records))
    while data:
        data = data[os.write(fd, data) :]
    os.fdatasync(fd)


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
        self._books: dict[str, int] = {
            symbol.strip(): int(book)
            for symbol, _, book in (p.partition("=") for p in config.books.split(",") if p)
        }
        roles = frozenset({int(Role.PARTICIPANT), int(Role.ADMIN)})
        self.server = WireServer(
            "relay",
            self,
            [
                Route(EXECUTION_INSERT_ORDER_REQUEST, self._insert, roles),
                Route(EXECUTION_CANCEL_ORDER_REQUEST, self._cancel, roles),
                Route(EXECUTION_AMEND_ORDER_REQUEST, self._amend, roles),
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
            ORDER_BOOK_INSERT_ORDER_REQUEST,
            order_book_pb2.InsertOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                side=request.side,
                price=request.price,
                quantity=request.quantity,
                time_in_force=request.time_in_force,
                client_order_id=request.client_order_id,
                on_behalf_of_username=session.username,
            ),
            EXECUTION_INSERT_ORDER_RESPONSE,
            _insert_response,
        )

    def _cancel(self, session: Session, request: execution_pb2.CancelOrderRequest) -> None:
        self._forward(
            session,
            request.request_id,
            ORDER_BOOK_CANCEL_ORDER_REQUEST,
            order_book_pb2.CancelOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                order_id=request.order_id,
                on_behalf_of_username=session.username,
            ),
            EXECUTION_CANCEL_ORDER_RESPONSE,
            _cancel_response,
        )

    def _amend(self, session: Session, request: execution_pb2.AmendOrderRequest) -> None:
        self._forward(
            session,
            request.request_id,
            ORDER_BOOK_AMEND_ORDER_REQUEST,
            order_book_pb2.AmendOrderRequest(
                order_book_id=self._book(request.instrument_symbol),
                order_id=request.order_id,
                price=request.price,
                quantity=request.quantity,
                on_behalf_of_username=session.username,
            ),
            EXECUTION_AMEND_ORDER_RESPONSE,
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
