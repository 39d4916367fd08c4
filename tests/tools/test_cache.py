"""Cacheable tools share results through a real Valkey, keyed by tool and canonical arguments."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from tools import RedisToolCache, ToolContext, ToolExecutor, ToolRegistry, cache_key, tool


@pytest.fixture
async def client(valkey_url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(valkey_url)
    try:
        yield connection
    finally:
        await connection.aclose()


def test_the_key_is_the_same_for_the_same_arguments_in_any_order() -> None:
    assert cache_key("t", {"a": 1, "b": [1, 2]}) == cache_key("t", {"b": [1, 2], "a": 1})
    assert cache_key("t", {"a": 1}) != cache_key("t", {"a": 2})
    assert cache_key("t", {"a": 1}) != cache_key("u", {"a": 1})


async def test_results_are_cached_in_valkey_with_the_tools_ttl(client: Redis,
                                                                ctx: ToolContext) -> None:
    calls: list[str] = []
    name = f"lookup_{uuid.uuid4().hex[:8]}"

    @tool(name=name, cacheable_for=timedelta(seconds=90))
    def lookup(city: str, detail: bool = False) -> str:
        """Look a city up."""
        calls.append(city)
        return f"{city} #{len(calls)}"

    executor = ToolExecutor(ToolRegistry([lookup]), allowed=[name],
                            cache=RedisToolCache(client))
    first = await executor.execute(name, {"city": "Lyon", "detail": False}, ctx)
    second = await executor.execute(name, {"detail": False, "city": "Lyon"}, ctx)
    defaulted = await executor.execute(name, {"city": "Lyon"}, ctx)  # same validated arguments
    other = await executor.execute(name, {"city": "Oslo"}, ctx)
    assert (first.result, first.cached) == ("Lyon #1", False)
    assert (second.result, second.cached) == ("Lyon #1", True)
    assert (defaulted.result, defaulted.cached) == ("Lyon #1", True)
    assert (other.result, other.cached) == ("Oslo #2", False)
    assert calls == ["Lyon", "Oslo"]

    key = cache_key(name, {"city": "Lyon", "detail": False})
    assert await client.get(key) == b"Lyon #1"
    assert 0 < await client.pttl(key) <= 90_000


async def test_failures_are_not_cached(client: Redis, ctx: ToolContext) -> None:
    calls: list[int] = []
    name = f"flaky_{uuid.uuid4().hex[:8]}"

    @tool(name=name, cacheable_for=timedelta(minutes=1))
    def flaky() -> str:
        """Fail the first time."""
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return "fine"

    executor = ToolExecutor(ToolRegistry([flaky]), allowed=[name], cache=RedisToolCache(client))
    failed = await executor.execute(name, {}, ctx)
    retried = await executor.execute(name, {}, ctx)
    assert failed.status == "error"
    assert (retried.status, retried.result, retried.cached) == ("ok", "fine", False)
