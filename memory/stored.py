"""Long-term memories as the memory tables hand them out: plain values, no I/O.

The tables themselves are ``infra/memories.py`` (``MemoryStore``); these types are what its
reads return and what the memory service (``memory/service.py``) and people see, so they live
here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.scoring import Scored


@dataclass(frozen=True)
class Memory:
    """One stored memory, as people and prompts see it."""

    memory_id: str
    agent_id: str
    kind: str
    content: str
    importance: float
    importance_source: str
    created_at: datetime
    last_accessed_at: datetime
    access_count: int
    room: str | None
    position: int | None
    cites: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {"id": self.memory_id, "agent": self.agent_id, "kind": self.kind,
                "content": self.content, "importance": round(self.importance * 10, 3),
                "importance_source": self.importance_source,
                "created_at": self.created_at.isoformat(),
                "last_accessed_at": self.last_accessed_at.isoformat(),
                "access_count": self.access_count, "room": self.room,
                "position": self.position, "cites": list(self.cites)}


@dataclass(frozen=True)
class Retrieved:
    """A memory with its retrieval score, broken into its parts."""

    memory: Memory
    scored: Scored

    def as_dict(self) -> dict[str, Any]:
        """Plain data: the memory, its ``score`` and the score's three weighted-sum parts."""
        s = self.scored
        return {**self.memory.as_dict(), "score": round(s.score, 6),
                "parts": {"recency": round(s.recency, 6), "importance": round(s.importance, 6),
                          "relevance": round(s.relevance, 6)},
                "raw": {"recency": round(s.raw_recency, 6),
                        "importance": round(s.raw_importance, 6),
                        "relevance": round(s.raw_relevance, 6)}}
