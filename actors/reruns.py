"""Deterministic re-run: drive a recorded room again through its agents, step by step.

The target room is forked from the source at position 1 and marked as its re-run; then each
recorded step is replayed in order: members join, people post what they posted, policies and
feedback are set again. Agents answer as they did, from their recordings (see recordings.py),
and the driver waits for every agent to finish before the next step, so turns land in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors import directory
from domain.errors import Conflict, Unavailable
from domain.ids import room_id
from domain.rooms import Room
from infra.settings import Settings
from infra.store import EventStore

SETTLE_DEADLINE = 120.0


async def _settle(settings: Settings, store: EventStore, room: str) -> None:
    deadline = time.monotonic() + SETTLE_DEADLINE
    while time.monotonic() < deadline:
        current = await asyncio.to_thread(store.get, Room, room_id(room), room)
        seen = [await directory.agent(a, settings).seen.remote(room) for a in current.agents()]
        if all(not s["busy"] and s["position"] >= current.position for s in seen):
            again = await asyncio.to_thread(store.get, Room, room_id(room), room)
            if again.position == current.position:
                return
        await asyncio.sleep(0.05)
    raise Unavailable(f"the agents of room {room!r} did not settle within {SETTLE_DEADLINE}s")


async def rerun(settings: Settings, store: EventStore, source: str, target: str,
                by: str) -> dict[str, Any]:
    """Re-run ``source`` into a new room ``target``; returns where the transcripts stand."""
    events = await asyncio.to_thread(store.events, room_id(source))
    room = directory.room(target, settings)
    await room.fork_from.remote(source, 1, by, True)
    await room.start_rerun.remote(source)
    message_ids: dict[str, str] = {}
    for event in events[1:]:
        kind = type(event).__name__
        if kind == "MemberJoined":
            await room.replay_join.remote(event.member_id, event.member_kind, event.role)
        elif kind == "MessagePosted" and getattr(event, "author_kind", "human") == "human":
            posted = await room.post.remote(event.author_id, event.text, is_admin=True)
            message_ids[event.message_id] = posted["message_id"]
        elif kind == "RoomPolicyChanged":
            await room.set_policy.remote(event.mode, event.max_agent_streak, event.selector,
                                         by, True)
        elif kind == "FeedbackGiven" and event.message_id in message_ids:
            await room.feedback.remote(event.member_id, message_ids[event.message_id],
                                       event.rating, event.comment)
        elif kind == "AgentOverridden":
            await room.override_agent.remote(event.agent, event.changes, by, True)
        elif kind in ("RoomCreated", "RoomForked", "RerunStarted"):
            raise Conflict(f"room {source!r} has a {kind} event inside it; cannot re-run it")
        await _settle(settings, store, target)
    return {"room": target, "source": source,
            "transcript_equal": transcript(store, source) == transcript(store, target)}


def transcript(store: EventStore, room: str) -> list[tuple[str, str]]:
    """(author, text) of every message in ``room``, in order."""
    return [(e.author_id, e.text) for e in store.events(room_id(room))
            if isinstance(e, Room.MessagePosted)]
