"""Fixtures for provider tests: a local vendor server and options that record pauses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from infra.llm.limits import MemoryLimiter
from infra.llm.registry import ProviderOptions
from infra.llm.retries import RetryPolicy
from tests.infra.llm.vendors import Vendors

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-fedcba9876543210"


@pytest.fixture
async def vendors() -> AsyncIterator[Vendors]:
    server = await Vendors().start()
    yield server
    await server.stop()


@dataclass
class Pauses:
    """Records every pause a retry asked for, without waiting."""

    asked: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


@pytest.fixture
def pauses() -> Pauses:
    return Pauses()


@pytest.fixture
def options(pauses: Pauses) -> ProviderOptions:
    """Fresh limiter per test; retries pause through ``pauses`` (recorded, not waited)."""
    return ProviderOptions(limiter=MemoryLimiter(), retry=RetryPolicy(attempts=3),
                           sleep=pauses, timeout=10.0)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    # Fallbacks of another provider use that vendor's usual variable.
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    return {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}
