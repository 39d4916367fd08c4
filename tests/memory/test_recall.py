"""AgentMemory on the real stack: context from the log, recall, rating, facts, reflection,
upkeep; each decision recorded in the agent's memory stream and replayed by the projection."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import Invalid
from domain.memories import MemoryConfig, MemoryStream, Weights, memory_stream_id
from domain.rooms import Room
from infra.embeddings import MiniLMEmbedder
from infra.memories import MemoryStore
from infra.recall import AgentMemory, open_stream
from infra.store import EventStore
from memory.context import ContextMessage, RoomSummary
from projections.memories import MemoryProjection
from tests.memory.history import save


def kinds(events: EventStore, agent: str) -> list[str]:
    return [type(e).__name__ for e in events.events(memory_stream_id(agent))]


class Model:
    """A deterministic stand-in for the agent's model: answers by the prompt's kind."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if "rate the likely poignancy" in prompt:
            count = sum(1 for line in prompt.splitlines() if line[:1].isdigit())
            return "\n".join(f"{i}: {10 if i == 1 else 3}" for i in range(1, count + 1))
        if "Extract the lasting facts" in prompt:
            return json.dumps({"key": "pet", "value": "a cat called Miso",
                               "category": "relationship"})
        if "salient high-level questions" in prompt:
            return "What matters to ana?"
        return "ana loves her cat (because of 1, 2)\nana is busy (because of 3)"


def test_context_strategies_read_the_room(events: EventStore, database_url: str, schema: str,
                                         embedder: MiniLMEmbedder, name: str) -> None:
    ada = f"{name}-ada"
    room = Room.create(name, "ana", topic="plants")
    room.join(ada, "agent")
    room.post("ana", "Welcome! This room is about repotting orchids.")
    for i in range(12):
        room.post("ana", f"chatter {i} about the weather")
    room.post("ana", "how do I repot an orchid?")
    save(events, room)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        def texts(config: MemoryConfig, **kw: object) -> list[str]:
            memory = AgentMemory(ada, events, store, embedder, config)
            return [m.text for m in memory.context(name, None, 3, **kw)]  # type: ignore[arg-type]

        assert texts(MemoryConfig()) == ["chatter 10 about the weather",
                                         "chatter 11 about the weather",
                                         "how do I repot an orchid?"]
        assert texts(MemoryConfig(context="first_last", first_messages=1))[0] == \
            "Welcome! This room is about repotting orchids."
        assert texts(MemoryConfig(context="vector", relevant_messages=1))[0] == \
            "Welcome! This room is about repotting orchids."
        window = texts(MemoryConfig(context="token_window"), budget=40)
        assert window[-1] == "how do I repot an orchid?" and len(window) < 14
        summary = texts(MemoryConfig(context="summarize"),
                        summary=RoomSummary(room.position - 1, "weather talk"))
        assert summary == ["Summary of the conversation so far: weather talk",
                           "how do I repot an orchid?"]
    finally:
        store.close()
        projection.close()


def test_recall_is_recorded_and_moves_last_access(events: EventStore, database_url: str,
                                                  schema: str, embedder: MiniLMEmbedder,
                                                  name: str) -> None:
    ada = f"{name}-ada"
    stream = MemoryStream.open(ada)
    teal = stream.remember("semantic", "ana's favourite colour is teal", 6, {})
    stream.remember("semantic", "the kettle is broken", 2, {})
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        memory = AgentMemory(ada, events, store, embedder, MemoryConfig(recall=1))
        [found] = memory.recall("which colour does ana like?")
        assert found.memory.memory_id == teal
        projection.catch_up()
        [retrieved] = [e for e in events.events(memory_stream_id(ada))
                       if type(e).__name__ == "MemoriesRetrieved"]
        after = store.memory(ada, teal)
        assert after.access_count == 1 and after.last_accessed_at == retrieved.timestamp
        prompt = memory.system_prompt("You are ada.", [found])
        assert "ana's favourite colour is teal" in prompt
        assert AgentMemory(ada, events, store, embedder, MemoryConfig(recall=0)).recall("x") == []
    finally:
        store.close()
        projection.close()


def test_after_a_turn_the_model_rates_extracts_facts_and_reflects(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada = f"{name}-ada"
    stream = MemoryStream.open(ada)
    cat = stream.remember("episodic", "ana said: my cat Miso is ill", 9, {})
    stream.remember("episodic", "ana said: I took Miso to the vet", 9, {})
    for i in range(16):
        stream.remember("episodic", f"ana said: deadline number {i} is due", 9, {})
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    model = Model()
    try:
        memory = AgentMemory(ada, events, store, embedder,
                             MemoryConfig(importance="model", reflection_threshold=150))
        assert store.ratings_since_reflection(ada) == [9.0] * 18
        context = [ContextMessage(1, ada, "hello ana", "agent"),
                   ContextMessage(2, "ana", "my cat Miso is ill, remember that"),
                   ContextMessage(3, "bo", "nice weather", "human")]
        assert memory.people_to_ask_about(context) == ["ana"]
        assert memory.people_to_ask_about(context + [ContextMessage(4, ada, "ok", "agent")]) \
            == []
        done = asyncio.run(memory.after_turn(model, context, "scripted-echo"))
        assert done == {"rated": 18, "facts": 1, "reflections": 2}, done
        projection.catch_up()
        assert [f["value"] for f in store.facts(ada, "ana")] == ["a cat called Miso"]
        insights = store.memories(ada, "semantic")
        assert sorted(m.content for m in insights) == ["ana is busy", "ana loves her cat"]
        assert all(m.cites for m in insights)
        assert store.ratings_since_reflection(ada) == []
        facts_prompt = memory.system_prompt("You are ada.", [], ["ana"])
        assert "What you know about ana:\n- pet: a cat called Miso (relationship)" in facts_prompt
        assert "ImportanceRated" in kinds(events, ada)
        # The model's ratings replaced the heuristic's: the newest got 10, the rest 3.
        episodic = store.memories(ada, "episodic", limit=100)
        assert {m.importance_source for m in episodic} == {"model"}
        assert sorted({m.importance for m in episodic}) == [0.3, 1.0]
        assert store.memory(ada, cat).importance == 0.3
        assert asyncio.run(memory.rate(model, "scripted-echo")) == 0, "nothing left to rate"
    finally:
        store.close()
        projection.close()


def test_upkeep_merges_duplicates_forgets_and_applies_retention(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada = f"{name}-ada"
    stream = MemoryStream.open(ada)
    oldest = [stream.remember("semantic", f"distinct fact {i}: {'xyz' * i} planet {i * 31}",
                              5, {}) for i in range(10)][0]
    keep = stream.remember("semantic", "The greenhouse key hangs by the door.", 8, {})
    dup = stream.remember("semantic", "The greenhouse key hangs by the door", 3, {})
    trivial = stream.remember("semantic", "someone sneezed", 1, {})
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        memory = AgentMemory(ada, events, store, embedder,
                             MemoryConfig(consolidate_above=0.95, forget_below=0.05,
                                          max_memories=10))
        later = datetime.now(UTC) + timedelta(hours=200)  # trivial: 0.1 * 0.995**200 < 0.05
        done = memory.upkeep(now=later)
        assert done.merged == 1 and done.forgotten == 1 and done.past_retention == 1
        projection.catch_up()
        ids = {m.memory_id for m in store.memories(ada, limit=100)}
        assert keep in ids and len(ids) == 10
        assert not {dup, trivial, oldest} & ids
        assert store.memory(ada, keep).importance == 0.8
        assert open_stream(events, ada).recorded == 13
    finally:
        store.close()
        projection.close()


def test_prepare_gives_a_turn_its_context_and_a_system_prompt_with_memory(
        events: EventStore, database_url: str, schema: str, embedder: MiniLMEmbedder,
        name: str) -> None:
    ada = f"{name}-ada"
    room = Room.create(name, "ana")
    room.join(ada, "agent")
    room.post("ana", "I always drink my coffee black, remember that")
    for i in range(30):
        room.post("ana", f"filler message {i} " + "words " * 40)
    room.post("ana", "how do I take my coffee?")
    save(events, room)
    stream = MemoryStream.open(ada)
    stream.remember_fact("ana", "coffee", "black, no sugar", "preference")
    save(events, stream)
    projection = MemoryProjection(database_url, schema, embedder, agents={ada})
    projection.catch_up()
    store = MemoryStore(database_url, schema)
    try:
        memory = AgentMemory(ada, events, store, embedder, MemoryConfig(
            context="token_window", recall=2, weights=Weights(relevance=3)))
        prepared = memory.prepare(name, None, 20, "You are ada.", None, 2_000, 1_000)
        assert prepared.context[-1].text == "how do I take my coffee?"
        assert len(prepared.context) < 31
        assert "I always drink my coffee black" in prepared.system
        assert "- coffee: black, no sugar (preference)" in prepared.system
        assert len(prepared.memory_ids) == 2
        shown = {m.position for m in prepared.context}
        recalled = [store.memory(ada, m) for m in prepared.memory_ids]
        assert not {m.position for m in recalled} & shown, "nothing the context shows anyway"
        unrecorded = memory.prepare(name, None, 20, "You are ada.", "coffee?", 2_000, 1_000,
                                    record=False)
        assert unrecorded.memory_ids
        retrievals = [e for e in events.events(memory_stream_id(ada))
                      if type(e).__name__ == "MemoriesRetrieved"]
        assert len(retrievals) == 1, "a what-if recall records nothing"
        deferred = memory.prepare(name, None, 20, "You are ada.", "coffee?", 2_000, 1_000,
                                  defer=True)
        assert deferred.memory_ids and deferred.pending is not None
        assert kinds(events, ada).count("MemoriesRetrieved") == 1, "a turn records it later"
        deferred.pending()
        assert kinds(events, ada).count("MemoriesRetrieved") == 2
        with pytest.raises(Invalid, match="context window"):
            memory.prepare(name, None, 20, "You are ada.")
    finally:
        store.close()
        projection.close()
