"""The knowledge base on the real PostgreSQL: chunking, ingesting and searching."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from infra.embeddings import MiniLMEmbedder
from infra.knowledge import CHUNK_CHARS, KnowledgeBase, chunks, ingest, search
from infra.store import EventStore

GUIDE = """Orchids

Water orchids once a week in the morning, letting the pot drain completely. Never leave the
roots standing in water: they rot within days.

Repot an orchid every two years, after it flowers, into fresh bark. Trim dead roots with
sterile scissors.

Tomatoes

Tomatoes want full sun, at least eight hours a day, and deep watering twice a week. Pinch out
the side shoots so the plant puts its energy into fruit."""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5_000))
def test_chunks_are_bounded_and_keep_every_word(text: str) -> None:
    pieces = chunks(text)
    assert all(0 < len(p) <= CHUNK_CHARS for p in pieces)
    joined = " ".join(pieces)
    assert all(word in joined for word in text.split())


def test_ingest_and_search_by_meaning(events: EventStore, database_url: str, schema: str,
                                      embedder: MiniLMEmbedder) -> None:
    assert ingest(events, "garden", "growing guide", GUIDE, embedder, schema) >= 1
    assert ingest(database_url, "garden", "pests", "Aphids hate neem oil. " * 80, embedder,
                  schema) >= 2
    with psycopg.connect(database_url, autocommit=True) as conn:
        kb = KnowledgeBase(conn, schema, embedder)
        found = kb.search("garden", "how often should I water my orchid?", k=2)
        assert found[0]["title"] == "growing guide" and "once a week" in found[0]["chunk"]
        assert set(found[0]) == {"title", "chunk", "score"}
        assert found[0]["score"] >= found[-1]["score"]
        assert kb.search("elsewhere", "orchid", k=3) == []
        assert kb.ingest("garden", "growing guide", "Cacti need almost no water.") == 1
        assert [d["chunks"] for d in kb.documents("garden")
                if d["title"] == "growing guide"] == [1]
        with pytest.raises(Invalid):
            kb.ingest("bad name!", "t", "text")
        with pytest.raises(Invalid):
            kb.ingest("garden", "empty", "   ")
        with pytest.raises(Invalid):
            kb.search("garden", " ")
    top = search(database_url, "garden", "insects on my plants", k=1, embedder=embedder,
                 schema=schema)
    assert top[0]["title"] == "pests"
