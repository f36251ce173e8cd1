"""PROTOCOL.md section 1 framing, written from the contract alone.

``length`` (u32 big-endian) counts the bytes that follow it: the 4-byte
``message_type`` plus the payload.  The decoder is sans-I/O so the same code
reads 1-byte splits and 1,000 coalesced frames, and so the self-tests can feed it
the contract's test vectors without a socket.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">II")
"""``length``, ``message_type``: both unsigned 32-bit big-endian."""


class FramingError(Exception):
    """The peer sent bytes that cannot be a frame (``length < 4``)."""


def encode_frame(message_type: int, payload: bytes) -> bytes:
    """One frame: ``length = 4 + len(payload)``, then the type, then the payload."""
    return HEADER.pack(4 + len(payload), message_type) + payload


def encode_header(length: int, message_type: int) -> bytes:
    """A raw header with any ``length`` (to send malformed frames on purpose)."""
    return HEADER.pack(length, message_type)


class FrameDecoder:
    """Feed bytes, get whole ``(message_type, payload)`` frames back in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data``; return every frame it completed (possibly none)."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from(">I", self._buffer, 0)
            if length < 4:
                raise FramingError(f"frame length {length} < 4")
            if len(self._buffer) < 4 + length:
                break
            (message_type,) = struct.unpack_from(">I", self._buffer, 4)
            frames.append((message_type, bytes(self._buffer[8 : 4 + length])))
            del self._buffer[: 4 + length]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)
