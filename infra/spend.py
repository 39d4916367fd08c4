"""What the turns each person caused have cost the operator today: a daily bound per principal.

A turn is paid for by the person behind it (the author of the message that addressed the
agent, the member who sent ``invoke``, the owner for timed turns; an agent's trigger counts as
its owner's). Before a model call that may cost money, the payer's spend of the day (UTC) is
read from Valkey; at or past ``SALON_SPEND_USD_PER_DAY`` the call is refused as
``rate_limited``. After each call its cost is added at once (``INCRBYFLOAT``, atomic across
every actor and host), so concurrent turns see each other's spend without waiting for the
metrics projection. Admins are not bounded. Counters expire two days after their day; the
metrics projection keeps the durable record of what was spent.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from domain.errors import RateLimited

KEEP_SECONDS = 2 * 24 * 3600


def key(who: str, day: str) -> str:
    return f"salon:spend:{day}:{who}"


def today(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()


class SpendLedger:
    """Per-person daily spend in Valkey."""

    def __init__(self, redis: aioredis.Redis, limit_usd: float | None) -> None:
        self.redis = redis
        self.limit = limit_usd

    async def spent(self, who: str, day: str | None = None) -> float:
        value = await self.redis.get(key(who, day or today()))
        return float(value) if value is not None else 0.0

    async def check(self, who: str, is_admin: bool) -> None:
        """Refuse a paid call for ``who`` once their spend of the day reached the limit."""
        if is_admin or self.limit is None:
            return
        spent = await self.spent(who)
        if spent >= self.limit:
            raise RateLimited(
                f"the turns {who} caused today cost ${spent:.4f}, the daily limit is "
                f"${self.limit:g} (SALON_SPEND_USD_PER_DAY); it resets at midnight UTC, and an "
                "admin can raise it")

    async def charge(self, who: str, usd: float) -> float:
        """Add ``usd`` to ``who``'s spend of the day; returns the new total."""
        if usd <= 0:
            return await self.spent(who)
        name = key(who, today())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(name, usd)
            pipe.expire(name, KEEP_SECONDS)
            total, _ = await pipe.execute()
        return float(total)
