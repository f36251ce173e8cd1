"""Sans-I/O framing: bytes in, frames out.

Every Optivex message is ``length (u32 BE) | message_type (u32 BE) | payload``
where ``length`` counts the bytes after itself (``4 + len(payload)``).  This
module knows nothing about sockets or event loops (no ``asyncio`` import, by
design and checked by a test), so the same decoder serves the servers, the
clients, the fuzz tests and the benchmarks.

The decoder checks ``length`` as soon as the 4-byte length field is complete,
before any body byte is buffered, so a peer announcing 4 GiB cannot make us
allocate it.
"""

from __future__ import annotations

import struct
from typing import Final, NoReturn

HEADER: Final = struct.Struct(">II")
"""Length and message type, both unsigned 32-bit big-endian."""
HEADER_SIZE: Final = HEADER.size
LENGTH: Final = struct.Struct(">I")

DEFAULT_MAX_LENGTH: Final = 1 << 20
"""Largest accepted ``length`` once logged in (1 MiB)."""
PRE_LOGIN_MAX_LENGTH: Final = 4096
"""Largest accepted ``length`` before a successful login."""
MIN_LENGTH: Final = 4
"""A frame must at least carry its message type."""

_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


class FrameError(Exception):
    """The byte stream broke the framing rules and can no longer be trusted.

    ``message_type`` is the type field when it could be read (0 otherwise), so
    the caller can name it in its ``ON_ERROR`` before closing the connection.
    ``frames`` are the whole frames that came before the bad length in the
    same :meth:`FrameDecoder.feed` call: they are as good as if TCP had
    delivered them in a read of their own, so the caller handles them first.
    """

    def __init__(
        self, reason: str, message_type: int = 0, frames: list[tuple[int, bytes]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_type = message_type
        self.frames: list[tuple[int, bytes]] = frames if frames is not None else []


def encode_frame(message_type: int, payload: bytes) -> bytes:
    """Return one complete frame for ``payload`` of ``message_type``."""
    return _pack_header(len(payload) + 4, message_type) + payload


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, receive complete frames.

    However TCP splits or coalesces the stream (1-byte reads, 1,000 frames in
    one read), the same frames come out in the same order.  ``max_length`` may
    be changed between calls (it is raised after login).
    """

    __slots__ = ("_buf", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._buf = bytearray()
        self.max_length = max_length

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Add ``data`` and return every frame it completes as ``(type, payload)``.

        Raises :class:`FrameError` for ``length < 4`` or ``length`` above
        ``max_length``; the frames completed before the bad length in the same
        call travel in the error (``FrameError.frames``).  PROTOCOL.md: a
        reader reads frames "however the TCP stream splits or coalesces them",
        so a good request must not be lost because a bad length happened to
        arrive in the same read; only what follows the bad length is
        untrustworthy.
        """
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            # Fast path: parse straight from the read without copying it first.
            view = data if isinstance(data, bytes) else bytes(data)
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        end = len(view)
        pos = 0
        max_length = self.max_length
        unpack_header = _unpack_header
        while end - pos >= 8:
            # Both header fields in one call: the common case has the whole
            # header; only a tail of 4-7 bytes needs the length alone (below).
            length, message_type = unpack_header(view, pos)
            if length < MIN_LENGTH or length > max_length:
                self._raise_bad_length(length, max_length, message_type, frames)
            stop = pos + 4 + length
            if stop > end:
                break
            append((message_type, bytes(view[pos + 8 : stop])))
            pos = stop
        if 4 <= end - pos < 8:
            (length,) = LENGTH.unpack_from(view, pos)
            if length < MIN_LENGTH or length > max_length:
                self._raise_bad_length(length, max_length, 0, frames)
        if buf:
            del buf[:pos]
        elif pos < end:
            self._buf = bytearray(view[pos:])
        return frames

    def _raise_bad_length(
        self, length: int, max_length: int, message_type: int, frames: list[tuple[int, bytes]]
    ) -> NoReturn:
        self._buf = bytearray()
        if length < MIN_LENGTH:
            reason = f"frame length {length} is below the minimum of 4"
        else:
            reason = f"frame length {length} exceeds the maximum of {max_length}"
        raise FrameError(reason, message_type, frames)
