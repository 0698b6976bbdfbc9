"""The pure core imports no I/O: no websocket, redis, socket, threading nor time (STYLE).

Imports are read from each module's AST, including imports inside functions, and the
``bridge.*`` modules they pull in are followed, so an indirect import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parent.parent / "bridge"
PURE = ["protocol", "events", "records", "book", "streams", "shards", "subscription", "jsnum",
        "wsframes"]  # fmt: skip
FORBIDDEN = {"websocket", "redis", "socket", "threading", "time"}


def imported(module: str) -> set[str]:
    """Top-level names of every module ``bridge/<module>.py`` imports (absolute, dotted)."""
    tree = ast.parse((BRIDGE / f"{module}.py").read_text(), filename=f"{module}.py")
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = "bridge" + (f".{node.module}" if node.module else "")
                names.update(f"{base}.{alias.name}" for alias in node.names)
                names.add(base)
            elif node.module:
                names.add(node.module)
                if node.module == "bridge":
                    names.update(f"bridge.{alias.name}" for alias in node.names)
    return names


def closure(module: str) -> dict[str, set[str]]:
    """Imports of ``module`` and of every bridge module it reaches, by module."""
    seen: dict[str, set[str]] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not (BRIDGE / f"{name}.py").exists():
            continue
        seen[name] = imported(name)
        todo += [i.split(".")[1] for i in seen[name] if i.startswith("bridge.")]
    return seen


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    """bridge/<module>.py and the bridge modules it imports use no I/O module."""
    for name, imports in closure(module).items():
        bad = sorted(i for i in imports if i.split(".")[0] in FORBIDDEN)
        assert bad == [], f"bridge/{name}.py (reached from {module}) imports {bad}"


def test_the_check_sees_imports() -> None:
    """Sanity: the same reader finds the I/O imports of publisher.py."""
    assert {"redis", "threading", "time"} <= {i.split(".")[0] for i in imported("publisher")}
