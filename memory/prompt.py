"""What long-term memory adds to an agent's system prompt: recalled memories and user facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from memory.facts import Fact

MEMORIES_HEADING = "Things you remember from earlier (most relevant first):"


@dataclass(frozen=True)
class Recalled:
    """A memory as it goes into a prompt."""

    memory_id: str
    kind: str
    content: str
    created_at: datetime


def memories_section(memories: Sequence[Recalled]) -> str:
    """The system-prompt section listing recalled memories ('' when there are none)."""
    if not memories:
        return ""
    lines = [MEMORIES_HEADING]
    lines.extend(f"- ({m.created_at:%Y-%m-%d}, {m.kind}) {m.content}" for m in memories)
    return "\n".join(lines)


def facts_section(facts_by_user: Mapping[str, Sequence[Fact]]) -> str:
    """The system-prompt section of facts known about the people in the conversation."""
    lines: list[str] = []
    for user in sorted(facts_by_user):
        facts = facts_by_user[user]
        if facts:
            lines.append(f"What you know about {user}:")
            lines.extend(f"- {f.key}: {f.value} ({f.category})" for f in facts)
    return "\n".join(lines)


def with_memory(system: str, memories: Sequence[Recalled],
                facts_by_user: Mapping[str, Sequence[Fact]]) -> str:
    """``system`` followed by the memory and fact sections that are not empty."""
    parts = [system, memories_section(memories), facts_section(facts_by_user)]
    return "\n\n".join(p for p in parts if p)
