"""Keeping long-term memory tidy: consolidation, forgetting and retention limits.

All three decide; the agent records what was decided (``MemoriesMerged``,
``MemoriesForgotten``) so the projection replays the same outcome whatever the clock says.

- Consolidation: memories whose embeddings have a cosine similarity at or above a threshold
  are near-duplicates. Memories are visited in keeper order (most important, then oldest, then
  by id); each one not yet taken keeps the untaken memories similar enough *to it*, so a chain
  a~b~c never folds a into c through b.
- Forgetting: a memory whose decayed score (importance 0..1 times ``0.995 ** hours`` since its
  last access) is below the floor is forgotten. Recency only falls until a retrieval, so a
  memory below the floor stays below it.
- Retention: memories older than ``max_age_days`` go, then the oldest beyond ``max_count``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from memory.scoring import decayed


@dataclass(frozen=True)
class MemoryState:
    """What upkeep needs to know about a stored memory."""

    memory_id: str
    importance: float          # 0..1
    created_at: datetime
    last_accessed_at: datetime


@dataclass(frozen=True)
class Merge:
    """Near-duplicates folded into ``kept_id``; ``similarity`` is the lowest cosine to it."""

    kept_id: str
    merged_ids: tuple[str, ...]
    similarity: float


def _keeper_order(memory: MemoryState) -> tuple[float, datetime, str]:
    return (-memory.importance, memory.created_at, memory.memory_id)


def near_duplicates(memories: Sequence[MemoryState],
                    similar: Sequence[tuple[str, str, float]], threshold: float) -> list[Merge]:
    """Merges of near-duplicates, from pairs ``(a, b, cosine)`` found by a vector search."""
    known = {m.memory_id: m for m in memories}
    neighbours: dict[str, dict[str, float]] = {}
    for a, b, similarity in similar:
        if a == b or similarity < threshold or a not in known or b not in known:
            continue
        neighbours.setdefault(a, {})[b] = max(similarity, neighbours.get(a, {}).get(b, -1.0))
        neighbours.setdefault(b, {})[a] = max(similarity, neighbours.get(b, {}).get(a, -1.0))
    taken: set[str] = set()
    merges: list[Merge] = []
    for keeper in sorted((known[m] for m in neighbours), key=_keeper_order):
        if keeper.memory_id in taken:
            continue
        group = sorted((m for m in neighbours[keeper.memory_id] if m not in taken),
                       key=lambda m: _keeper_order(known[m]))
        if not group:
            continue
        taken.add(keeper.memory_id)
        taken.update(group)
        merges.append(Merge(keeper.memory_id, tuple(group),
                            min(neighbours[keeper.memory_id][m] for m in group)))
    return merges


def to_forget(memories: Sequence[MemoryState], now: datetime, floor: float) -> list[str]:
    """Ids of memories whose decayed score is below ``floor`` (none when the floor is 0)."""
    if floor <= 0:
        return []
    return [m.memory_id for m in memories
            if decayed(m.importance, m.last_accessed_at, now) < floor]


def past_retention(memories: Sequence[MemoryState], now: datetime, max_count: int,
                   max_age_days: float | None = None) -> list[str]:
    """Ids of memories past the age limit, then the oldest beyond ``max_count``."""
    gone: list[str] = []
    alive = sorted(memories, key=lambda m: (m.created_at, m.memory_id))
    if max_age_days is not None:
        cutoff = now - timedelta(days=max_age_days)
        gone = [m.memory_id for m in alive if m.created_at < cutoff]
        alive = [m for m in alive if m.created_at >= cutoff]
    excess = len(alive) - max(max_count, 0)
    if excess > 0:
        gone.extend(m.memory_id for m in alive[:excess])
    return gone
