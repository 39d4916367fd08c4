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
    projection = MemoryProjection(database_url, embedder=embedder)
    try:
        projection.catch_up()
    finally:
        projection.close()

    await client.ok({"type": "say", "room": room_b,
                     "text": f"@{agent} what is my sister called?"})
    await client.wait_for(lambda c: replies(c, room_b, agent), "the answer in room B")
    [answer] = replies(client, room_b, agent)
    assert "Wilhelmina" in answer and f"#{room_a}" in answer, answer
    recorded = [type(e).__name__ for e in events.events(memory_stream_id(agent))]
    assert "MemoriesRetrieved" in recorded
    await client.close()
