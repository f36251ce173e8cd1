"""A stand-in for a subscriber's session: what Info's publisher writes to."""

from __future__ import annotations

from typing import Any

from bench import info_cpu
from services.common.wire.framing import FrameDecoder
from services.common.wire.registry import MESSAGE_CLASSES


class FakeSession(info_cpu.FakeSession):
    """The benchmark's session (keeps every frame the publisher sends), with
    :meth:`take`, which decodes the frames and clears them."""

    def take(self) -> list[tuple[int, Any]]:
        decoder = FrameDecoder()
        out = []
        for frame in self.frames:
            for kind, payload in decoder.feed(frame):
                out.append((kind, MESSAGE_CLASSES[kind].FromString(payload)))
        self.frames.clear()
        return out
