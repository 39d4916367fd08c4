"""Writing histories straight into the event store, as the actors would, for memory tests."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.agents import Agent
from domain.definitions import AgentDefinition
from domain.memories import MemoryStream
from domain.rooms import Room
from infra.store import EventStore


def save(events: EventStore, *aggregates: Aggregate) -> None:
    """Append every pending event of ``aggregates`` (this test is their one writer)."""
    events.save([e for a in aggregates for e in a.collect_events()])


def define_agent(events: EventStore, name: str, owner: str) -> Agent:
    agent = Agent.define(AgentDefinition(name=name), owner_id=owner)
    save(events, agent)
    return agent


def remember_at(stream: MemoryStream, at: datetime, memory_id: str, content: str,
                rating: int, kind: str = "semantic") -> str:
    """A ``MemoryRecorded`` stamped ``at`` (a history that began long ago)."""
    stream.trigger_event(MemoryStream.MemoryRecorded, timestamp=at, memory_id=memory_id,
                         kind=kind, content=content, importance=rating,
                         importance_source="heuristic", source={})
    return memory_id


def redact(events: EventStore, room: Room, message_id: str, by: str) -> None:
    """Append the catalogue's ``MessageRedacted`` to a room (the Room aggregate has no redact
    command yet, so the stored event is written as the room actor would write it)."""
    state: dict[str, Any] = {"timestamp": {"_type_": "datetime_iso",
                                           "_data_": datetime.now().astimezone().isoformat()},
                             "message_id": message_id, "by": by}
    events.app.recorder.insert_events([StoredEvent(
        originator_id=room.id, originator_version=room.version + 1,
        topic="domain.rooms:Room.MessageRedacted", state=json.dumps(state).encode())])
