"""Acceptance: an agent told a fact in room A uses it in room B, through protocol v1.

The agent runs the scripted provider with the script line ``{system}``: its reply quotes the
system prompt of its request, so the memories recalled into the prompt show in room B.
It needs the memory integration of ``actors/turns.py`` (recall into the system prompt) and
``infra/llm/scripted.py`` (the ``{system}`` placeholder); until then it is skipped.
"""

from __future__ import annotations

import pytest

from domain.definitions import AgentDefinition
from domain.memories import memory_stream_id
from infra.embeddings import MiniLMEmbedder
from infra.store import EventStore
from projections.memories import MemoryProjection
from salon.platform import Running
from tests.clients import Client

integrated = "memory" in AgentDefinition.model_fields

pytestmark = pytest.mark.skipif(not integrated, reason="needs the memory integration: the "
                                "`memory` field of AgentDefinition and recall in actors/turns.py")


def catch_up_memories(database_url: str, embedder: MiniLMEmbedder) -> None:
    """Run the memory projection over everything logged so far."""
    projection = MemoryProjection(database_url, embedder=embedder)
    try:
        projection.catch_up()
    finally:
        projection.close()


def replies(client: Client, room: str, agent: str) -> list[str]:
    return [m["text"] for m in client.messages(room) if m["author_id"] == agent]


async def test_a_fact_told_in_room_a_is_used_in_room_b(salon: Running, events: EventStore,
                                                       database_url: str,
                                                       embedder: MiniLMEmbedder,
                                                       name: str) -> None:
    agent, room_a, room_b = f"{name}-sage", f"{name}-a", f"{name}-b"
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_agent", "definition": {
        "name": agent, "script": ["{system}"], "memory": {"recall": 3}}})
    for room in (room_a, room_b):
        await client.ok({"type": "create_room", "name": room})
        await client.ok({"type": "add_agent", "room": room, "agent": agent})
        await client.ok({"type": "join", "room": room, "since": 0})
    await client.ok({"type": "say", "room": room_a,
                     "text": f"@{agent} remember this: my sister's name is Wilhelmina"})
    await client.wait_for(lambda c: replies(c, room_a, agent), "the answer in room A")
    # The memory projection takes in room A (the platform may run one too: each event once).
    catch_up_memories(database_url, embedder)

    await client.ok({"type": "say", "room": room_b,
                     "text": f"@{agent} what is my sister called?"})
    await client.wait_for(lambda c: replies(c, room_b, agent), "the answer in room B")
    [answer] = replies(client, room_b, agent)
    assert "Wilhelmina" in answer and f"#{room_a}" in answer, answer
    recorded = [type(e).__name__ for e in events.events(memory_stream_id(agent))]
    assert "MemoriesRetrieved" in recorded
    await client.close()


async def test_words_said_in_a_private_room_never_surface_where_others_read(
        salon: Running, database_url: str, embedder: MiniLMEmbedder, name: str) -> None:
    agent, secret, public = f"{name}-sage", f"{name}-secret", f"{name}-open"
    admin = await Client.open(salon.ws_url, salon.admin_token)
    await admin.ok({"type": "create_agent", "definition": {
        "name": agent, "script": ["{system}"], "memory": {"recall": 5}}})
    await admin.ok({"type": "create_room", "name": secret, "visibility": "private"})
    await admin.ok({"type": "create_room", "name": public})
    token = (await admin.ok({"type": "create_token", "user": f"{name}-bea"}))["token"]
    bea = await Client.open(salon.ws_url, token)
    for room in (secret, public):
        await admin.ok({"type": "add_agent", "room": room, "agent": agent})
        await admin.ok({"type": "join", "room": room, "since": 0})
    await bea.ok({"type": "join", "room": public, "since": 0})
    await admin.ok({"type": "say", "room": secret,
                    "text": f"@{agent} remember this: the vault code is Zanzibar"})
    await admin.wait_for(lambda c: replies(c, secret, agent), "the answer in the private room")
    catch_up_memories(database_url, embedder)

    await bea.ok({"type": "say", "room": public, "text": f"@{agent} what is the vault code?"})
    await bea.wait_for(lambda c: replies(c, public, agent), "the answer in the public room")
    [answer] = replies(bea, public, agent)
    assert "Zanzibar" not in answer, answer
    # The same question in a room only the private room's members share does recall it.
    await admin.ok({"type": "create_room", "name": f"{name}-alone", "visibility": "private"})
    await admin.ok({"type": "add_agent", "room": f"{name}-alone", "agent": agent})
    await admin.ok({"type": "join", "room": f"{name}-alone", "since": 0})
    await admin.ok({"type": "say", "room": f"{name}-alone",
                    "text": f"@{agent} what is the vault code?"})
    await admin.wait_for(lambda c: replies(c, f"{name}-alone", agent), "the answer alone")
    [alone] = replies(admin, f"{name}-alone", agent)
    assert "Zanzibar" in alone, alone
    await bea.close()
    await admin.close()
