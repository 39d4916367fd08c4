"""Consent: whether agents may form long-term memories and facts about a person, and what
people see and delete of what agents remember about them.

A person's settings are ``MemoryConsentChanged`` events of their user stream
(``domain/users.py``): a default (``memory: on|off``) and per room. The memory projection
(``projections/memories.py``) applies them in log order: from the event on, nothing about the
person is formed where they said off, and what was there is deleted. Agents read the same
stream before asking a model for facts about someone (``consents``, which lives in
``memory/consent.py`` beside the memory service that asks it), so no ``FactRemembered``
about them is even written.

What is "about" a person: memories whose source is theirs (their messages, their joining a
room, their feedback: the ``author`` column) and facts about them (``user_id``), with the
reflections citing those memories.
"""

from __future__ import annotations

from typing import Any

from domain.errors import Conflict, NotFound
from domain.ids import check_name
from infra.memories import FACTS, MemoryStore
from infra.store import EventStore
from memory.consent import consents, person

__all__ = ["check_about", "consent_of", "consents", "memories_about", "set_consent"]


def consent_of(events: EventStore, name: str) -> dict[str, Any]:
    """``name``'s settings: ``{"user", "memory": on|off, "rooms": {room: on|off}}``."""
    user = person(events, name)
    settings: dict[str, Any] = user.consent if user is not None else {"memory": "on",
                                                                       "rooms": {}}
    return {"user": name, **settings}


def set_consent(events: EventStore, name: str, memory: str, room: str | None = None,
                attempts: int = 3) -> dict[str, Any]:
    """Record ``name``'s consent (in ``room``, or their default); returns their settings and
    whether anything changed. Only the gateway calls it, for the person themselves."""
    for attempt in range(attempts):
        user = person(events, name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist")
        changed = user.set_consent(memory, room)
        try:
            if changed:
                events.save(list(user.collect_events()))
            return {**consent_of(events, name), "changed": changed}
        except Conflict:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def memories_about(memories: MemoryStore, name: str, agent: str | None = None,
                   limit: int = 200) -> dict[str, list[dict[str, Any]]]:
    """What agents (or ``agent``) remember about ``name``: memories whose source is theirs,
    newest first, and facts about them."""
    check_name(name, "user")
    rows = memories._rows(
        f"SELECT id::text AS id, agent_id, kind, content, room, position, created_at "
        f"FROM {memories.table()} WHERE author = %s AND (%s::text IS NULL OR agent_id = %s) "
        "ORDER BY created_at DESC, id LIMIT %s", (name, agent, agent, max(1, min(limit, 1_000))))
    facts = memories._rows(
        f"SELECT agent_id, fact_id, key, value, category, room FROM {memories.table(FACTS)} "
        "WHERE user_id = %s AND (%s::text IS NULL OR agent_id = %s) "
        "ORDER BY agent_id, recorded_at, fact_id", (name, agent, agent))
    return {"memories": [{"id": r["id"], "agent": r["agent_id"], "kind": r["kind"],
                          "content": r["content"], "room": r["room"],
                          "position": r["position"],
                          "created_at": r["created_at"].isoformat()} for r in rows],
            "facts": [{"agent": f["agent_id"], "fact_id": f["fact_id"], "key": f["key"],
                       "value": f["value"], "category": f["category"], "room": f["room"]}
                      for f in facts]}


def check_about(memories: MemoryStore, agent: str, name: str, memory_id: str) -> None:
    """NotFound unless ``agent`` holds memory ``memory_id`` and its source is ``name``'s."""
    rows = memories._rows(f"SELECT 1 FROM {memories.table()} WHERE agent_id = %s AND "
                          "id::text = %s AND author = %s", (agent, memory_id, name))
    if not rows:
        raise NotFound(f"agent {agent!r} holds no memory {memory_id!r} about {name}; "
                       "`my_memories` lists what agents remember about you")
