"""A stand-in for a subscriber's session: what Info's publisher writes to."""

from __future__ import annotations

from typing import Any

from services.common.wire.framing import FrameDecoder
from services.common.wire.registry import MESSAGE_CLASSES


class FakeSession:
    """Keeps every frame the publisher sends; :meth:`take` decodes and clears them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.congested = False
        self.closed = False
        self.state: dict[str, Any] = {}

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def take(self) -> list[tuple[int, Any]]:
        decoder = FrameDecoder()
        out = []
        for frame in self.frames:
            for kind, payload in decoder.feed(frame):
                out.append((kind, MESSAGE_CLASSES[kind].FromString(payload)))
        self.frames.clear()
        return out
