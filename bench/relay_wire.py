"""Wire-layer cost per message, without sockets: what every hop pays in Python.

Feeds pre-encoded frames straight into a server :class:`Session` and a client
:class:`UpstreamConnection` whose transports are in-memory stand-ins, and times
the CPU per message of the three paths every order crosses on each hop:

* ``server``: frame in -> decode -> route -> handler -> response encoded -> queued
  -> flushed (a handler answering at once, like the echo);
* ``server_reserved``: the same, answered later through ``reserve``/``fulfil``
  (the Order Book's and the relay's way);
* ``client``: ``request`` (id, encode, future) then the response frame in ->
  decode -> future resolved -> done-callback run;
* ``client_callback``: the same with ``request_callback`` (no future; the
  relay's and the load generator's way).

The figures exclude the kernel (no syscalls), so they are the floor of what
one more hop costs; ``python -m bench.relay_wire`` prints them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.common.clock import SystemClock
from services.common.pb import common_pb2, order_book_pb2
from services.common.wire.client import UpstreamConnection
from services.common.wire.framing import encode_frame
from services.common.wire.server import Route, WireServer
from services.common.wire.session import Session

MT = common_pb2.MessageType
INSERT = MT.ORDER_BOOK_INSERT_ORDER_REQUEST
INSERT_RESPONSE = MT.ORDER_BOOK_INSERT_ORDER_RESPONSE


class _Transport(asyncio.Transport):
    """Swallows writes; counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _User:
    name = "service"
    role = 3


class _Service:
    def on_login(self, session: Session) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass


class _NoAuth:
    async def authenticate(self, username: str, password: str, peer: str) -> Any:
        return _User()


def _request(i: int) -> bytes:
    message = order_book_pb2.InsertOrderRequest(
        request_id=i, order_book_id=1, side=common_pb2.SELL, price=100.25, quantity=5,
        on_behalf_of_username="alice",
    )  # fmt: skip
    return encode_frame(INSERT, message.SerializeToString())


def _session(handler: Any) -> tuple[Session, _Transport]:
    server = WireServer(
        "bench", _Service(), [Route(INSERT, handler, frozenset({3}))], [3], _NoAuth(), SystemClock()
    )
    session = Session(server)
    transport = _Transport()
    session.connection_made(transport)
    session.user = _User()
    session.username = "service"
    session.role = 3
    session.decoder.max_length = 1 << 20
    return session, transport


async def _server_path(n: int, batch: int, reserved: bool) -> float:
    loop = asyncio.get_running_loop()
    pending: list[Any] = []

    def answer(session: Session, request: Any) -> Any:
        response = order_book_pb2.InsertOrderResponse(
            request_id=request.request_id, order_id=request.request_id, resting_quantity=5
        )
        if not reserved:
            return response
        pending.append((session.reserve(), response))
        return None

    session, transport = _session(answer)
    chunks = [b"".join(_request(i) for i in range(k, k + batch)) for k in range(0, n, batch)]
    cpu = time.process_time()
    for chunk in chunks:
        session.data_received(chunk)
        if reserved:
            for slot, response in pending:
                session.fulfil(slot, encode_frame(INSERT_RESPONSE, response.SerializeToString()))
            pending.clear()
        await asyncio.sleep(0)  # the flush runs here, once per batch
    cpu = time.process_time() - cpu
    assert transport.writes > 0
    loop.call_soon(lambda: None)
    return cpu / n * 1e6


async def _client_path(n: int, batch: int, callback: bool = False) -> float:
    conn = UpstreamConnection("bench", None, 1.0, 15.0, 1 << 20)
    conn.connection_made(_Transport())
    done = 0

    def on_done(future: Any) -> None:
        nonlocal done
        done += 1

    responses = [
        encode_frame(
            INSERT_RESPONSE,
            order_book_pb2.InsertOrderResponse(
                request_id=i + 1, order_id=i + 1, resting_quantity=5
            ).SerializeToString(),
        )
        for i in range(n)
    ]
    cpu = time.process_time()
    for k in range(0, n, batch):
        for _ in range(batch):
            message = order_book_pb2.InsertOrderRequest(
                order_book_id=1, side=common_pb2.SELL, price=100.25, quantity=5,
                on_behalf_of_username="alice",
            )  # fmt: skip
            if callback:
                conn.request_callback(INSERT, message, on_done)
            else:
                conn.request_raw(INSERT, message).add_done_callback(on_done)
        await asyncio.sleep(0)  # the request flush
        conn.data_received(b"".join(responses[k : k + batch]))
        await asyncio.sleep(0)  # the done-callbacks
    cpu = time.process_time() - cpu
    assert done == n, done
    return cpu / n * 1e6


def measure(n: int = 50_000, batches: tuple[int, ...] = (1, 16)) -> dict[str, float]:
    """µs of CPU per message on each path, for each frames-per-read batch size."""
    figures: dict[str, float] = {}
    for batch in batches:
        figures[f"server_b{batch}"] = round(asyncio.run(_server_path(n, batch, False)), 2)
        figures[f"server_reserved_b{batch}"] = round(asyncio.run(_server_path(n, batch, True)), 2)
        figures[f"client_b{batch}"] = round(asyncio.run(_client_path(n, batch)), 2)
        figures[f"client_callback_b{batch}"] = round(
            asyncio.run(_client_path(n, batch, callback=True)), 2
        )
    return figures


def main() -> int:
    for name, value in measure().items():
        print(f"{name:>22}: {value:6.2f} µs/message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
