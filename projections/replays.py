"""Looking back: agents as they stood, where two branches part, and exports of a stream."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from domain import exports
from domain.agents import Agent
from domain.errors import Invalid, NotFound
from domain.ids import agent_id, room_id
from domain.memories import memory_stream_id
from domain.rooms import Room
from domain.wire import event_body
from infra.store import EventStore


def position_of(store: EventStore, room: str, message_id: str) -> int:
    """The position of ``message_id`` in ``room``, or NotFound."""
    current = store.get(Room, room_id(room), f"room {room!r} does not exist")
    position = current.message_ids.get(message_id)
    if position is None:
        raise NotFound(f"message {message_id!r} is not in room {room!r}")
    return int(position)


def agent_at(store: EventStore, name: str, version: int | None) -> dict[str, Any]:
    """An agent as it stood at ``version`` (its newest when None)."""
    head = store.get(Agent, agent_id(name), f"agent {name!r} does not exist")
    if version is not None and not 1 <= version <= head.version:
        raise Invalid(f"version {version} is outside agent {name!r} (1..{head.version})")
    agent = store.get_at(Agent, agent_id(name), version, f"agent {name!r} does not exist")
    return {"name": agent.name, "version": agent.version, "status": agent.status,
            "owner_id": agent.owner_id, "definition_version": agent.definition_version,
            "definition": agent.definition, "turns": agent.turn_count,
            "open_turns": agent.open_turns()}


def _comparable(event: Any) -> tuple[Any, ...]:
    body = event_body(event)
    body.pop("at", None)
    body.pop("message_id", None)
    return tuple(sorted((k, repr(v)) for k, v in body.items()))


def diff(store: EventStore, a: str, b: str) -> dict[str, Any]:
    """Where two rooms (say, a room and its fork) part: the shared prefix and what differs."""
    left = store.events(room_id(a))
    right = store.events(room_id(b))
    if not left or not right:
        raise NotFound(f"room {a if not left else b!r} does not exist")
    shared = 1  # the first event creates (or forks) each room: it always differs in name
    for x, y in zip(left[1:], right[1:], strict=False):
        if _comparable(x) != _comparable(y):
            break
        shared += 1
    return {"room": a, "other": b, "shared_up_to": shared,
            "room_only": [event_body(e) | {"position": e.originator_version}
                          for e in left[shared:]],
            "other_only": [event_body(e) | {"position": e.originator_version}
                           for e in right[shared:]]}


def export(store: EventStore, kind: str, name: str) -> str:
    """The export text of a room or an agent stream."""
    stream = room_id(name) if kind == "room" else agent_id(name)
    records = store.records(stream)
    if not records:
        raise NotFound(f"{kind} {name!r} does not exist")
    if kind == "agent":  # the agent's memories go with it
        records += [replace(r, stream="memory") for r in store.records(memory_stream_id(name))]
    return exports.write(kind, name, records)

