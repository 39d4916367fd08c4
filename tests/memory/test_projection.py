"""The memory projection on the real PostgreSQL: visibility, redaction, replay and rebuild."""

from __future__ import annotations

import uuid

import psycopg

from domain.memories import MemoryStream
from domain.rooms import Room
from infra.embeddings import MiniLMEmbedder
from infra.memories import MemoryStore
from infra.store import EventStore
from projections.memories import MemoryProjection
from tests.memory.history import redact, save


def contents(store: MemoryStore, agent: str, kind: str | None = None) -> list[str]:
    return sorted(m.content for m in store.memories(agent, kind, limit=1_000))


def test_an_agent_remembers_only_what_it_could_see(events: EventStore, database_url: str,
                                                   schema: str, embedder: MiniLMEmbedder,
                                                   name: str) -> None:
    ada, bo = f"{name}-ada", f"{name}-bo"
    room = Room.create(name, "ana")
    room.post("ana", "before anyone came: the safe code is 1234")
    room.join(ada, "agent")
    room.post("ana", f"hello @{ada}, my favourite colour is teal")
    room.join(bo, "agent")
    room.leave(ada)
    room.post("ana", "while ada is away: the boat is called Wren")
    room.join(ada, "agent")
    room.post(bo, "welcome back")
    save(events, room)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada, bo})
    assert projection.catch_up() > 0
    store = MemoryStore(database_url, schema)
    try:
        assert contents(store, ada, "episodic") == [
            f"In #{name}, ana said: hello @{ada}, my favourite colour is teal",
            f"In #{name}, {bo} said: welcome back"]
        assert contents(store, bo, "episodic") == [
            f"In #{name}, I said: welcome back",
            f"In #{name}, ana said: while ada is away: the boat is called Wren"]
        assert contents(store, bo, "social") == [f"In #{name}, {ada} (an agent) joined the room."]
        assert contents(store, ada, "social") == [f"In #{name}, {bo} (an agent) joined the room."]
        assert projection.catch_up() == 0, "nothing is applied twice"
    finally:
        store.close()
        projection.close()


def test_a_redacted_message_and_what_cites_it_are_forgotten(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada = f"{name}-ada"
    room = Room.create(name, "ana")
    room.join(ada, "agent")
    secret_id, _ = room.post("ana", "my bank PIN is 9911, oops")
    room.post("ana", "the tomatoes are ripe")
    save(events, room)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        [secret] = [m for m in store.memories(ada) if "PIN" in m.content]
        stream = MemoryStream.open(ada)
        stream.reflect("what does ana share?", "ana overshares about money", 7,
                       [secret.memory_id])
        save(events, stream)
        projection.catch_up()
        assert any("overshares" in c for c in contents(store, ada))
        redact(events, room, secret_id, "ana")
        projection.catch_up()
        assert contents(store, ada) == [f"In #{name}, ana said: the tomatoes are ripe"]
    finally:
        store.close()
        projection.close()


def test_feedback_on_an_agents_message_is_a_social_memory(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada = f"{name}-ada"
    room = Room.create(name, "ana")
    room.join(ada, "agent")
    said, _ = room.post(ada, "try neem oil on the aphids")
    room.give_feedback(said, "ana", 1, "worked!")
    save(events, room)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        assert contents(store, ada, "social") == [
            f'In #{name}, ana liked my message "try neem oil on the aphids" and said "worked!".']
    finally:
        store.close()
        projection.close()


def rows(database_url: str, schema: str, agents: set[str]) -> list[dict]:
    store = MemoryStore(database_url, schema)
    try:
        return [r for r in store.snapshot() if r["agent_id"] in agents]
    finally:
        store.close()


def test_dropping_the_tables_and_rebuilding_from_the_log_gives_identical_rows(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada, bo = f"{name}-ada", f"{name}-bo"
    room = Room.create(name, "ana")
    room.join(ada, "agent")
    room.join(bo, "agent")
    for text in ("I water the ferns on Sundays", f"@{ada} remember my dog is called Pip",
                 "I water the ferns on Sundays!", "the greenhouse door sticks"):
        room.post("ana", text)
    room.post(ada, "Pip is a lovely name")
    save(events, room)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada, bo})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        memories = {m.content: m.memory_id for m in store.memories(ada, limit=100)}
        ferns = memories[f"In #{name}, ana said: I water the ferns on Sundays"]
        ferns2 = memories[f"In #{name}, ana said: I water the ferns on Sundays!"]
        door = memories[f"In #{name}, ana said: the greenhouse door sticks"]
        stream = MemoryStream.open(ada)
        manual = stream.remember("procedural", "Sticky doors need graphite", 6, {"by": "ana"})
        stream.rate({door: 3, manual: 8}, "scripted-echo")
        stream.retrieved([ferns, door], "ferns")
        stream.reflect("what does ana care about?", "ana cares for her plants", 7, [ferns2])
        stream.merge(ferns, [ferns2], 0.97)
        stream.forget([door], "deleted by ana")
        fact = stream.remember_fact("ana", "dog", "Pip", "relationship")
        stream.remember_fact("ana", "garden", "has a greenhouse", "other")
        stream.forget_fact("ana", fact)
        save(events, stream)
        projection.catch_up()
    finally:
        store.close()

    before = rows(database_url, schema, {ada, bo})
    store = MemoryStore(database_url, schema)
    try:
        facts_before = store.facts(ada)
        assert [f["key"] for f in facts_before] == ["garden"]
        by_id = {r["id"]: r for r in before}
        assert ferns2 not in by_id and door not in by_id
        assert by_id[ferns]["access_count"] == 1
        assert by_id[manual]["importance"] == 0.8 and by_id[manual]["importance_source"] == "model"
        [insight] = [r for r in before if r["content"] == "ana cares for her plants"]
        assert insight["cites"] == [ferns], "the merged source is cited through its keeper"
    finally:
        store.close()

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.salon_memories")
    fresh = MemoryProjection(database_url, schema, MiniLMEmbedder(batch_size=7),
                             agents={ada, bo})
    fresh.rebuild()
    after = rows(database_url, schema, {ada, bo})
    store = MemoryStore(database_url, schema)
    try:
        assert store.facts(ada) == facts_before
    finally:
        store.close()
    assert [r["id"] for r in after] == [r["id"] for r in before] and before
    for old, new in zip(before, after, strict=True):
        assert {k: v for k, v in old.items() if k != "embedding"} == \
            {k: v for k, v in new.items() if k != "embedding"}
        assert max(abs(a - b) for a, b in zip(old["embedding"], new["embedding"],
                                              strict=True)) <= 1e-6
    projection.close()
    fresh.close()


def test_two_runners_apply_each_event_once(events: EventStore, database_url: str, schema: str,
                                           embedder: MiniLMEmbedder, name: str) -> None:
    ada = f"{name}-ada"
    room = Room.create(name, "ana")
    room.join(ada, "agent")
    for i in range(30):
        room.post("ana", f"note {i}: {uuid.uuid4().hex}")
    save(events, room)
    one = MemoryProjection(database_url, schema, embedder, agents={ada}, batch=7)
    two = MemoryProjection(database_url, schema, embedder, agents={ada}, batch=5)
    stream = MemoryStream.open(ada)
    stream.remember("semantic", "counted once", 5, {})
    save(events, stream)
    one.runner.catch_up(up_to=one.runner.head() - 10)  # one runner part of the way first
    two.catch_up()
    one.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        assert store.count(ada) == 31
        assert one.position() == two.position() > 0
    finally:
        store.close()
        one.close()
        two.close()
