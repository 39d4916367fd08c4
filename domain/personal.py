"""Which recorded fields hold someone's words, and whose words they are.

The event store seals these fields (infra/sealing.py) with the data key of their *subject*:

- ``user:NAME`` — what a person wrote or what is known about them (their messages, their
  feedback comments, facts agents hold about them). ``forget_me`` destroys this key.
- ``stream:UUID`` — what belongs to one stream as a whole: an agent's turns, tool calls and
  memories (the agent is the subject of its own words), a thread's titles and summaries
  (destroyed when a message they may quote is redacted or its author forgotten).

A rule names the event by its topic (``module:Class.Event``, eventsourcing's spelling) and
gives the fields and a function from the event's state to its subject. Snapshots of an
aggregate are ruled by the aggregate's topic. Everything else is stored as it is: names,
ids, positions, counts — what keeps the log's order and the audit chain whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.ids import agent_id

Subject = Callable[[UUID, dict[str, Any]], "str | None"]


def person(name: Any) -> str:
    """The subject of a person's own words."""
    return f"user:{name}"


def stream(stream_id: UUID | str) -> str:
    """The subject of one stream's words (an agent's, a thread's)."""
    return f"stream:{stream_id}"


def _author(_: UUID, state: dict[str, Any]) -> str:
    author = state.get("author_id")
    if state.get("author_kind", "human") == "agent":
        return stream(agent_id(str(author)))
    return person(author)


def _member(_: UUID, state: dict[str, Any]) -> str:
    return person(state.get("member_id"))


def _user(_: UUID, state: dict[str, Any]) -> str:
    return person(state.get("user_id"))


def _own(stream_id: UUID, _: dict[str, Any]) -> str:
    return stream(stream_id)


@dataclass(frozen=True)
class Rule:
    """The personal ``fields`` of one event type, and whose they are."""

    fields: tuple[str, ...]
    subject: Subject


ROOMS = "domain.rooms:Room"
AGENTS = "domain.agents:Agent"
MEMORIES = "domain.memories:MemoryStream"
THREADS = "domain.threads:Thread"

EVENTS: dict[str, Rule] = {
    f"{ROOMS}.MessagePosted": Rule(("text",), _author),
    f"{ROOMS}.FeedbackGiven": Rule(("comment",), _member),
    f"{ROOMS}.MessageRedacted": Rule(("reason",), _own),
    f"{AGENTS}.TurnStarted": Rule(("trigger",), _own),
    f"{AGENTS}.ModelCalled": Rule(("context", "output"), _own),
    f"{AGENTS}.ToolExecuted": Rule(("arguments", "result"), _own),
    f"{AGENTS}.TurnFailed": Rule(("error",), _own),
    f"{AGENTS}.GuardrailFlagged": Rule(("detail",), _own),
    f"{MEMORIES}.MemoryRecorded": Rule(("content",), _own),
    f"{MEMORIES}.ReflectionRecorded": Rule(("question", "content"), _own),
    f"{MEMORIES}.MemoriesRetrieved": Rule(("query",), _own),
    f"{MEMORIES}.FactRemembered": Rule(("key", "value"), _user),
    f"{MEMORIES}.FactForgotten": Rule(("key",), _user),
    f"{THREADS}.TitleGenerated": Rule(("title",), _own),
    f"{THREADS}.SummaryGenerated": Rule(("text",), _own),
}

# Snapshots: the aggregate's state fields sealed whole, by the stream's key.
SNAPSHOTS: dict[str, tuple[str, ...]] = {
    THREADS: ("title", "summary"),
}
# Snapshot fields that map people to what is known of them: each person's part is sealed
# with that person's key (``facts`` of a memory stream: user -> key -> fact).
SNAPSHOT_PEOPLE: dict[str, tuple[str, ...]] = {
    MEMORIES: ("facts",),
}


def rule_for(topic: str) -> Rule | None:
    """The personal fields of events recorded under ``topic``, or None."""
    return EVENTS.get(topic)


def subjects_of_person(name: str) -> list[str]:
    """Every subject whose key is destroyed when ``name`` is forgotten."""
    return [person(name)]
