"""The pure core imports neither asyncio nor protobuf nor the wire layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE = [
    "windows",
    "limits",
    "limit_values",
    "accounts",
    "orders",
    "instruments",
    "coids",
    "store",
    "store_format",
    "compaction",
]
FORBIDDEN = ("asyncio", "google.protobuf", "services.common.pb", "services.common.wire")
ROOT = Path(__file__).resolve().parents[2] / "services" / "risk_gateway"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_nothing_impure(module: str) -> None:
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (
                f"{module}.py imports {name}"
            )
