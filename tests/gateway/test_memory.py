"""Memory through protocol v1: owners list, search, add and delete; others are refused."""

from __future__ import annotations

import asyncio
from typing import Any

from salon.platform import Running
from tests.clients import Client


async def listed(client: Client, agent: str, **more: Any) -> list[dict[str, Any]]:
    return list((await client.ok({"type": "memories", "agent": agent, **more}))["memories"])


async def eventually(client: Client, agent: str, present: bool, memory_id: str) -> None:
    """The platform's memory projection follows the log: wait until it took the change in."""
    for _ in range(200):
        ids = [m["id"] for m in await listed(client, agent, limit=200)]
        if (memory_id in ids) == present:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"memory {memory_id} never {'appeared' if present else 'went'}")


async def test_owner_adds_searches_and_deletes_memories_others_are_refused(
        salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent = f"{name}-keeper"
    await admin.ok({"type": "create_agent", "definition": {"name": agent}})
    added = await admin.ok({"type": "add_memory", "agent": agent, "importance": 9,
                            "content": "The spare key of the studio hangs behind the clock",
                            "kind": "procedural"})
    other = await admin.ok({"type": "add_memory", "agent": agent, "importance": 2,
                            "content": "The weather was mild on Tuesday"})
    await eventually(admin, agent, True, added["memory_id"])
    await eventually(admin, agent, True, other["memory_id"])

    found = await listed(admin, agent, query="where is the studio key?")
    assert found[0]["id"] == added["memory_id"]
    assert found[0]["kind"] == "procedural" and found[0]["importance"] == 9
    parts = found[0]["parts"]
    assert set(parts) == {"recency", "importance", "relevance"}
    assert abs(sum(parts.values()) - found[0]["score"]) < 1e-5, "default weights are all 1"
    semantic = await listed(admin, agent, query="where is the studio key?", kind="semantic")
    assert [m["id"] for m in semantic] == [other["memory_id"]], "the kind filters a search too"

    member = await admin.ok({"type": "create_token", "user": f"{name}-eve"})
    eve = await Client.open(salon.ws_url, member["token"])
    for frame in ({"type": "memories", "agent": agent},
                  {"type": "memories", "agent": agent, "query": "studio key"},
                  {"type": "add_memory", "agent": agent, "content": "planted"},
                  {"type": "delete_memory", "agent": agent, "memory_id": added["memory_id"]},
                  {"type": "facts", "agent": agent, "about": "admin"}):
        refused = await eve.request(frame)
        assert refused["type"] == "error" and refused["code"] == "forbidden", (frame, refused)
    assert (await eve.ok({"type": "facts", "agent": agent}))["facts"] == []

    await admin.ok({"type": "delete_memory", "agent": agent, "memory_id": added["memory_id"]})
    await eventually(admin, agent, False, added["memory_id"])
    missing = await admin.request({"type": "delete_memory", "agent": agent,
                                   "memory_id": added["memory_id"]})
    assert missing["code"] == "not_found"
    bad = await admin.request({"type": "add_memory", "agent": agent, "content": "x",
                               "importance": 11})
    assert bad["code"] == "invalid" and "importance" in bad["message"]
    await eve.close()
    await admin.close()
