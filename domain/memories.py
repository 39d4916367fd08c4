"""An agent's long-term memory: its settings and the stream of memory events it records.

Memories themselves are rows of the memory projection (pgvector). What the log must hold is
every non-deterministic decision about them: a memory added by hand or by the agent, an
importance rated by a model, a retrieval (it moves ``last_accessed_at``), a merge, a forgetting
(decided against the clock), a reflection and the facts a model extracted about a user.

Those events live in a per-agent ``MemoryStream`` aggregate, not in the ``Agent`` stream:
retrievals happen on every turn and would bloat the agent's snapshots and replays, and the
agent actor stays the one writer of both streams. Its id is derived from the agent's name.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field

from domain.errors import Invalid, NotFound
from domain.ids import agent_id, check_name, new_id

KINDS = ("episodic", "semantic", "procedural", "social")
FACT_CATEGORIES = ("identity", "preference", "work", "relationship", "plan", "other")
STRATEGIES = ("last_n", "first_last", "token_window", "summarize", "vector")
MAX_CONTENT = 4_000
MAX_FACT = 500

Kind = Literal["episodic", "semantic", "procedural", "social"]
Strategy = Literal["last_n", "first_last", "token_window", "summarize", "vector"]
Weight = Annotated[float, Field(ge=0.0, le=100.0)]


class Weights(BaseModel):
    """How much recency, importance and relevance count in a retrieval score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recency: Weight = 1.0
    importance: Weight = 1.0
    relevance: Weight = 1.0


class MemoryConfig(BaseModel):
    """Per-agent memory settings (the ``memory`` field of an agent definition)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Short-term context: which room messages a model call sees.
    context: Strategy = "last_n"
    first_messages: int = Field(default=2, ge=0, le=50)       # first_last: the room's opening
    relevant_messages: int = Field(default=5, ge=0, le=50)    # vector: older, relevant ones
    # Overrides of the model registry's figures for token_window (None: the registry's).
    context_window: int | None = Field(default=None, ge=256, le=10_000_000)
    max_output: int | None = Field(default=None, ge=1, le=1_000_000)
    # Long-term memory: how many memories go into the system prompt (0: none).
    recall: int = Field(default=5, ge=0, le=50)
    weights: Weights = Field(default_factory=Weights)
    # "heuristic": a documented rule of thumb; "model": the agent's model rates 1-10.
    importance: Literal["heuristic", "model"] = "heuristic"
    reflection: bool = True
    reflection_threshold: float = Field(default=150.0, gt=0)  # summed 1-10 importance
    facts: bool = True                                       # extract facts about users
    consolidate_above: float = Field(default=0.95, gt=0.0, le=1.0)  # cosine of duplicates
    forget_below: float = Field(default=0.0, ge=0.0, le=1.0)  # decayed-score floor (0: never)
    max_memories: int = Field(default=10_000, ge=10, le=10_000_000)
    max_age_days: float | None = Field(default=None, gt=0)


def memory_stream_id(agent: str) -> UUID:
    """The id of the memory stream of the agent called ``agent``."""
    return uuid.uuid5(agent_id(agent), "memory")


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a memory kind, else raise Invalid."""
    if kind not in KINDS:
        raise Invalid(f"memory kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def check_rating(rating: int) -> int:
    """Return an importance rating if it is an integer 1-10, else raise Invalid."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
        raise Invalid(f"importance is an integer from 1 to 10, not {rating!r}")
    return rating


def _check_content(content: str, limit: int = MAX_CONTENT) -> str:
    if not isinstance(content, str) or not content.strip():
        raise Invalid("a memory needs some text")
    if len(content) > limit:
        raise Invalid(f"a memory has at most {limit} characters, got {len(content)}")
    return content.strip()


class MemoryStream(Aggregate):
    """Every decision about one agent's memories and user facts, in order."""

    @staticmethod
    def create_id(agent: str, **_: object) -> UUID:
        """One stream per agent, found by the agent's name."""
        return memory_stream_id(agent)

    @event("MemoryStreamOpened")
    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.recorded = 0
        self.reflections = 0
        # user -> key -> {"fact_id", "value", "category"}: kept so deletions can be checked.
        self.facts: dict[str, dict[str, dict[str, str]]] = {}

    @classmethod
    def open(cls, agent: str) -> MemoryStream:
        """Open the memory stream of ``agent``."""
        return cls(agent=check_name(agent, "agent"))

    # -- memories -----------------------------------------------------------------------

    def remember(self, kind: str, content: str, importance: int, source: dict[str, Any],
                 importance_source: str = "heuristic", memory_id: str | None = None) -> str:
        """Record a memory (added by hand, by a tool or by the agent); returns its id."""
        memory_id = memory_id or str(uuid.uuid4())
        self._memory_recorded(memory_id=memory_id, kind=check_kind(kind),
                              content=_check_content(content), importance=check_rating(importance),
                              importance_source=importance_source, source=dict(source))
        return memory_id

    @event("MemoryRecorded")
    def _memory_recorded(self, memory_id: str, kind: str, content: str, importance: int,
                         importance_source: str, source: dict[str, Any]) -> None:
        self.recorded += 1

    def rate(self, ratings: dict[str, int], model: str) -> None:
        """Record importances (1-10) a model gave to memories, by memory id."""
        checked = {str(k): check_rating(v) for k, v in ratings.items()}
        if checked:
            self._importance_rated(ratings=checked, model=model)

    @event("ImportanceRated")
    def _importance_rated(self, ratings: dict[str, int], model: str) -> None:
        pass

    def retrieved(self, memory_ids: list[str], query: str) -> None:
        """Record that memories were recalled (moves their last access, counts the access)."""
        if memory_ids:
            self._memories_retrieved(memory_ids=list(memory_ids), query=query[:1_000])

    @event("MemoriesRetrieved")
    def _memories_retrieved(self, memory_ids: list[str], query: str) -> None:
        pass

    def merge(self, kept_id: str, merged_ids: list[str], similarity: float) -> None:
        """Record that near-duplicates were folded into ``kept_id``."""
        merged = [m for m in merged_ids if m != kept_id]
        if merged:
            self._memories_merged(kept_id=kept_id, merged_ids=merged,
                                  similarity=round(float(similarity), 6))

    @event("MemoriesMerged")
    def _memories_merged(self, kept_id: str, merged_ids: list[str], similarity: float) -> None:
        pass

    def forget(self, memory_ids: list[str], reason: str) -> None:
        """Record that memories are forgotten (decayed, past retention, or deleted)."""
        if memory_ids:
            self._memories_forgotten(memory_ids=list(memory_ids), reason=reason[:200])

    @event("MemoriesForgotten")
    def _memories_forgotten(self, memory_ids: list[str], reason: str) -> None:
        pass

    def reflect(self, question: str, content: str, importance: int, cites: list[str],
                memory_id: str | None = None) -> str:
        """Record an insight answering ``question``, citing the memories it rests on."""
        if not cites:
            raise Invalid("a reflection cites the memories it rests on")
        memory_id = memory_id or str(uuid.uuid4())
        self._reflection_recorded(memory_id=memory_id, question=question[:1_000],
                                  content=_check_content(content),
                                  importance=check_rating(importance), cites=list(cites))
        return memory_id

    @event("ReflectionRecorded")
    def _reflection_recorded(self, memory_id: str, question: str, content: str,
                             importance: int, cites: list[str]) -> None:
        self.reflections += 1

    # -- facts about users ----------------------------------------------------------------

    def remember_fact(self, user_id: str, key: str, value: str, category: str,
                      room: str | None = None, again: bool = False) -> str:
        """Record (or update) a fact about ``user_id`` learned in ``room``; returns its id.

        ``again``: record it even if this stream knows it already (the memory view forgot it
        when ``user_id`` withdrew consent, and they have consented again since)."""
        if category not in FACT_CATEGORIES:
            raise Invalid(f"a fact's category is one of {', '.join(FACT_CATEGORIES)}, "
                          f"not {category!r}")
        key = _check_content(key, 100).lower()
        value = _check_content(value, MAX_FACT)
        known = self.facts.get(user_id, {}).get(key)
        # Told again elsewhere: the fact is tagged with the room it was last learned in.
        if known is not None and known["value"] == value and known["category"] == category \
                and known.get("room") == room and not again:
            return known["fact_id"]
        fact_id = known["fact_id"] if known is not None else new_id()
        self._fact_remembered(fact_id=fact_id, user_id=user_id, key=key, value=value,
                              category=category, room=room)
        return fact_id

    @event("FactRemembered")
    def _fact_remembered(self, fact_id: str, user_id: str, key: str, value: str,
                         category: str, room: str | None = None) -> None:
        self.facts.setdefault(user_id, {})[key] = {"fact_id": fact_id, "value": value,
                                                   "category": category, "room": room}

    def forget_fact(self, user_id: str, fact_id: str) -> None:
        """Forget one fact about ``user_id``; NotFound if there is no such fact."""
        for key, fact in self.facts.get(user_id, {}).items():
            if fact["fact_id"] == fact_id:
                self._fact_forgotten(fact_id=fact_id, user_id=user_id, key=key)
                return
        raise NotFound(f"agent {self.agent!r} holds no fact {fact_id!r} about {user_id!r}; "
                       "`salon agents facts AGENT` lists them")

    @event("FactForgotten")
    def _fact_forgotten(self, fact_id: str, user_id: str, key: str) -> None:
        self.facts.get(user_id, {}).pop(key, None)

    def facts_about(self, user_id: str) -> list[dict[str, str]]:
        """The facts held about ``user_id``: fact_id, key, value, category."""
        return [{"key": key, **{k: v for k, v in fact.items() if k != "room"}}
                for key, fact in self.facts.get(user_id, {}).items()]
