"""The floor benchmark's pipe and echo carry the load generator's whole order mix."""

from __future__ import annotations

import asyncio
import struct

from bench.floor import Echo, Pipe, _request_id_prefix
from clients.load_plan import Mix
from clients.load_run import LoadOptions, LoadRun


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))


def test_request_id_prefix_keeps_a_multi_byte_varint() -> None:
    assert _request_id_prefix(b"\x08\x96\x01\x12\x01A") == b"\x08\x96\x01"
    assert _request_id_prefix(b"\x08\x05") == b"\x08\x05"
    assert _request_id_prefix(b"\x12\x01A") == b""
    assert _request_id_prefix(b"") == b""


def test_echo_answers_each_frame_even_when_split_across_reads() -> None:
    echo = Echo()
    transport = _Transport()
    echo.connection_made(transport)
    frames = b"".join(
        struct.pack(">II", len(body) + 4, kind) + body
        for kind, body in ((0, b"\x08\x01\x12\x01a"), (40, b"\x08\x96\x01\x12\x01A"))
    )
    echo.data_received(frames[:5])
    assert transport.written == []
    echo.data_received(frames[5:])
    assert transport.written == [
        b"\x00\x00\x00\x08\x00\x00\x00\x01\x08\x01\x18\x01"
        + b"\x00\x00\x00\x09\x00\x00\x00\x29\x08\x96\x01\x18\x05"
    ]


async def test_every_order_of_a_step_comes_back_through_pipe_and_echo() -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(Echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    pipe = await loop.create_server(lambda: Pipe(echo_port), "127.0.0.1", 0)
    options = LoadOptions(
        port=pipe.sockets[0].getsockname()[1],
        info_port=0,
        symbols=["FLA", "FLB"],
        connections=2,
        mix=Mix(),
        seed=5,
    )
    run = LoadRun(options)
    try:
        await run.setup()
        step = await run.step(rate=2000, duration_s=0.2)
    finally:
        await run.close()
        pipe.close()
        echo.close()
    assert step["scheduled"] == step["completed"] == 400
    assert step["unanswered"] == 0 and step["failed"] == 0
    assert sum(step["errors"].values()) == 0
