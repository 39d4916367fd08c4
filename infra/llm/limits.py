"""Sliding-window rate limits (requests and tokens per minute) per ``provider:model``.

A window log: every granted call is an entry stamped with its time (and its tokens); a call
is granted when, over the last ``window`` seconds, fewer than ``rpm`` calls and at most
``tpm - tokens`` tokens were granted. ``MemoryLimiter`` keeps the log in this process;
``RedisLimiter`` keeps it in Redis/Valkey sorted sets and decides in one Lua script, so
every process sharing the server shares the limit. Either one waits until the call fits
(``mode="wait"``, up to ``max_wait`` seconds) or refuses at once with ``RateLimited``
(``mode="fail"``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from domain.errors import RateLimited

log = logging.getLogger(__name__)
Mode = Literal["wait", "fail"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PREFIX = "salon:ratelimit:"
RECONNECT_AFTER = 30.0


@dataclass(frozen=True)
class Limits:
    """The limits of one ``provider:model``; None means that limit does not apply."""

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0              # seconds; per *minute* unless a test shortens it

    @property
    def unlimited(self) -> bool:
        return not self.rpm and not self.tpm


class Limiter(Protocol):
    """Grants calls within limits, shared as widely as the implementation reaches."""

    async def acquire(self, key: str, limits: Limits, tokens: int = 0) -> float:
        """Wait for (or refuse) a call of ``tokens`` tokens; returns the time it was granted."""
        ...

    async def add_tokens(self, key: str, limits: Limits, tokens: int) -> None:
        """Count ``tokens`` more against the window (a reply's output, known only after)."""
        ...


def _refusal(key: str, limits: Limits, wait: float, tokens: int) -> RateLimited:
    if limits.tpm and tokens > limits.tpm:
        return RateLimited(f"a call of {tokens} tokens can never fit {key}'s limit of "
                           f"{limits.tpm} tokens per window; shorten the context")
    return RateLimited(f"{key} is at its limit ({limits.rpm or '-'} requests, "
                       f"{limits.tpm or '-'} tokens per {limits.window:g}s); try again in "
                       f"{wait:.1f}s, or let calls wait (rate limit mode 'wait')")


class _Waiting(ABC):
    """The wait-or-fail loop both limiters share; subclasses decide one attempt at a time."""

    def __init__(self, mode: Mode = "wait", max_wait: float = 120.0, clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.mode = mode
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep

    @abstractmethod
    async def _try(self, key: str, limits: Limits, tokens: int) -> tuple[float, float]:
        """One attempt: (0 and the time granted, if admitted; else seconds to wait before
        trying again, or a negative number if the call can never fit)."""

    async def acquire(self, key: str, limits: Limits, tokens: int = 0) -> float:
        """Wait for (or refuse) a call of ``tokens`` tokens; returns the time it was granted."""
        if limits.unlimited:
            return self.clock()
        waited = 0.0
        while True:
            wait, granted_at = await self._try(key, limits, tokens)
            if wait == 0:
                return granted_at
            if wait < 0 or self.mode == "fail" or waited + wait > self.max_wait:
                raise _refusal(key, limits, max(wait, 0.0), tokens)
            await self.sleep(wait)
            waited += wait


class MemoryLimiter(_Waiting):
    """The window log in this process: right for one process, wrong across several."""

    def __init__(self, mode: Mode = "wait", max_wait: float = 120.0, clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(mode, max_wait, clock, sleep)
        self.calls: dict[str, deque[float]] = {}
        self.tokens: dict[str, deque[tuple[float, int]]] = {}

    async def _try(self, key: str, limits: Limits, tokens: int) -> tuple[float, float]:
        now = self.clock()
        calls = self.calls.setdefault(key, deque())
        used = self.tokens.setdefault(key, deque())
        while calls and calls[0] <= now - limits.window:
            calls.popleft()
        while used and used[0][0] <= now - limits.window:
            used.popleft()
        wait = 0.0
        if limits.rpm and len(calls) >= limits.rpm:
            wait = calls[len(calls) - limits.rpm] + limits.window - now
        if limits.tpm and tokens:
            if tokens > limits.tpm:
                return -1.0, now
            total = sum(n for _, n in used)
            if total + tokens > limits.tpm:
                need, freed = total + tokens - limits.tpm, 0
                for stamp, n in used:
                    freed += n
                    if freed >= need:
                        wait = max(wait, stamp + limits.window - now)
                        break
        if wait > 0:
            return wait + 1e-3, now
        calls.append(now)
        if tokens:
            used.append((now, tokens))
        return 0.0, now

    async def add_tokens(self, key: str, limits: Limits, tokens: int) -> None:
        """Count ``tokens`` more against the window (a reply's output, known only after)."""
        if limits.tpm and tokens > 0:
            self.tokens.setdefault(key, deque()).append((self.clock(), tokens))


# KEYS: calls zset, tokens zset. ARGV: now ('' = the server's clock), window, rpm, tpm,
# tokens, member. Returns {wait, now} as strings (Lua numbers would be truncated to integers).
ACQUIRE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local window, rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, member = tonumber(ARGV[5]), ARGV[6]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local wait = 0
if rpm > 0 then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
    wait = tonumber(oldest[2]) + window - now
  end
end
if tpm > 0 and tokens > 0 then
  if tokens > tpm then return {'-1', tostring(now)} end
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  if used + tokens > tpm then
    local need, freed = used + tokens - tpm, 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if freed >= need then
        wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
        break
      end
    end
  end
end
if wait > 0 then return {tostring(wait + 0.001), tostring(now)} end
local ttl = math.ceil(window * 1000) + 1000
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], ttl)
if tokens > 0 then
  redis.call('ZADD', KEYS[2], now, member .. ':' .. tokens)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {'0', tostring(now)}
"""

ADD_TOKENS = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) * 1000) + 1000)
return 1
"""


class RedisLimiter(_Waiting):
    """The window log in Redis/Valkey, shared by every process that uses the same server.

    Times come from the Redis server's clock unless a ``clock`` is given (tests), so hosts
    with skewed clocks still agree. If the server cannot be reached, the limiter says so once
    and limits in this process alone (for ``RECONNECT_AFTER`` seconds at a time) rather than
    failing calls.
    """

    def __init__(self, url: str, mode: Mode = "wait", max_wait: float = 120.0,
                 clock: Clock | None = None, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(mode, max_wait, clock or time.time, sleep)
        import redis.asyncio as aioredis

        self.url = url
        self.server_clock = clock is None
        self.redis: Any = aioredis.from_url(url)
        self.acquire_script = self.redis.register_script(ACQUIRE)
        self.add_script = self.redis.register_script(ADD_TOKENS)
        self.local = MemoryLimiter(mode, max_wait, clock or time.time, sleep)
        self.degraded_until = 0.0          # monotonic time to try the server again

    def _now(self) -> str:
        return "" if self.server_clock else repr(self.clock())

    @property
    def degraded(self) -> bool:
        """Whether calls are limited in this process only, the server being unreachable."""
        return time.monotonic() < self.degraded_until

    async def _try(self, key: str, limits: Limits, tokens: int) -> tuple[float, float]:
        if self.degraded:
            return await self.local._try(key, limits, tokens)
        try:
            wait, now = await self.acquire_script(
                keys=[f"{PREFIX}{key}:calls", f"{PREFIX}{key}:tokens"],
                args=[self._now(), limits.window, limits.rpm or 0, limits.tpm or 0, tokens,
                      uuid.uuid4().hex])
        except (OSError, ConnectionError) as error:
            self._degrade(error)
            return await self.local._try(key, limits, tokens)
        except Exception as error:  # redis' own errors do not all derive from OSError
            if type(error).__module__.startswith("redis"):
                self._degrade(error)
                return await self.local._try(key, limits, tokens)
            raise
        return float(wait), float(now)

    async def add_tokens(self, key: str, limits: Limits, tokens: int) -> None:
        """Count ``tokens`` more against the window (a reply's output, known only after)."""
        if not limits.tpm or tokens <= 0:
            return
        if self.degraded:
            await self.local.add_tokens(key, limits, tokens)
            return
        try:
            await self.add_script(keys=[f"{PREFIX}{key}:tokens"],
                                  args=[self._now(), tokens, uuid.uuid4().hex, limits.window])
        except Exception as error:  # noqa: BLE001 - a lost count must not fail the reply
            self._degrade(error)
            await self.local.add_tokens(key, limits, tokens)

    def _degrade(self, error: BaseException) -> None:
        log.warning("rate limiter cannot reach Redis (%s); limiting in this process only for "
                    "%gs", type(error).__name__, RECONNECT_AFTER)
        self.degraded_until = time.monotonic() + RECONNECT_AFTER

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()
