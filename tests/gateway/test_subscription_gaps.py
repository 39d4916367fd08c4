"""A subscription delivers every event once and in order: live frames next in order go out at
once, a dropped or late live frame is filled from the event store, a repeated one is skipped."""

from __future__ import annotations

import asyncio

from domain.ids import room_id
from domain.rooms import Room
from domain.wire import encode, event_frame
from gateway.subscriptions import Subscription
from salon.platform import Platform


def test_a_dropped_live_frame_is_filled_from_the_store_and_nothing_repeats(
        platform: Platform, name: str) -> None:
    store = platform.store
    assert store is not None
    room = Room.create(name, "ana")
    for i in range(5):
        room.post("ana", f"message {i}")
    store.save(list(room.collect_events()))
    events = store.events(room_id(name))
    frames = {int(e.originator_version): encode(event_frame(name, e)) for e in events}
    head = 2  # the client joined after the first two events, without `since`

    last = max(frames)
    assert last >= 6

    async def drive() -> list[str]:
        out: list[str] = []  # in the order the connection was handed them, either way
        now: list[str] = []

        async def send(frame: str) -> None:
            out.append(frame)

        def send_now(frame: str) -> None:
            now.append(frame)
            out.append(frame)

        subscription = Subscription(name, store, send, send_now=send_now)
        subscription.start(None, head)
        await asyncio.sleep(0)  # the pump starts and goes live
        subscription.on_frame(3, frames[3])  # next in order: written at once
        assert now == [frames[3]], "a live frame next in order needs no task"
        subscription.on_frame(None, '{"type":"ephemeral"}')  # no position: at once too
        subscription.on_frame(5, frames[5])  # 4 was dropped on the way: a gap
        subscription.on_frame(3, frames[3])  # a late repeat
        for _ in range(200):
            if subscription.last == 5:
                break
            await asyncio.sleep(0.02)
        for position in range(6, last + 1):  # live again
            subscription.on_frame(position, frames[position])
        for _ in range(200):
            if subscription.last == last:
                break
            await asyncio.sleep(0.02)
        await subscription.stop()
        return out

    delivered = asyncio.run(drive())
    ordered = [f for f in delivered if '"ephemeral"' not in f]
    assert ordered == [frames[p] for p in range(3, last + 1)], \
        "3 at once, 4 from the store, then 5 and the rest; the repeat of 3 skipped"
    assert len(delivered) == last - 2 + 1 and '{"type":"ephemeral"}' in delivered
