"""One connection pipelining says into several rooms: per-room order, exactly once, each
say answered alone; quotas hold without a query per say (issue 14)."""

from __future__ import annotations

import asyncio

from projections import quotas
from projections.quotas import Limits
from projections.service import ProjectionSettings
from projections.views import Reader
from salon.platform import Running
from tests.clients import Client
from tests.projections.conftest import wait_until


async def _history(client: Client, room: str) -> list[dict]:
    return (await client.ok({"type": "history", "room": room, "limit": 500}))["events"]


async def test_says_pipelined_into_several_rooms_keep_each_rooms_order_once(
        salon: Running, name: str) -> None:
    rooms = [f"{name}-{i}" for i in range(3)]
    client = await Client.open(salon.ws_url, salon.admin_token)
    try:
        for room in rooms:
            await client.ok({"type": "create_room", "name": room})
        # All frames are written before any reply is read; rooms interleave.
        says = [{"type": "say", "room": rooms[i % 3], "text": f"m{i}",
                 "client_msg_id": f"c{i}"} for i in range(60)]
        # A repeated client_msg_id inside the pipeline answers the first post, posts nothing.
        says.insert(30, {"type": "say", "room": rooms[0], "text": "m0 again",
                         "client_msg_id": "c0"})
        replies = await asyncio.gather(*(client.request(frame) for frame in says))
        assert all(reply["type"] == "ok" for reply in replies), replies
        assert replies[30]["result"] == replies[0]["result"]
        for index, room in enumerate(rooms):
            events = await _history(client, room)
            positions = [e["position"] for e in events]
            assert positions == list(range(1, len(events) + 1))
            texts = [e["event"]["text"] for e in events if e["event"]["kind"] == "message_posted"]
            assert texts == [f"m{i}" for i in range(index, 60, 3)]
            # Each reply names its own message at its own position.
            mine = [r["result"] for f, r in zip(says, replies, strict=True)
                    if f["room"] == room and f["text"] != "m0 again"]
            by_position = {e["position"]: e["event"]["message_id"] for e in events
                           if e["event"]["kind"] == "message_posted"}
            assert [by_position[r["position"]] for r in mine] == [r["message_id"] for r in mine]
    finally:
        await client.close()


async def test_a_refused_say_in_a_pipeline_is_answered_alone_and_the_rest_go_on(
        salon: Running, name: str) -> None:
    client = await Client.open(salon.ws_url, salon.admin_token)
    try:
        await client.ok({"type": "create_room", "name": name})
        frames = [{"type": "say", "room": name, "text": "first"},
                  {"type": "say", "room": name, "text": "a reply", "reply_to": "no-such-id"},
                  {"type": "say", "room": name, "text": "   "},
                  {"type": "say", "room": name, "text": "last"}]
        replies = await asyncio.gather(*(client.request(frame) for frame in frames))
        assert [r["type"] for r in replies] == ["ok", "error", "error", "ok"], replies
        assert replies[1]["code"] == "not_found" and "no-such-id" in replies[1]["message"]
        assert replies[2]["code"] == "invalid"
        texts = [e["event"]["text"] for e in await _history(client, name)
                 if e["event"]["kind"] == "message_posted"]
        assert texts == ["first", "last"]
        assert replies[3]["result"]["position"] == replies[0]["result"]["position"] + 1
    finally:
        await client.close()


async def test_quotas_hold_for_a_pipeline_without_waiting_for_the_view(
        salon: Running, name: str) -> None:
    assert salon.settings.database_url
    guard = quotas.guard(salon.settings.database_url)
    limits = guard.quotas.limits
    admin = await Client.open(salon.ws_url, salon.admin_token)
    token = (await admin.ok({"type": "create_token", "user": f"{name}-ann"}))["token"]
    ann = await Client.open(salon.ws_url, token)
    try:
        await admin.ok({"type": "create_room", "name": name})
        await admin.ok({"type": "create_room", "name": f"{name}-b"})
        # The author's quota spans rooms and is counted as says go out, not when the view
        # catches up: of 6 pipelined says, 4 pass.
        guard.quotas.limits = Limits(thread_messages=None, thread_bytes=None, user_messages=4,
                                     user_bytes=None)
        frames = [{"type": "say", "room": name if i % 2 else f"{name}-b", "text": f"s{i}"}
                  for i in range(6)]
        replies = await asyncio.gather(*(ann.request(f) for f in frames))
        assert [r["type"] for r in replies].count("ok") == 4, replies
        refused = [r for r in replies if r["type"] == "error"]
        assert all(r["code"] == "rate_limited" and "their quota is 4" in r["message"]
                   for r in refused), refused
        # The room's size limit is the room actor's, from the room it holds: exact at once.
        guard.quotas.limits = Limits(thread_messages=5, thread_bytes=None, user_messages=None,
                                     user_bytes=None)
        room = f"{name}-c"
        await admin.ok({"type": "create_room", "name": room})
        replies = await asyncio.gather(*(admin.request(
            {"type": "say", "room": room, "text": f"t{i}"}) for i in range(8)))
        assert [r["type"] for r in replies] == ["ok"] * 5 + ["error"] * 3, replies
        assert "is full: it holds 5 messages" in replies[5]["message"]
    finally:
        guard.quotas.limits = limits
        await ann.close()
        await admin.close()


async def test_projections_stay_exactly_once_while_rooms_commit_at_once(
        salon: Running, name: str) -> None:
    """8 connections pipeline into 8 rooms at once; the threads view gets each message once."""
    assert salon.settings.database_url
    rooms = [f"{name}-{i}" for i in range(8)]
    admin = await Client.open(salon.ws_url, salon.admin_token)
    clients = [await Client.open(salon.ws_url, salon.admin_token) for _ in rooms]
    try:
        for room in rooms:
            await admin.ok({"type": "create_room", "name": room})

        async def post(client: Client, room: str) -> list[dict]:
            return list(await asyncio.gather(*(client.request(
                {"type": "say", "room": room, "text": f"{room} {i}"}) for i in range(25))))

        answered = await asyncio.gather(*(post(c, r) for c, r in zip(clients, rooms,
                                                                      strict=True)))
        assert all(reply["type"] == "ok" for replies in answered for reply in replies)
        reader = Reader(salon.settings.database_url, ProjectionSettings().schema("threads"))
        try:
            def counted() -> list[dict]:
                rows = reader.rows(
                    "SELECT t.name, count(*) AS n, count(DISTINCT m.position) AS d, "
                    "min(m.position) AS lo, max(m.position) AS hi FROM {s}.messages m "
                    "JOIN {s}.threads t USING (room_id) WHERE t.name = ANY(%s) GROUP BY t.name",
                    (rooms,))
                return rows if len(rows) == 8 and all(r["n"] >= 25 for r in rows) else []

            rows = wait_until(counted, "the threads view to hold every message", timeout=120)
        finally:
            reader.close()
        for row in rows:
            assert (row["n"], row["d"]) == (25, 25), row  # once each, no duplicates
            assert row["hi"] - row["lo"] == 24, row  # gapless within the room
    finally:
        await asyncio.gather(*(c.close() for c in [admin, *clients]))
