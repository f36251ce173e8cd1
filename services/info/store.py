"""The instrument registry on disk: one JSON file, replaced atomically.

Why a whole-file rewrite: the registry is small (one entry per live instrument)
and changes only when Admin creates or deletes an instrument, plus a periodic save
of trade statistics. Writing a temporary file, fsyncing it, renaming it over the
old one and fsyncing the directory means a crash leaves either the old or the new
registry, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from services.info.registry import Registry, RegistryError

log = logging.getLogger("optivex.info.store")

FILE_NAME = "instruments.json"


class RegistryStore:
    """Loads and saves the registry in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / FILE_NAME

    def load(self) -> Registry:
        """The saved registry, or an empty one if none was saved yet.

        A file that exists but cannot be read raises ``OSError``: starting with an
        empty registry would silently forget every instrument.
        """
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

    def save(self, registry: Registry) -> None:
        """Write the registry atomically (temp file, fsync, rename, fsync the directory)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(registry.to_dict(), indent=1, sort_keys=True).encode("utf-8")
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
