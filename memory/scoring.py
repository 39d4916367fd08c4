"""Retrieval scores of long-term memories, as in the Generative Agents paper.

``score = w_recency * recency + w_importance * importance + w_relevance * relevance``, where

- recency is ``0.995 ** hours`` since the memory was last retrieved (or recorded);
- importance is the 1-10 rating scaled to 0..1 (``rating / 10``);
- relevance is the cosine similarity of the memory's and the query's embeddings;

and each part is min-max normalised over the candidates before weighting (when every candidate
has the same value of a part, each gets 0.5 of it: no candidate is preferred for it). Weights
are 1 by default and set per agent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.memories import Weights

DECAY_PER_HOUR = 0.995
TIE = 0.5


@dataclass(frozen=True)
class Candidate:
    """A memory up for retrieval: what the score needs to know about it."""

    memory_id: str
    importance: float          # 0..1 (rating / 10)
    last_accessed_at: datetime
    relevance: float           # cosine similarity to the query, -1..1


@dataclass(frozen=True)
class Scored:
    """A candidate's score and its three normalised parts (before weighting)."""

    memory_id: str
    score: float
    recency: float
    importance: float
    relevance: float
    raw_recency: float
    raw_importance: float
    raw_relevance: float

    def parts(self) -> dict[str, float]:
        """The score broken into its parts, for people to read."""
        return {"score": self.score, "recency": self.recency, "importance": self.importance,
                "relevance": self.relevance}


def rating_to_importance(rating: float) -> float:
    """A 1-10 importance rating scaled to 0..1."""
    return min(max(rating, 0.0), 10.0) / 10.0


def recency(last_accessed_at: datetime, now: datetime) -> float:
    """``0.995 ** hours`` since the last access (1.0 for an access at or after ``now``)."""
    hours = max((now - last_accessed_at).total_seconds(), 0.0) / 3600.0
    return float(DECAY_PER_HOUR ** hours)


def normalise(values: Sequence[float]) -> list[float]:
    """Min-max normalise to 0..1; equal values all become 0.5."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [TIE] * len(values)
    return [(v - low) / (high - low) for v in values]


def rank(candidates: Sequence[Candidate], now: datetime, weights: Weights | None = None,
         k: int | None = None) -> list[Scored]:
    """Candidates scored and sorted best first (ties: more recent, then by id); top ``k``."""
    w = weights or Weights()
    raw_recency = [recency(c.last_accessed_at, now) for c in candidates]
    raw_importance = [c.importance for c in candidates]
    raw_relevance = [c.relevance for c in candidates]
    rec, imp, rel = normalise(raw_recency), normalise(raw_importance), normalise(raw_relevance)
    scored = [Scored(memory_id=c.memory_id,
                     score=w.recency * rec[i] + w.importance * imp[i] + w.relevance * rel[i],
                     recency=rec[i], importance=imp[i], relevance=rel[i],
                     raw_recency=raw_recency[i], raw_importance=raw_importance[i],
                     raw_relevance=raw_relevance[i])
              for i, c in enumerate(candidates)]
    scored.sort(key=lambda s: (-s.score, -s.raw_recency, s.memory_id))
    return scored if k is None else scored[:max(k, 0)]


def decayed(importance: float, last_accessed_at: datetime, now: datetime) -> float:
    """Importance (0..1) times recency: what forgetting compares with its floor."""
    return importance * recency(last_accessed_at, now)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
