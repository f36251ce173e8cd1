"""``optivex risk-gateway``: run the Risk Gateway service."""

from __future__ import annotations

from services.common.config import RiskGatewayConfig
from services.common.lifecycle import run_service
from services.risk_gateway.app import build


def main(argv: list[str] | None = None) -> int:
    return run_service(RiskGatewayConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
