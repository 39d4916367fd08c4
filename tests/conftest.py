"""Session-scoped real services: embedded PostgreSQL and Valkey, a local Ray, the gateway."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings
from salon.platform import Platform, Running


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One Salon (Postgres, Valkey, Ray, gateway) for the whole test session."""
    home: Path = tmp_path_factory.mktemp("salon-home")
    # Every store the tests open themselves seals with the session's master key.
    os.environ["SALON_MASTER_KEY_FILE"] = str(home / "master.key")
    started = Platform(Settings(home=home, port=0, demo=False, snapshot_interval=10))
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def salon(platform: Platform) -> Running:
    assert platform.running is not None
    return platform.running


@pytest.fixture
def name() -> str:
    """A fresh name, so every test has rooms and agents of its own."""
    return f"t-{uuid.uuid4().hex[:10]}"
