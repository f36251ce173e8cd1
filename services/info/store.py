"""The instrument registry on disk: one JSON file, replaced atomically.

Why a whole-file rewrite: the registry is small (one entry per live instrument)
and changes only when Admin creates or deletes an instrument, plus a periodic save
of trade statistics. Writing a temporary file, fsyncing it, renaming it over the
old one and fsyncing the directory means a crash leaves either the old or the new
registry, never a torn one.

Saves are split in two so the periodic one can run off the event loop: ``encode``
(on the loop: a consistent JSON snapshot, numbered) and ``write`` (safe in a worker
thread). Each write uses its own temporary file, and a rename never replaces a
newer snapshot with an older one, so a slow background write cannot undo an
instrument creation saved after it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path

from services.info.registry import Registry, RegistryError

log = logging.getLogger("optivex.info.store")

FILE_NAME = "instruments.json"


class RegistryStore:
    """Loads and saves the registry in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / FILE_NAME
        self._lock = threading.Lock()
        self._encoded = 0
        self._written = 0

    def load(self) -> Registry:
        """The saved registry, or an empty one if none was saved yet.

        A file that exists but cannot be read raises ``OSError``: starting with an
        empty registry would silently forget every instrument. Temporary files of
        writes a crash interrupted are removed.
        """
        if self.data_dir.is_dir():
            for stale in self.data_dir.glob(f".{FILE_NAME}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Registry()
        try:
            registry = Registry.from_dict(json.loads(text))
        except (ValueError, RegistryError) as exc:
            raise OSError(f"cannot load the instrument registry {self.path}: {exc}") from exc
        log.info("loaded %d instruments from %s", len(registry), self.path)
        return registry

    def encode(self, registry: Registry) -> tuple[bytes, int]:
        """A numbered snapshot of ``registry`` for :meth:`write` (call on the loop)."""
        self._encoded += 1
        data = json.dumps(registry.to_dict(), indent=1, sort_keys=True).encode("utf-8")
        return data, self._encoded

    def write(self, data: bytes, number: int) -> None:
        """Write snapshot ``number`` atomically, unless a newer one is already on disk.

        Thread-safe; raises ``OSError`` if the disk refuses.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILE_NAME}.{number}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if number < self._written:
                os.unlink(tmp)
                return
            os.replace(tmp, self.path)
            self._written = number
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def save(self, registry: Registry) -> None:
        """Encode and write now (blocking)."""
        self.write(*self.encode(registry))
