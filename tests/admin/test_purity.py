"""The pure cores of the Admin service import neither asyncio nor protobuf."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import services.admin

PURE = ["model", "lifecycle", "reconcile", "registry", "intents"]
FORBIDDEN = ("asyncio", "google.protobuf", "services.common.pb", "services.common.wire")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_has_no_io_framework_imports(module: str) -> None:
    path = Path(services.admin.__file__).parent / f"{module}.py"
    for name in imported_modules(path):
        for forbidden in FORBIDDEN:
            assert not (name == forbidden or name.startswith(forbidden + ".")), (
                f"{module}.py imports {name}"
            )
        if name.startswith("services.admin."):
            assert name.split(".")[2] in PURE, f"{module}.py imports impure {name}"
