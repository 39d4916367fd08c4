"""Where cacheable tools keep results: an interface, an in-memory one and a Redis one.

The executor never imports a client; the composition root hands it a ``ToolCache``. The Redis
implementation takes an already-made ``redis.asyncio.Redis`` (or Valkey) client and only calls
``get`` and ``set``, so ``redis`` is imported here for type checking alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis


class ToolCache(Protocol):
    """A key-value store with expiry; results of cacheable tools live here."""

    async def get(self, key: str) -> str | None:
        """The stored text for ``key``, or ``None`` if absent or expired."""
        ...

    async def set(self, key: str, value: str, ttl: timedelta) -> None:
        """Store ``value`` under ``key`` for ``ttl``."""
        ...


def cache_key(tool: str, arguments: dict[str, Any], prefix: str = "salon:tool:") -> str:
    """The key of a call: the tool's name and a hash of its arguments as canonical JSON."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return f"{prefix}{tool}:{hashlib.sha256(canonical.encode()).hexdigest()}"


class MemoryToolCache:
    """A per-process cache for tests and single-process runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> str | None:
        """The stored text, unless it has expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    async def set(self, key: str, value: str, ttl: timedelta) -> None:
        """Store the text until ``ttl`` from now."""
        self._entries[key] = (self._clock() + ttl.total_seconds(), value)


class RedisToolCache:
    """Results in Redis (or Valkey), expiring by the tool's TTL; shared by every actor."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def get(self, key: str) -> str | None:
        """The stored text, or ``None``."""
        value = await self._client.get(key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set(self, key: str, value: str, ttl: timedelta) -> None:
        """Store the text with an expiry in milliseconds (at least one)."""
        await self._client.set(key, value.encode(), px=max(1, int(ttl.total_seconds() * 1000)))
