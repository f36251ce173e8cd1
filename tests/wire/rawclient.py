"""A deliberately dumb TCP client for wire-level tests: bytes in, frames out."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from google.protobuf.message import Message

from services.common.pb import common_pb2
from services.common.wire.framing import FrameDecoder, encode_frame
from services.common.wire.registry import MESSAGE_CLASSES, message_type_of

HEARTBEAT = common_pb2.MessageType.HEARTBEAT


class RawClient:
    """Writes frames or raw bytes; reads frames, skipping heartbeats unless asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(max_length=1 << 30)
        self.frames: list[tuple[int, bytes]] = []
        self.heartbeats = 0

    @classmethod
    async def connect(cls, host: str, port: int, **kwargs: Any) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, **kwargs)
        return cls(reader, writer)

    def send(self, message: Message, message_type: int | None = None) -> None:
        kind = message_type_of(message) if message_type is None else message_type
        self.writer.write(encode_frame(kind, message.SerializeToString()))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv_frame(
        self, timeout: float = 5.0, skip_heartbeats: bool = True
    ) -> tuple[int, bytes]:
        while True:
            while not self.frames:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    raise EOFError("connection closed by the server")
                self.frames.extend(self.decoder.feed(data))
            frame = self.frames.pop(0)
            if frame[0] == HEARTBEAT and skip_heartbeats:
                self.heartbeats += 1
                continue
            return frame

    async def recv(self, timeout: float = 5.0) -> Any:
        message_type, payload = await self.recv_frame(timeout)
        return message_type, MESSAGE_CLASSES[message_type].FromString(payload)

    async def expect_closed(self, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """Read until EOF; returns the non-heartbeat frames seen before it."""
        seen: list[tuple[int, bytes]] = []
        try:
            while True:
                seen.append(await self.recv_frame(timeout))
        except (EOFError, ConnectionResetError):
            return seen

    async def login(self, username: str, password: str, request_id: int = 1) -> Any:
        self.send(
            common_pb2.LoginRequest(request_id=request_id, username=username, password=password)
        )
        message_type, response = await self.recv()
        assert message_type == common_pb2.MessageType.LOGIN_RESPONSE
        return response

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
