"""Retrieval on the real PostgreSQL: the score formula, weights, and what decides the order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.memories import MemoryStream, Weights
from infra.embeddings import MiniLMEmbedder
from infra.memories import MemoryStore
from infra.store import EventStore
from projections.memories import MemoryProjection
from tests.memory.history import remember_at, save

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT, OLD = NOW - timedelta(hours=1), NOW - timedelta(days=30)


def norm(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    return [0.5] * len(values) if high - low <= 1e-12 else \
        [(v - low) / (high - low) for v in values]


def test_scores_follow_the_formula_and_weights_decide(events: EventStore, database_url: str,
                                                      schema: str, embedder: MiniLMEmbedder,
                                                      name: str) -> None:
    ada = f"{name}-ada"
    ids = {key: str(uuid.uuid4()) for key in ("important", "trivial", "relevant")}
    stream = MemoryStream.open(ada)
    # Same text, so equal relevance: one recent and important, one old and trivial.
    remember_at(stream, RECENT, ids["important"], "Ana moved to Lisbon for a new job", 9)
    remember_at(stream, OLD, ids["trivial"], "Ana moved to Lisbon for a new job", 2)
    remember_at(stream, OLD - timedelta(days=1), ids["relevant"],
                "The garden gate code is 4512", 2)
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    query = "what is the code for the garden gate?"
    vector = embedder.embed([query])[0]
    try:
        balanced = store.retrieve(ada, vector, k=3, weights=Weights(), now=NOW)
        order = [r.memory.memory_id for r in balanced]
        assert order.index(ids["important"]) < order.index(ids["trivial"])
        assert balanced[0].memory.memory_id == ids["important"]

        relevant_first = store.retrieve(ada, vector, k=3, now=NOW,
                                        weights=Weights(recency=1, importance=1, relevance=4))
        assert relevant_first[0].memory.memory_id == ids["relevant"]

        weights = Weights(recency=0.7, importance=1.3, relevance=2.5)
        scored = store.retrieve(ada, vector, k=3, weights=weights, now=NOW)
        texts = {ids["important"]: "Ana moved to Lisbon for a new job",
                 ids["trivial"]: "Ana moved to Lisbon for a new job",
                 ids["relevant"]: "The garden gate code is 4512"}
        keys = list(ids.values())
        stamps = {ids["important"]: RECENT, ids["trivial"]: OLD,
                  ids["relevant"]: OLD - timedelta(days=1)}
        ratings = {ids["important"]: 9, ids["trivial"]: 2, ids["relevant"]: 2}
        embedded = dict(zip(keys, embedder.embed([texts[k] for k in keys]), strict=True))
        recency = norm([0.995 ** ((NOW - stamps[k]).total_seconds() / 3600) for k in keys])
        importance = norm([ratings[k] / 10 for k in keys])
        relevance = norm([sum(a * b for a, b in zip(vector, embedded[k], strict=True))
                          for k in keys])
        expected = {k: 0.7 * recency[i] + 1.3 * importance[i] + 2.5 * relevance[i]
                    for i, k in enumerate(keys)}
        for result in scored:
            s = result.scored
            assert s.score == pytest.approx(expected[result.memory.memory_id], abs=1e-5)
            assert s.score == pytest.approx(0.7 * s.recency + 1.3 * s.importance +
                                            2.5 * s.relevance, abs=1e-12)
        shown = scored[0].as_dict()
        assert set(shown["parts"]) == {"recency", "importance", "relevance"}
        assert [r.memory.memory_id for r in scored] == \
            sorted(keys, key=lambda k: -expected[k])
    finally:
        store.close()
        projection.close()


def test_every_memory_is_a_candidate_for_a_small_agent(events: EventStore, database_url: str,
                                                       schema: str, embedder: MiniLMEmbedder,
                                                       name: str) -> None:
    ada = f"{name}-ada"
    stream = MemoryStream.open(ada)
    for i in range(12):
        stream.remember("episodic", f"observation {i} about item {i * 7}", 1 + i % 10, {})
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        vector = embedder.embed(["item 14"])[0]
        found = store.retrieve(ada, vector, k=100, candidates=5)
        assert 5 <= len(found) <= 12
        assert len(store.retrieve(ada, vector, k=100)) == 12
        assert len(store.retrieve(ada, vector, k=3)) == 3
        assert store.retrieve(f"{name}-nobody", vector, k=3) == []
    finally:
        store.close()
        projection.close()
