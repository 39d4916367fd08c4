"""Isolation: an agent recalls only its own memories, and people only their own agents'."""

from __future__ import annotations

import pytest

from domain.errors import Forbidden, NotFound
from domain.memories import MemoryConfig, MemoryStream
from domain.rooms import Room
from infra.embeddings import MiniLMEmbedder
from infra.memories import MemoryStore, check_access
from infra.recall import (
    AgentMemory,
    add_memory,
    delete_memory,
    forget_user_fact,
    list_memories,
    open_stream,
    search_memories,
    user_facts,
)
from infra.store import EventStore
from memory.facts import Fact
from projections.memories import MemoryProjection
from tests.memory.history import define_agent, save


def test_agent_b_cannot_read_agent_a_memories_through_any_api(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    a, b = f"{name}-a", f"{name}-b"
    define_agent(events, a, owner="alice")
    define_agent(events, b, owner="bob")
    stream = MemoryStream.open(a)
    secret = stream.remember("semantic", "alice's locker combination is 31-7-22", 9, {})
    stream.remember_fact("carol", "locker", "31-7-22", "other")
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={a, b})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        [fact] = store.facts(a)
        # Agent b, or b's owner, asking about a: refused, whatever the call.
        for caller in (b, "bob"):
            with pytest.raises(Forbidden):
                check_access(events, a, caller)
            with pytest.raises(Forbidden):
                list_memories(events, store, a, caller)
            with pytest.raises(Forbidden):
                search_memories(events, store, embedder, a, caller, "locker combination")
            with pytest.raises(Forbidden):
                add_memory(events, a, caller, "planted memory")
            with pytest.raises(Forbidden):
                delete_memory(events, store, a, caller, secret)
            with pytest.raises(Forbidden):
                user_facts(store, a, caller, about="carol")
            with pytest.raises(Forbidden):
                forget_user_fact(events, a, caller, fact["fact_id"], about="carol")
        # b's own memory, bound to b, never reaches a's rows, even for a's best match.
        b_memory = AgentMemory(b, events, store, embedder, MemoryConfig(recall=10))
        assert b_memory.recall("locker combination", record=False) == []
        with pytest.raises(NotFound):
            store.memory(b, secret)
        with pytest.raises(NotFound):
            delete_memory(events, store, b, "bob", secret)
        # The owner and an admin may look; looking records no retrieval.
        found = search_memories(events, store, embedder, a, "alice", "locker combination")
        assert found[0]["id"] == secret and set(found[0]["parts"]) == {
            "recency", "importance", "relevance"}
        assert list_memories(events, store, a, "root", is_admin=True)[0]["id"] == secret
        assert user_facts(store, a, "carol")[0]["value"] == "31-7-22"
        projection.catch_up()
        assert store.memory(a, secret).access_count == 0
        with pytest.raises(NotFound):
            check_access(events, f"{name}-ghost", "alice")
    finally:
        store.close()
        projection.close()


def test_people_add_and_delete_memories_and_their_own_facts(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    a = f"{name}-a"
    define_agent(events, a, owner="alice")
    added = add_memory(events, a, "alice", "the shed key is under the blue pot",
                       kind="procedural", rating=7)
    projection = MemoryProjection(database_url, schema, embedder, agents={a})
    store = MemoryStore(database_url, schema)
    try:
        live = open_stream(events, a)
        fact_id = live.remember_fact("dave", "city", "Porto", "identity")
        save(events, live)
        projection.catch_up()
        [shown] = list_memories(events, store, a, "alice")
        assert shown["id"] == added and shown["kind"] == "procedural" and shown["importance"] == 7
        assert [f["fact_id"] for f in user_facts(store, a, "dave")] == [fact_id]
        with pytest.raises(Forbidden):
            forget_user_fact(events, a, "erin", fact_id, about="dave")
        forget_user_fact(events, a, "dave", fact_id)
        delete_memory(events, store, a, "alice", added)
        projection.catch_up()
        assert list_memories(events, store, a, "alice") == []
        assert user_facts(store, a, "dave") == []
        with pytest.raises(NotFound):
            forget_user_fact(events, a, "dave", fact_id)
    finally:
        store.close()
        projection.close()


def test_reflections_and_facts_from_a_private_room_stay_behind_its_walls(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    sage, secret, public = f"{name}-sage", f"{name}-secret", f"{name}-open"
    define_agent(events, sage, owner="ana")
    hidden = Room.create(secret, "ana", visibility="private")
    hidden.join(sage, "agent")
    hidden.post("ana", "the vault code is Zanzibar")
    shared = Room.create(public, "ana")
    for member, kind in ((sage, "agent"), ("bea", "human")):
        shared.join(member, kind)
    shared.post("bea", "what does ana guard?")
    shared.post("ana", "nothing much")
    save(events, hidden)
    save(events, shared)
    stream = MemoryStream.open(sage)
    said = stream.remember("episodic", "ana said the vault code is Zanzibar", 6,
                           {"room": secret})
    insight = stream.reflect("What does ana guard?", "ana guards the Zanzibar vault", 8, [said])
    # A reflection on the reflection keeps the walls too.
    stream.reflect("Who holds secrets?", "ana holds the secret of Zanzibar", 8, [insight])
    stream.remember_fact("ana", "vault code", "Zanzibar", "other", room=secret)
    stream.remember_fact("ana", "favourite tea", "oolong", "preference", room=public)
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={sage})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        memory = AgentMemory(sage, events, store, embedder, MemoryConfig(recall=10))
        outside = [r.memory.content for r in
                   memory.recall("Zanzibar vault secret", record=False, room=public)]
        assert outside and not any("Zanzibar" in text for text in outside), outside
        inside = {r.memory.content for r in
                  memory.recall("Zanzibar vault secret", record=False, room=secret)}
        assert {"ana guards the Zanzibar vault", "ana holds the secret of Zanzibar"} <= inside
        assert store.facts_by_user(sage, ["ana"], [public]) == {
            "ana": [Fact("favourite tea", "oolong", "preference")]}
        prompt = memory.prepare(public, None, 5, "You are sage.", record=False).system
        assert "oolong" in prompt and "Zanzibar" not in prompt, prompt
        assert "Zanzibar" in memory.prepare(secret, None, 5, "You are sage.",
                                            record=False).system
    finally:
        store.close()
        projection.close()
