"""Connections opened at session start that never log in, watched by threads.

The contract closes a connection that has not logged in within 10 s and sends a
heartbeat on any connection idle for 1 s.  Waiting 10 s inside one test would
cost 10 s of the run; instead one such connection per port is opened when the
exchange is ready, a thread records what arrives and when it closes, and the
test reads the record (waiting only for whatever time is left).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from system_tests.harness.conn import Endpoint
from system_tests.harness.framing import FrameDecoder, FramingError
from system_tests.harness.messages import HEARTBEAT, parse


@dataclass
class Sentinel:
    endpoint: Endpoint
    opened_at: float = 0.0
    closed_at: float | None = None
    heartbeats: list[float] = field(default_factory=list)
    frames: list[tuple[float, int, object]] = field(default_factory=list)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self, max_wait_s: float = 120.0) -> None:
        thread = threading.Thread(
            target=self._run, args=(max_wait_s,), name=f"sentinel-{self.endpoint.name}", daemon=True
        )
        thread.start()

    def _run(self, max_wait_s: float) -> None:
        decoder = FrameDecoder()
        try:
            with socket.create_connection((self.endpoint.host, self.endpoint.port), 10) as sock:
                self.opened_at = time.monotonic()
                sock.settimeout(max_wait_s)
                while True:
                    data = sock.recv(65536)
                    now = time.monotonic()
                    if not data:
                        break
                    for message_type, payload in decoder.feed(data):
                        if message_type == HEARTBEAT:
                            self.heartbeats.append(now)
                        else:
                            self.frames.append((now, message_type, parse(message_type, payload)))
        except (OSError, FramingError) as exc:
            if isinstance(exc, TimeoutError):
                self.error = f"still open after {max_wait_s:.0f} s"
            elif not isinstance(exc, ConnectionResetError):
                self.error = repr(exc)
        finally:
            self.closed_at = time.monotonic()
            self.done.set()
