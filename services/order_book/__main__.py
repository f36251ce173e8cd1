"""``optivex order-book`` / ``python -m services.order_book``: run the Order Book."""

from __future__ import annotations

from services.common.config import OrderBookConfig
from services.common.lifecycle import run_service
from services.order_book.app import build


def main(argv: list[str] | None = None) -> int:
    """Run the Order Book until SIGTERM/SIGINT."""
    return run_service(OrderBookConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
