"""Fixtures for memory tests: the real embedder (loaded once) and a fresh schema per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from infra.embeddings import MiniLMEmbedder
from infra.store import EventStore
from salon.platform import Platform


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """all-MiniLM-L6-v2, loaded once for the session (loading takes seconds)."""
    model = MiniLMEmbedder()
    model.embed(["warm up"])
    return model


@pytest.fixture(scope="session")
def database_url(platform: Platform) -> str:
    assert platform.running is not None and platform.running.settings.database_url
    return platform.running.settings.database_url


@pytest.fixture(scope="session")
def events(platform: Platform) -> EventStore:
    assert platform.store is not None
    return platform.store


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A schema of this test's own for the memory tables, dropped afterwards."""
    name = f"mem_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
