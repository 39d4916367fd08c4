"""Room frames on Redis pub/sub: how actors hand events to every gateway.

A message is ``"<position>\\n<frame>"`` for a persisted event and ``"e\\n<frame>"`` for an
ephemeral one, so a gateway routes it without decoding the JSON.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from domain.wire import encode

PREFIX = "salon:room:"


def channel(room: str) -> str:
    """The pub/sub channel of one room."""
    return f"{PREFIX}{room}"


def split(message: str) -> tuple[int | None, str]:
    """(position or None for ephemerals, encoded frame) of a bus message."""
    head, _, frame = message.partition("\n")
    return (None if head == "e" else int(head)), frame


class RoomBus:
    """Publishes room frames. One instance per process; safe to share between tasks."""

    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.from_url(redis_url, decode_responses=True)

    async def publish_events(self, room: str, frames: list[dict[str, Any]]) -> None:
        """Publish persisted event frames in order, in one round trip."""
        if not frames:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for frame in frames:
                pipe.publish(channel(room), f"{frame['position']}\n{encode(frame)}")
            await pipe.execute()

    async def publish_ephemerals(self, room: str, frames: list[dict[str, Any]]) -> None:
        """Publish ephemeral frames (``kind`` and fields each) in order, in one round trip."""
        if not frames:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for fields in frames:
                frame = {"type": "ephemeral", "room": room, **fields}
                pipe.publish(channel(room), f"e\n{encode(frame)}")
            await pipe.execute()

    async def close(self) -> None:
        await self.redis.aclose()
