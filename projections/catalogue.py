"""The catalogue of rooms and agents, read from the event log."""

from __future__ import annotations

from typing import Any

from domain.agents import Agent
from domain.rooms import Room
from infra.store import EventStore


def rooms(store: EventStore) -> list[dict[str, Any]]:
    """Every room ever created: name, topic, visibility, owner, created_at, members."""
    members: dict[Any, set[str]] = {}
    changes = [(version, stream, state["member_id"], True)
               for stream, version, state in store.states_of(Room.MemberJoined)]
    changes += [(version, stream, state["member_id"], False)
                for stream, version, state in store.states_of(Room.MemberLeft)]
    for _, stream, member, joined in sorted(changes, key=lambda c: c[0]):
        (members.setdefault(stream, set()).add if joined
         else members.setdefault(stream, set()).discard)(member)
    found = []
    for stream, _, state in store.states_of(Room.RoomCreated):
        found.append({"name": state["name"], "topic": state["topic"],
                      "visibility": state["visibility"], "owner_id": state["owner_id"],
                      "created_at": _time(state.get("timestamp")),
                      "members": sorted(members.get(stream, ()))})
    return sorted(found, key=lambda r: r["name"])


def agents(store: EventStore) -> list[dict[str, Any]]:
    """Every agent defined: name, provider, model, role, status (active, paused, stopped)."""
    changes = [(version, stream, status)
               for status, cls in (("paused", Agent.AgentPaused), ("active", Agent.AgentResumed),
                                   ("stopped", Agent.AgentStopped))
               for stream, version, _ in store.states_of(cls)]
    status = {stream: value for _, stream, value in sorted(changes, key=lambda c: c[0])}
    found = []
    for stream, _, state in store.states_of(Agent.AgentDefined):
        definition = state["definition"]
        found.append({"name": definition["name"], "provider": definition.get("provider"),
                      "model": definition.get("model"), "role": definition.get("role"),
                      "owner_id": state.get("owner_id", "admin"),
                      "joinable": bool(definition.get("joinable", False)),
                      "status": status.get(stream, "active"),
                      "created_at": _time(state.get("timestamp"))})
    return sorted(found, key=lambda a: a["name"])


def _time(value: Any) -> Any:
    # The store's JSON transcoder wraps datetimes as {"_type_": ..., "_data_": iso}.
    if isinstance(value, dict) and "_data_" in value:
        return value["_data_"]
    return value
