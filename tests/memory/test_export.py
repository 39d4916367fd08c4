"""Export and import into a fresh database: a room's transcript, an agent with its memories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from domain import exports
from domain.ids import room_id
from domain.wire import event_body
from infra.embeddings import MiniLMEmbedder
from infra.memories import MemoryStore
from infra.recall import open_stream, record_decision
from infra.servers import EmbeddedPostgres
from infra.store import EventStore
from projections.memories import MemoryProjection
from projections.replays import export
from salon.platform import Running
from tests.clients import Client


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second, empty installation's database."""
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("fresh")) / "pg")
    url = server.start()
    yield url
    server.stop()


def load(store: EventStore, data: str) -> str:
    kind, name, records = exports.read(data)
    main, own, more = exports.streams_of(kind, name, records)
    store.insert_records(main, own, more)
    return name


async def test_a_room_and_an_agent_with_its_memories_move_to_a_fresh_database(
        salon: Running, events: EventStore, embedder: MiniLMEmbedder, fresh: str,
        name: str) -> None:
    agent, room = f"{name}-scribe", f"{name}-hall"
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_agent", "definition": {"name": agent}})
    await client.ok({"type": "create_room", "name": room})
    await client.ok({"type": "add_agent", "room": room, "agent": agent})
    await client.ok({"type": "say", "room": room, "text": "scribe, note the date please"})
    added = await client.ok({"type": "add_memory", "agent": agent, "importance": 8,
                             "content": "The archive moved to the east wing in March",
                             "kind": "semantic"})
    await client.close()
    fact_id = record_decision(events, agent, lambda stream: stream.remember_fact(
        "admin", "office", "east wing", "work"))
    room_data = export(events, "room", room)
    agent_data = export(events, "agent", agent)
    assert '"stream":"memory"' in agent_data

    target = EventStore(fresh)
    try:
        for altered in (agent_data.replace("east wing", "west wing"), agent_data[:-30]):
            with pytest.raises(Exception, match="checksum|truncated|JSON"):
                load(target, altered)
        assert load(target, room_data) == room
        assert load(target, agent_data) == agent
        with psycopg.connect(fresh) as conn:
            stored = b"".join(bytes(r[0]) for r in conn.execute(
                "SELECT state FROM salon_events").fetchall())
        assert b"note the date" not in stored and b"east wing" not in stored, \
            "an import is sealed again with the new installation's keys"
        moved = [event_body(e) for e in target.events(room_id(room))]
        assert moved == [event_body(e) for e in events.events(room_id(room))]
        assert open_stream(target, agent).facts_about("admin")[0]["fact_id"] == fact_id

        projection = MemoryProjection(fresh, embedder=embedder, agents={agent})
        try:
            projection.catch_up()
        finally:
            projection.close()
        store = MemoryStore(fresh, max_size=1)
        try:
            memories = {m.memory_id: m for m in store.memories(agent, limit=100)}
            assert memories[added["memory_id"]].content == \
                "The archive moved to the east wing in March"
            assert memories[added["memory_id"]].importance == pytest.approx(0.8)
            assert any("note the date" in m.content for m in memories.values()), \
                "what the agent saw in the room is remembered in the new installation"
            assert [f["value"] for f in store.facts(agent, "admin")] == ["east wing"]
        finally:
            store.close()
    finally:
        target.close()
