"""One Redis subscription per gateway process, routing room frames to local subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from infra.bus import PREFIX, channel, split

log = logging.getLogger(__name__)
Listener = Callable[[int | None, str], None]
# Every gateway of an installation hears what must reach all of them (a revoked user).
CONTROL = "salon:control"
Control = Callable[[str, str], Awaitable[None]]


class RoomFeed:
    """Subscribes to a room's channel while some local connection follows the room."""

    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.from_url(redis_url, decode_responses=True)
        self.pubsub = self.redis.pubsub()
        self.listeners: dict[str, set[Listener]] = {}
        self.confirmed: dict[str, asyncio.Event] = {}
        self.task: asyncio.Task[None] | None = None
        self.on_control: Control | None = None
        self.controls: set[asyncio.Task[None]] = set()

    async def start(self, on_control: Control | None = None) -> None:
        """Subscribe; ``on_control(kind, value)`` hears every gateway's control messages."""
        self.on_control = on_control
        # The control channel also keeps the subscription open while no room is followed.
        await self.pubsub.subscribe(CONTROL)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def broadcast(self, kind: str, value: str) -> None:
        """Tell every gateway of the installation (this one too) ``kind``: ``value``."""
        await self.redis.publish(CONTROL, f"{kind}\n{value}")

    async def follow(self, room: str, listener: Listener) -> None:
        """Route ``room``'s frames to ``listener``; returns once the subscription is live."""
        listeners = self.listeners.setdefault(room, set())
        listeners.add(listener)
        if room not in self.confirmed:
            self.confirmed[room] = asyncio.Event()
            await self.pubsub.subscribe(channel(room))
        await asyncio.wait_for(self.confirmed[room].wait(), timeout=10)

    async def unfollow(self, room: str, listener: Listener) -> None:
        """Stop routing to ``listener``; drop the subscription when nobody follows the room."""
        listeners = self.listeners.get(room)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.listeners[room]
            self.confirmed.pop(room, None)
            await self.pubsub.unsubscribe(channel(room))

    async def _run(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep serving; redis-py reconnects
                log.exception("reading the room feed failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            name = str(message.get("channel", ""))
            if name == CONTROL and message["type"] == "message":
                # Off the read loop: closing connections must not hold up room frames.
                control = asyncio.get_running_loop().create_task(
                    self._control(str(message["data"])))
                self.controls.add(control)
                control.add_done_callback(self.controls.discard)
                continue
            if not name.startswith(PREFIX):
                continue
            room = name[len(PREFIX):]
            if message["type"] == "subscribe":
                event = self.confirmed.get(room)
                if event is not None:
                    event.set()
            elif message["type"] == "message":
                position, frame = split(str(message["data"]))
                for listener in list(self.listeners.get(room, ())):
                    listener(position, frame)

    async def _control(self, data: str) -> None:
        kind, _, value = data.partition("\n")
        if self.on_control is None:
            return
        try:
            await self.on_control(kind, value)
        except Exception:  # noqa: BLE001 - one bad message never stops the feed
            log.exception("handling control message %r failed", kind)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        await self.pubsub.aclose()
        await self.redis.aclose()
