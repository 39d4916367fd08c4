"""Fixtures of the projection tests: a fresh schema per test, the session's database and Valkey."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from salon.platform import Platform


@pytest.fixture
def database_url(platform: Platform) -> str:
    """The session PostgreSQL."""
    assert platform.running is not None and platform.running.settings.database_url
    return platform.running.settings.database_url


@pytest.fixture
def redis_url(platform: Platform) -> str:
    """The session Valkey."""
    assert platform.running is not None and platform.running.settings.redis_url
    return platform.running.settings.redis_url


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh schema name for this test's views; it and NAME_* are dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        for (found,) in conn.execute("SELECT schema_name FROM information_schema.schemata "
                                     "WHERE schema_name LIKE %s", (f"{name}%",)).fetchall():
            conn.execute(f"DROP SCHEMA IF EXISTS {found} CASCADE")


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it is truthy; fail saying ``what`` was awaited and last seen."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    seen: Any = None
    while time.monotonic() < deadline:
        seen = condition()
        if seen:
            return seen
        time.sleep(pause)  # polling interval, not a wait for an outcome
        pause = min(pause * 2, 0.1)
    raise AssertionError(f"timed out waiting for {what}; last saw {seen!r}")
