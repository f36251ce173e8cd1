"""The pure cores of Info import neither asyncio nor protobuf (nor sockets)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import services.info

PURE = ["events.py", "mirror.py", "registry.py", "subscriptions.py"]
FORBIDDEN = ("asyncio", "google", "services.common.pb", "socket", "services.common.wire")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    path = Path(services.info.__file__).parent / module
    bad = {
        name
        for name in imported_modules(path)
        for prefix in FORBIDDEN
        if name == prefix or name.startswith(prefix + ".")
    }
    assert not bad, f"{module} imports {sorted(bad)}"
