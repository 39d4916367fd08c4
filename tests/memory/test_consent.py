"""Acceptance: consent to being remembered, through protocol v1 on the real services.

A scripted agent answers every model call with one fact line, so after each turn it extracts
a fact about each person whose message said something lasting; the platform's memory
projection (``projection:memories``) forms episodic memories of what people say. A person
who says off is remembered no more (no memory, no fact, not even a ``FactRemembered``) and
what agents held about them goes; on again, they are remembered from then on; a room's
setting affects only that room; nobody changes another's consent.

Absences are checked once the log has moved past them: every turn in question completed
(its fact extraction comes before ``TurnCompleted``) and the memory view caught up with the
log's head (both waited for with deadlines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from domain.ids import agent_id
from domain.memories import memory_stream_id
from infra.store import EventStore
from salon.platform import Running
from simulations.memories import MemoryTables
from tests.clients import Client

FACT = '{{"key": "hobby", "value": "boats", "category": "preference"}}'
DEADLINE = 60.0


async def until(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``check`` (a coroutine function) until it gives something truthy."""
    end = time.monotonic() + deadline
    seen: Any = None
    while time.monotonic() < end:
        seen = await check()
        if seen:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last saw {seen!r}")


async def settled(events: EventStore, database_url: str, agent: str, turns: int) -> None:
    """The agent completed ``turns`` turns and the memory view took in the log up to now."""
    async def done() -> bool:
        found = await asyncio.to_thread(events.events, agent_id(agent))
        return sum(type(e).__name__ in ("TurnCompleted", "TurnFailed") for e in found) >= turns

    await until(done, f"{agent} to complete {turns} turns")
    tables = MemoryTables(database_url, events)
    head = await asyncio.to_thread(tables.head)

    async def caught_up() -> bool:
        return (await asyncio.to_thread(tables.position, head) or 0) >= head

    await until(caught_up, f"the memory view to reach {head}")


def facts_recorded(events: EventStore, agent: str, about: str) -> list[Any]:
    return [e for e in events.events(memory_stream_id(agent))
            if type(e).__name__ == "FactRemembered" and e.user_id == about]


async def mine(client: Client, agent: str) -> dict[str, Any]:
    return await client.ok({"type": "my_memories", "agent": agent})


async def test_consent_off_on_and_per_room(salon: Running, events: EventStore,
                                           database_url: str, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent, here, there = f"{name}-sage", f"{name}-here", f"{name}-there"
    ana_name, bo_name = f"{name}-ana", f"{name}-bo"
    await admin.ok({"type": "create_agent", "definition": {"name": agent, "script": [FACT]}})
    for room in (here, there):
        await admin.ok({"type": "create_room", "name": room})
        await admin.ok({"type": "add_agent", "room": room, "agent": agent})
    ana = await Client.open(salon.ws_url, (await admin.ok(
        {"type": "create_token", "user": ana_name}))["token"])
    bo = await Client.open(salon.ws_url, (await admin.ok(
        {"type": "create_token", "user": bo_name}))["token"])
    for client in (ana, bo):
        for room in (here, there):
            await client.ok({"type": "join", "room": room, "since": 0})

    # Nobody sets another's consent, admins included.
    for client in (bo, admin):
        refused = await client.request({"type": "set_consent", "memory": "off",
                                        "user": ana_name})
        assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    assert (await admin.ok({"type": "consent", "user": ana_name}))["memory"] == "on"
    assert (await bo.request({"type": "consent", "user": ana_name}))["code"] == "forbidden"

    # Off: nothing about ana is formed, while bo's is.
    off = await ana.ok({"type": "set_consent", "memory": "off"})
    assert off["memory"] == "off" and off["changed"]
    await ana.ok({"type": "say", "room": here, "text": "I love sailing, remember that"})
    await bo.ok({"type": "say", "room": here, "text": f"@{agent} I love rowing"})
    await settled(events, database_url, agent, 1)
    held = await mine(ana, agent)
    assert held["memories"] == [] and held["facts"] == [], held
    assert await asyncio.to_thread(facts_recorded, events, agent, ana_name) == []
    bos = await mine(bo, agent)
    assert any("rowing" in m["content"] for m in bos["memories"]), bos
    assert [f["key"] for f in bos["facts"]] == ["hobby"]
    assert all(m["agent"] == agent for m in bos["memories"])

    # On again: remembered from then on, not what was said while off.
    await ana.ok({"type": "set_consent", "memory": "on"})
    await ana.ok({"type": "say", "room": here, "text": f"@{agent} I love kayaking"})
    await settled(events, database_url, agent, 2)
    held = await mine(ana, agent)
    contents = " ".join(m["content"] for m in held["memories"])
    assert "kayaking" in contents and "sailing" not in contents, held
    assert [f["key"] for f in held["facts"]] == ["hobby"], held
    # People delete a memory about them; others' memories are not theirs to delete.
    [kayak] = [m for m in held["memories"] if "kayaking" in m["content"]]
    other = next(m for m in bos["memories"] if "rowing" in m["content"])
    refused = await ana.request({"type": "forget_memory", "agent": agent,
                                 "memory_id": other["id"]})
    assert refused["code"] == "not_found", refused
    await ana.ok({"type": "forget_memory", "agent": agent, "memory_id": kayak["id"]})

    async def kayak_gone() -> bool:
        return all(m["id"] != kayak["id"] for m in (await mine(ana, agent))["memories"])

    await until(kayak_gone, "ana's deleted memory to go")

    # Off again: what agents held about ana is deleted; bo's stays.
    await ana.ok({"type": "say", "room": there, "text": "I love rain, remember it"})

    async def ana_held() -> bool:
        return bool((await mine(ana, agent))["memories"])

    await until(ana_held, "a memory of ana to form in the other room")
    await ana.ok({"type": "set_consent", "memory": "off"})

    async def ana_forgotten() -> dict[str, Any] | None:
        found = await mine(ana, agent)
        return found if not found["memories"] and not found["facts"] else None

    await until(ana_forgotten, "what the agent held about ana to be deleted")
    assert (await mine(bo, agent))["memories"], "bo's memories are untouched"

    # Per room: bo says off in one room; only that room's memories go and stop forming.
    await bo.ok({"type": "say", "room": there, "text": "I love chess, remember it"})

    async def chess_held() -> bool:
        return any("chess" in m["content"] for m in (await mine(bo, agent))["memories"])

    await until(chess_held, "bo's memory in the other room")
    setting = await bo.ok({"type": "set_consent", "memory": "off", "room": there})
    assert setting["memory"] == "on" and setting["rooms"] == {there: "off"}

    async def only_here() -> dict[str, Any] | None:
        found = await mine(bo, agent)
        rooms = {m["room"] for m in found["memories"]}
        return found if rooms == {here} else None

    await until(only_here, "bo's memories in the other room to go (and only those)")
    await bo.ok({"type": "say", "room": there, "text": f"@{agent} I love cycling"})
    await settled(events, database_url, agent, 3)
    await bo.ok({"type": "say", "room": here, "text": f"@{agent} I love hiking"})
    await settled(events, database_url, agent, 4)
    found = await mine(bo, agent)
    contents = " ".join(m["content"] for m in found["memories"])
    assert "hiking" in contents and "rowing" in contents, found
    assert "cycling" not in contents and "chess" not in contents, found
    assert {f["room"] for f in found["facts"]} == {here}, found
    recorded = await asyncio.to_thread(facts_recorded, events, agent, bo_name)
    assert recorded and all(getattr(e, "room", None) != there for e in recorded)
    assert (await bo.ok({"type": "consent"}))["rooms"] == {there: "off"}
    for client in (ana, bo, admin):
        await client.close()


def _view_rows(database_url: str, agent: str, people: list[str]) -> dict[str, list[Any]]:
    """The memory view's rows of ``agent`` and about ``people``, embeddings as ``Near``."""
    import psycopg
    from psycopg.rows import dict_row

    from infra import memories as t
    from tests.projections.test_runner import Near

    queries = {
        t.MEMORIES: (f"SELECT *, embedding::text AS embedding FROM {t.SCHEMA_NAME}.{t.MEMORIES} "
                     "WHERE agent_id = %s ORDER BY id", (agent,)),
        t.FACTS: (f"SELECT * FROM {t.SCHEMA_NAME}.{t.FACTS} WHERE agent_id = %s "
                  "ORDER BY fact_id", (agent,)),
        t.MEMBERS: (f"SELECT * FROM {t.SCHEMA_NAME}.{t.MEMBERS} WHERE agent_id = %s "
                    "ORDER BY room_id", (agent,)),
        t.CONSENT: (f"SELECT * FROM {t.SCHEMA_NAME}.{t.CONSENT} WHERE user_id = ANY(%s) "
                    "ORDER BY user_id, room", (people,)),
    }
    found: dict[str, list[Any]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for table, (sql, args) in queries.items():
            found[table] = [tuple(Near(v) if k == "embedding" else str(v)
                                  for k, v in row.items())
                            for row in conn.execute(sql, args).fetchall()]
    return found


def _cli(salon: Running, *args: str) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SALON_URL": salon.http_url, "SALON_TOKEN": salon.admin_token,
           "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "salon.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def test_salon_projections_rebuild_memories_gives_the_same_rows(
        salon: Running, events: EventStore, database_url: str, name: str) -> None:
    """The memory view rebuilt from 0 by the CLI holds the same rows: every column byte for
    byte but the embeddings, which match to 1e-6 per component (``Near``)."""
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent, room, person = f"{name}-sage", f"{name}-room", f"{name}-cy"
    await admin.ok({"type": "create_agent", "definition": {"name": agent, "script": [FACT]}})
    await admin.ok({"type": "create_room", "name": room})
    await admin.ok({"type": "add_agent", "room": room, "agent": agent})
    cy = await Client.open(salon.ws_url, (await admin.ok(
        {"type": "create_token", "user": person}))["token"])
    await cy.ok({"type": "join", "room": room, "since": 0})
    await cy.ok({"type": "say", "room": room, "text": "I love tea, remember that"})
    await cy.ok({"type": "say", "room": room, "text": f"@{agent} my sister is Dora"})
    await settled(events, database_url, agent, 1)
    await admin.ok({"type": "add_memory", "agent": agent, "content": "Tea at four"})
    await cy.ok({"type": "set_consent", "memory": "off", "room": room})
    await admin.ok({"type": "say", "room": room, "text": "the admin was here"})
    tables = MemoryTables(database_url, events)
    head = await asyncio.to_thread(tables.head)

    async def caught_up() -> bool:
        return (await asyncio.to_thread(tables.position, head) or 0) >= head

    await until(caught_up, "the memory view to take in the history")
    before = await asyncio.to_thread(_view_rows, database_url, agent, [person])
    assert before["salon_memories"] and before["salon_memory_consent"]
    assert "memories" in (await asyncio.to_thread(_cli, salon, "projections", "status"))

    out = await asyncio.to_thread(_cli, salon, "projections", "rebuild", "memories")
    assert "rebuilding memories" in out
    await until(caught_up, "the rebuilt memory view to reach the same point", 120)
    after = await asyncio.to_thread(_view_rows, database_url, agent, [person])
    assert after == before
    await cy.close()
    await admin.close()
