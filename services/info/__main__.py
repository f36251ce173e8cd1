"""``optivex info`` / ``python -m services.info``: run the Info (market data) service."""

from __future__ import annotations

from services.common.config import InfoConfig
from services.common.lifecycle import run_service
from services.info.app import build


def main(argv: list[str] | None = None) -> int:
    """Run Info until SIGTERM/SIGINT."""
    return run_service(InfoConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
