"""One connection following one room: backlog first, then live frames, gapless and once each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from domain.ids import room_id
from domain.wire import encode, event_frame
from infra.store import EventStore

Send = Callable[[str], Awaitable[None]]
SendNow = Callable[[str], None]
BACKFILL_CHUNK = 500


class Subscription:
    """Delivers a room's events after ``last`` in order; fills any gap from the event store."""

    def __init__(self, room: str, store: EventStore, send: Send, limit: int = 10_000,
                 on_overflow: Callable[[], None] | None = None,
                 send_now: SendNow | None = None) -> None:
        self.room = room
        self.store = store
        self.send = send
        # The fast path: a live frame that is next in order goes out from the feed's callback,
        # without waking this subscription's task (fan-out to 100 clients was 200 task wake-ups
        # per frame). Anything out of the ordinary (a gap, a backlog, a queue) takes the task.
        self.send_now = send_now
        self.live = False
        self.last = 0
        # Bounded: a subscriber that falls this far behind is cut off, never buffered forever.
        self.inbox: asyncio.Queue[tuple[int | None, str]] = asyncio.Queue(limit)
        self.on_overflow = on_overflow
        self.overflowed = False
        self.task: asyncio.Task[None] | None = None

    def on_frame(self, position: int | None, frame: str) -> None:
        """Called by the feed for every live frame of the room (buffered until started)."""
        if self.overflowed:
            return
        if self.live and self.send_now is not None and self.inbox.empty() and \
                (position is None or position == self.last + 1):
            self.send_now(frame)
            if position is not None:
                self.last = position
            return
        try:
            self.inbox.put_nowait((position, frame))
        except asyncio.QueueFull:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()

    def start(self, since: int | None, head: int) -> None:
        """Begin delivering: events in (since, head] first, if ``since`` was given."""
        self.task = asyncio.get_running_loop().create_task(self._pump(since, head))

    async def _pump(self, since: int | None, head: int) -> None:
        if since is None:
            self.last = head
        else:
            self.last = since
            await self._backfill(head)
        while True:
            if self.inbox.empty():
                self.live = True  # caught up: the feed's callback may deliver directly
            position, frame = await self.inbox.get()
            self.live = False
            if position is None:
                await self.send(frame)
                continue
            if position <= self.last:
                continue
            if position > self.last + 1:
                await self._backfill(position - 1)
            await self.send(frame)
            self.last = position

    async def _backfill(self, up_to: int) -> None:
        while self.last < up_to:
            events = await asyncio.to_thread(
                self.store.events, room_id(self.room), self.last,
                min(up_to, self.last + BACKFILL_CHUNK))
            if not events:
                return
            for event in events:
                await self.send(encode(event_frame(self.room, event)))
                self.last = int(event.originator_version)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
