"""Acceptance (replay/fork): an agent in a fork recalls only what it knew at the fork point.

The agent's scripted reply quotes its system prompt (``{system}``), where recalled memories go.
"""

from __future__ import annotations

import asyncio

from infra.memories import MemoryStore
from salon.platform import Running
from tests.clients import Client


def replies(client: Client, room: str, agent: str) -> list[str]:
    return [m["text"] for m in client.messages(room) if m["author_id"] == agent]


async def remembered(database_url: str, agent: str, words: str) -> None:
    """Wait for the platform's memory projection to take in a message containing ``words``."""
    store = MemoryStore(database_url, max_size=1)
    try:
        for _ in range(300):
            found = await asyncio.to_thread(store.memories, agent, None, 200)
            if any(words in m.content for m in found):
                return
            await asyncio.sleep(0.1)
    finally:
        store.close()
    raise AssertionError(f"no memory of {agent} ever mentioned {words!r}")


async def test_a_forked_agent_recalls_only_memories_from_before_the_fork(
        salon: Running, database_url: str, name: str) -> None:
    agent, room, fork = f"{name}-owl", f"{name}-main", f"{name}-branch"
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_agent", "definition": {
        "name": agent, "script": ["{system}"], "memory": {"recall": 20}}})
    await client.ok({"type": "create_room", "name": room})
    await client.ok({"type": "add_agent", "room": room, "agent": agent})
    await client.ok({"type": "join", "room": room, "since": 0})
    said = await client.ok({"type": "say", "room": room, "text": "the rowing boat is teal"})
    await client.ok({"type": "fork", "room": room, "at": said["position"], "name": fork})
    await client.ok({"type": "say", "room": room, "text": "the delivery van is crimson"})
    await remembered(database_url, agent, "crimson")

    await client.ok({"type": "join", "room": fork, "since": 0})
    await client.ok({"type": "say", "room": fork,
                     "text": f"@{agent} and the delivery van, what colour?"})
    await client.wait_for(lambda c: replies(c, fork, agent), "the answer in the fork")
    [fork_answer] = replies(client, fork, agent)
    assert "teal" in fork_answer, "memories from before the fork are recalled"
    assert "crimson" not in fork_answer, "nothing the parent said after the fork is known"
    await client.close()
