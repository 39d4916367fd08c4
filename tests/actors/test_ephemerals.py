"""A turn's ephemeral frames go out in order, without the turn waiting for each one."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from actors.turns import Ephemerals
from infra.bus import RoomBus, channel, split
from salon.platform import Platform, Running


async def _heard(redis_url: str, room: str, count: int, send: object) -> list[dict]:
    listener = aioredis.from_url(redis_url, decode_responses=True)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel(room))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    try:
        await send()  # type: ignore[operator]
        frames: list[dict] = []
        while len(frames) < count:
            message = await pubsub.get_message(timeout=5)
            assert message is not None, f"heard only {len(frames)} of {count} frames"
            if message["type"] == "message":
                position, frame = split(str(message["data"]))
                assert position is None, "an ephemeral frame carries no position"
                frames.append(json.loads(frame))
        return frames
    finally:
        await pubsub.aclose()
        await listener.aclose()


def test_frames_queued_while_one_is_sent_follow_it_in_order(salon: Running, name: str) -> None:
    redis_url = str(salon.settings.redis_url)

    async def drive() -> list[dict]:
        bus = RoomBus(redis_url)
        ephemerals = Ephemerals(bus, name)

        async def send() -> None:
            for i in range(200):  # as fast as a model streams: none of them is awaited
                ephemerals.add({"kind": "agent_token", "delta": str(i)})
            await ephemerals.flush()
            assert not ephemerals.queued

        try:
            return await _heard(redis_url, name, 200, send)
        finally:
            await bus.close()

    frames = asyncio.run(drive())
    assert [f["delta"] for f in frames] == [str(i) for i in range(200)]
    assert all(f["type"] == "ephemeral" and f["room"] == name for f in frames)


def test_a_failed_publish_is_logged_and_never_fails_the_turn(platform: Platform,
                                                             name: str, caplog) -> None:
    async def drive() -> None:
        bus = RoomBus("redis://127.0.0.1:1")  # nothing listens there
        ephemerals = Ephemerals(bus, name)
        try:
            ephemerals.add({"kind": "agent_thinking"})
            await ephemerals.flush()  # returns: the failure stays in the log
        finally:
            await bus.close()

    asyncio.run(drive())
    assert "publishing 1 ephemeral frames" in caplog.text
