"""What the memory service needs from outside, as interfaces (``typing.Protocol``).

``memory/service.py`` (``AgentMemory``) is written against these; ``infra/`` supplies the
concrete parts: ``infra.store.EventStore`` is an ``EventLog``, ``infra.memories.MemoryStore``
is ``MemoryTables``, and any ``infra.embeddings.Embedder`` (``actors.embedder.RemoteEmbedder``
in an agent's actor) is an ``Embedder``. Every call here blocks: the service runs them in
threads where a turn must not wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from domain.memories import Weights
from memory.context import ContextMessage
from memory.facts import Fact
from memory.reflection import Statement
from memory.stored import Memory, Retrieved
from memory.upkeep import MemoryState

A = TypeVar("A")


class EventLog(Protocol):
    """The event log as memory reads and writes it: aggregates (an agent's ``MemoryStream``,
    rooms, people) and a room's events."""

    def get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        """The aggregate rebuilt from the log, or NotFound (``what`` names it)."""
        ...

    def save(self, events: list[Any]) -> None:
        """Append events atomically; a stale version raises Conflict."""
        ...

    def events(self, aggregate_id: UUID, after: int = 0, up_to: int | None = None,
               limit: int | None = None, newest: bool = False) -> list[Any]:
        """Domain events of one stream with ``after < version <= up_to``, oldest first
        (redacted messages blanked)."""
        ...


class Embedder(Protocol):
    """Turns texts into unit vectors (384 floats for the default model)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class MemoryTables(Protocol):
    """The memory view's tables, read for one agent at a time (the projection writes them)."""

    def count(self, agent: str) -> int:
        """How many memories ``agent`` holds."""
        ...

    def retrieve(self, agent: str, query: Sequence[float], k: int = 5,
                 weights: Weights | None = None, now: datetime | None = None,
                 kinds: Sequence[str] | None = None, *, skip_room: str | None = None,
                 skip_from: int | None = None, formed_by: datetime | None = None,
                 rooms: Sequence[str] | None = None) -> list[Retrieved]:
        """The ``k`` best memories of ``agent`` for ``query`` (an embedding), best first."""
        ...

    def similar_messages(self, agent: str, room: str, query: Sequence[float],
                         before_position: int, k: int) -> list[ContextMessage]:
        """Messages of ``room`` older than ``before_position`` that ``agent`` saw, most
        relevant to ``query`` first."""
        ...

    def rooms(self, agent: str) -> list[str]:
        """The rooms ``agent``'s memories were formed in."""
        ...

    def facts(self, agent: str, user: str | None = None) -> list[dict[str, str]]:
        """Facts ``agent`` holds (about ``user`` only, if given), oldest first."""
        ...

    def facts_by_user(self, agent: str, users: Sequence[str],
                      rooms: Sequence[str] | None = None) -> dict[str, list[Fact]]:
        """Facts about each of ``users`` (learned in ``rooms`` or in none, when given)."""
        ...

    def ratings_since_reflection(self, agent: str, window: int = 100) -> list[float]:
        """1-10 ratings of the newest memories since the last reflection, oldest first."""
        ...

    def newest(self, agent: str, n: int = 100) -> list[Statement]:
        """The ``n`` newest memories as numbered-statement material, oldest first."""
        ...

    def unrated(self, agent: str, limit: int = 20) -> list[Memory]:
        """The newest memories whose importance only the heuristic gave."""
        ...

    def states(self, agent: str, limit: int | None = None,
               include: Sequence[str] = ()) -> list[MemoryState]:
        """The memories as upkeep sees them: all, or the ``limit`` oldest plus ``include``."""
        ...

    def similar_pairs(self, agent: str, threshold: float, newest: int = 500,
                      neighbours: int = 3) -> list[tuple[str, str, float]]:
        """Pairs of the agent's memories at or above ``threshold`` cosine."""
        ...
