"""``optivex admin-service``: run the Admin service."""

from __future__ import annotations

from services.admin.app import build
from services.common.config import AdminConfig
from services.common.lifecycle import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service(AdminConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
