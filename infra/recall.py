"""Memory as a turn and a person use it: the memory service, and what people reach of it.

The service itself, ``AgentMemory`` (with ``Prepared``, ``Upkeep``, ``open_stream`` and
``record_decision``), is pure but for its ports and lives in ``memory/service.py``; it is
re-exported here, where its callers import it; they build it with the concrete adapters
(``infra.store.EventStore``, ``infra.memories.MemoryStore``, an ``infra.embeddings`` embedder
or, in an agent's actor, ``actors.embedder.RemoteEmbedder``). ``memory/service.py`` says
where each part of memory lives and why.

The module-level functions are what the gateway and CLI call for people: each checks that the
caller owns the agent (or is an admin) before anything else, against the event store and the
memory tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain import policy
from domain.errors import Invalid
from domain.memories import MemoryConfig, Weights, check_kind
from domain.policy import Principal
from infra.embeddings import Embedder
from infra.memories import MemoryStore, Retrieved, check_access
from infra.store import EventStore
from memory import importance
from memory.service import (
    FACTS_RESERVE,
    REFLECTION_RETRY_SECONDS,
    UPKEEP_SCAN,
    WINDOW_EVENTS,
    AgentMemory,
    Prepared,
    Upkeep,
    open_stream,
    record_decision,
)

__all__ = [
    "FACTS_RESERVE", "MANUAL_SOURCE", "REFLECTION_RETRY_SECONDS", "UPKEEP_SCAN", "WINDOW_EVENTS",
    "AgentMemory", "Prepared", "Retrieved", "Upkeep", "add_memory", "delete_memory",
    "forget_user_fact", "list_memories", "memory_config", "open_stream", "record_decision",
    "search_memories", "user_facts",
]

MANUAL_SOURCE = "manual"


# -- what people reach through the gateway and the CLI -------------------------------------

def list_memories(events: EventStore, memories: MemoryStore, agent: str, user: str,
                  is_admin: bool = False, kind: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[dict[str, Any]]:
    """The agent's memories, newest first (owner or admin)."""
    check_access(events, agent, user, is_admin)
    return [m.as_dict() for m in memories.memories(agent, kind, limit, offset)]


def search_memories(events: EventStore, memories: MemoryStore, embedder: Embedder,
                    agent: str, user: str, query: str, is_admin: bool = False, k: int = 10,
                    weights: Weights | None = None, now: datetime | None = None,
                    kind: str | None = None) -> list[dict[str, Any]]:
    """The agent's best memories for ``query`` with their scores in parts (owner or admin).

    Weights default to the agent's own. Looking is not remembering: no retrieval is recorded.
    """
    found = check_access(events, agent, user, is_admin)
    if not query.strip():
        raise Invalid("a memory search needs a query")
    config = memory_config(found.definition)
    vector = embedder.embed([query])[0]
    chosen = weights or config.weights
    return [r.as_dict() for r in memories.retrieve(agent, vector, max(1, min(k, 100)),
                                                   chosen, now,
                                                   kinds=[kind] if kind else None)]


def add_memory(events: EventStore, agent: str, user: str, content: str, kind: str = "semantic",
               rating: int | None = None, is_admin: bool = False) -> str:
    """Record a memory for the agent (owner or admin; run it in the agent's actor)."""
    check_access(events, agent, user, is_admin)
    given = rating if rating is not None else importance.heuristic_importance(content)
    source = "manual" if rating is not None else "heuristic"
    return record_decision(events, agent, lambda stream: stream.remember(
        check_kind(kind), content, given, {"by": user, "via": MANUAL_SOURCE}, source))


def delete_memory(events: EventStore, memories: MemoryStore, agent: str, user: str,
                  memory_id: str, is_admin: bool = False) -> None:
    """Forget one of the agent's memories (owner or admin; run it in the agent's actor)."""
    check_access(events, agent, user, is_admin)
    memories.memory(agent, memory_id)  # NotFound unless it is this agent's
    record_decision(events, agent, lambda stream: stream.forget([memory_id], f"deleted by {user}"))


def user_facts(memories: MemoryStore, agent: str, user: str, about: str | None = None,
               is_admin: bool = False) -> list[dict[str, str]]:
    """Facts the agent holds about ``about`` (default: the caller). People see their own."""
    subject = about or user
    policy.require_self_or_admin(Principal.acting(user, is_admin), subject,
                                 "list the facts agents hold about them")
    return memories.facts(agent, subject)


def forget_user_fact(events: EventStore, agent: str, user: str, fact_id: str,
                     about: str | None = None, is_admin: bool = False) -> None:
    """Delete a fact about the caller (admins: about anyone); run it in the agent's actor."""
    subject = about or user
    policy.require_self_or_admin(Principal.acting(user, is_admin), subject,
                                 "delete the facts agents hold about them")
    record_decision(events, agent, lambda stream: stream.forget_fact(subject, fact_id))


def memory_config(definition: dict[str, Any]) -> MemoryConfig:
    """The ``memory`` settings of an agent definition (defaults when it has none)."""
    try:
        return MemoryConfig.model_validate(definition.get("memory") or {})
    except ValueError as error:
        raise Invalid(f"agent memory settings: {error}") from None
