"""Imports point one way (DESIGN.md): no package imports a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "domain": set(),
    "memory": {"domain"},
    "tools": {"domain"},
    "infra": {"domain", "memory", "tools"},
    "actors": {"domain", "memory", "tools", "infra"},
    "projections": {"domain", "memory", "infra"},
    "gateway": {"domain", "actors", "projections", "infra", "memory", "tools"},
    "simulations": {"domain", "memory", "tools", "infra", "actors", "projections", "gateway"},
}
DOMAIN_FORBIDDEN = {"ray", "psycopg", "redis", "websockets", "httpx", "anthropic", "openai"}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    layers = set(ALLOWED) | {"salon"}
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = imports_of(path) & layers - {package}
        upward = imported - ALLOWED[package]
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"
        if package == "domain":
            io = imports_of(path) & DOMAIN_FORBIDDEN
            assert not io, f"{path.relative_to(ROOT)} does I/O through {sorted(io)}"
