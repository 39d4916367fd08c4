"""Protocol v1 against the real stack: Postgres, Valkey, Ray actors and the gateway."""

from __future__ import annotations

import asyncio
import json

import ray
from websockets.asyncio.client import connect

from actors import directory
from domain.agents import Agent
from domain.ids import agent_id
from salon.platform import Running
from tests.clients import Client


async def open_room(salon: Running, name: str, agent: dict | None = None) -> Client:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    await admin.ok({"type": "create_room", "name": name, "topic": "test"})
    if agent is not None:
        await admin.ok({"type": "create_agent", "definition": agent})
        await admin.ok({"type": "add_agent", "room": name, "agent": agent["name"]})
    return admin


async def head_of(client: Client, room: str) -> int:
    events = (await client.ok({"type": "history", "room": room, "limit": 1}))["events"]
    return int(events[-1]["position"])


async def test_two_clients_and_an_agent_see_every_message_in_the_same_gapless_order(
        salon: Running, name: str) -> None:
    bot = f"{name}-bot"
    admin = await open_room(salon, name, {"name": bot, "script": ["bot heard {text}"]})
    token = (await admin.ok({"type": "create_token", "user": f"{name}-bea"}))["token"]
    alice = admin
    bea = await Client.open(salon.ws_url, token)
    for client in (alice, bea):
        joined = await client.ok({"type": "join", "room": name, "since": 0})
        assert joined["room"] == name
    for i in range(10):
        await alice.ok({"type": "say", "room": name,
                        "text": f"a{i} @{bot}" if i % 4 == 0 else f"a{i}"})
        await bea.ok({"type": "say", "room": name, "text": f"b{i}"})

    def done(c: Client) -> bool:
        authors = [m["author_id"] for m in c.messages(name)]
        return authors.count(bot) == 3 and len(authors) == 23

    for client in (alice, bea):
        await client.wait_for(done, "20 human messages and 3 agent replies")
    assert alice.positions(name) == bea.positions(name)
    positions = alice.positions(name)
    assert positions == list(range(1, positions[-1] + 1))
    assert [m["text"] for m in alice.messages(name)] == [m["text"] for m in bea.messages(name)]
    replies = [m for m in alice.messages(name) if m["author_id"] == bot]
    assert all(m["text"].startswith("bot heard a") and m["author_kind"] == "agent"
               for m in replies)
    assert any(e["kind"] == "agent_thinking" and e["agent"] == bot for e in alice.ephemerals)
    await alice.close()
    await bea.close()


async def test_an_agent_turn_is_recorded_in_its_own_stream(salon: Running, name: str,
                                                           platform) -> None:
    bot = f"{name}-bot"
    admin = await open_room(salon, name, {"name": bot, "opening_line": "hello, I am new"})
    await admin.ok({"type": "join", "room": name, "since": 0})
    await admin.wait_for(lambda c: any(m["author_id"] == bot for m in c.messages(name)),
                         "the opening line")
    turn = await admin.ok({"type": "invoke", "room": name, "agent": bot, "prompt": "status?"})
    await admin.wait_for(lambda c: len([m for m in c.messages(name)
                                        if m["author_id"] == bot]) == 2, "the invoked reply")
    tokens = "".join(e["delta"] for e in admin.ephemerals
                     if e["kind"] == "agent_token" and e["turn_id"] == turn["turn_id"])
    assert tokens == admin.messages(name)[-1]["text"]

    def recorded() -> list[str]:
        return [type(e).__name__ for e in platform.store.events(agent_id(bot))]

    await admin.wait_for(lambda _: recorded().count("TurnCompleted") == 2, "TurnCompleted x2")
    assert recorded() == ["AgentDefined", "TurnStarted", "TurnCompleted", "TurnStarted",
                          "ModelCalled", "TurnCompleted"]
    agent = platform.store.get(Agent, agent_id(bot), "agent")
    assert agent.turn_count == 2 and agent.open_turns() == []
    await admin.close()


async def test_killing_the_room_actor_loses_and_duplicates_no_acknowledged_message(
        salon: Running, name: str) -> None:
    client = await open_room(salon, name)
    acknowledged: list[tuple[int, str]] = []

    async def keep_posting() -> None:
        for i in range(80):
            reply = await client.request({"type": "say", "room": name, "text": f"m{i}"})
            if reply["type"] == "ok":
                acknowledged.append((reply["result"]["position"], f"m{i}"))

    poster = asyncio.get_running_loop().create_task(keep_posting())
    await client.wait_for(lambda _: len(acknowledged) >= 15, "15 acknowledged posts")
    before = len(acknowledged)
    # The process that holds the room (its host, by default) crashes and Ray restarts it.
    ray.kill(directory.process("room", name, salon.settings), no_restart=False)
    await asyncio.wait_for(poster, 120)
    assert len(acknowledged) > before + 10, "posting went on after the restart"
    history = await client.ok({"type": "history", "room": name, "limit": 500})
    texts = [e["event"]["text"] for e in history["events"]
             if e["event"]["kind"] == "message_posted"]
    acked_in_order = [text for _, text in sorted(acknowledged)]
    assert [t for t in texts if t in set(acked_in_order)] == acked_in_order
    assert len(texts) == len(set(texts)), "a message was posted twice"
    positions = [e["position"] for e in history["events"]]
    assert positions == list(range(1, positions[-1] + 1))
    await client.close()


async def test_rejoining_with_since_yields_exactly_the_missed_events(salon: Running,
                                                                      name: str) -> None:
    writer = await open_room(salon, name)
    reader = await Client.open(salon.ws_url, salon.admin_token)
    await reader.ok({"type": "join", "room": name, "since": 0})
    await reader.wait_for(lambda c: len(c.positions(name)) >= 2, "the room's first events")
    last = reader.positions(name)[-1]
    await reader.close()
    for i in range(50):
        await writer.ok({"type": "say", "room": name, "text": f"missed {i}"})
    back = await Client.open(salon.ws_url, salon.admin_token)
    joined = await back.ok({"type": "join", "room": name, "since": last})
    assert joined["position"] == last + 50
    await back.wait_for(lambda c: len(c.events) >= 50, "the 50 missed events")
    await writer.ok({"type": "say", "room": name, "text": "after"})
    await back.wait_for(lambda c: len(c.events) >= 51, "the live event")
    assert back.positions(name) == list(range(last + 1, last + 52))
    assert [m["text"] for m in back.messages(name)][:50] == [f"missed {i}" for i in range(50)]
    for client in (writer, back):
        await client.close()


async def test_the_same_client_msg_id_twice_posts_one_message(salon: Running, name: str) -> None:
    client = await open_room(salon, name)
    frame = {"type": "say", "room": name, "text": "once", "client_msg_id": "c-1"}
    first = await client.ok(frame)
    second = await client.ok(frame)
    assert first == second
    history = await client.ok({"type": "history", "room": name})
    assert [e["event"]["text"] for e in history["events"]
            if e["event"]["kind"] == "message_posted"] == ["once"]
    await client.close()


async def test_malformed_frames_get_invalid_keep_the_connection_and_append_nothing(
        salon: Running, name: str) -> None:
    client = await open_room(salon, name)
    head = await head_of(client, name)
    bad = [
        "this is not json",
        json.dumps({"type": "shout", "room": name}),
        json.dumps({"type": "say", "room": name}),
        json.dumps({"type": "say", "room": name, "text": 42}),
        json.dumps({"type": "say", "room": 7, "text": "x"}),
        json.dumps({"type": "say", "room": name, "text": "x" * 2_000_000}),
        json.dumps({"type": "join", "room": name, "since": "zero"}),
    ]
    for count, frame in enumerate(bad, start=1):
        await client.ws.send(frame)
        await client.wait_for(lambda c, n=count: len(c.unmatched) == n,
                              f"an answer to {frame[:40]!r}")
        answer = client.unmatched[-1]
        assert answer["type"] == "error" and answer["code"] == "invalid", answer
        assert answer["message"]
    assert (await client.ok({"type": "whoami"}))["user"] == "admin"
    assert await head_of(client, name) == head
    await client.close()


async def test_a_bad_token_is_refused_with_close_code_4401(salon: Running) -> None:
    async with connect(salon.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": "admin.not-the-secret", "id": 1}))
        answer = json.loads(await ws.recv())
        assert answer["code"] == "unauthenticated" and answer["id"] == 1
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 4401


async def test_requests_before_hello_and_unknown_rooms_get_clear_errors(salon: Running,
                                                                        name: str) -> None:
    anonymous = await Client.open(salon.ws_url)
    refused = await anonymous.request({"type": "join", "room": name})
    assert refused["code"] == "unauthenticated"
    await anonymous.close()
    client = await Client.open(salon.ws_url, salon.admin_token)
    missing = await client.request({"type": "join", "room": name})
    assert missing["code"] == "not_found" and "salon rooms list" in missing["message"]
    await client.ok({"type": "create_room", "name": name})
    again = await client.request({"type": "create_room", "name": name})
    assert again["code"] == "conflict"
    await client.close()


async def test_private_rooms_are_forbidden_to_non_members(salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    await admin.ok({"type": "create_room", "name": name, "visibility": "private"})
    token = (await admin.ok({"type": "create_token", "user": f"{name}-eve"}))["token"]
    eve = await Client.open(salon.ws_url, token)
    for frame in ({"type": "join", "room": name}, {"type": "history", "room": name},
                  {"type": "say", "room": name, "text": "let me in"},
                  {"type": "create_token", "user": "mallory"}):
        assert (await eve.request(frame))["code"] == "forbidden", frame
    rooms = (await eve.ok({"type": "list_rooms"}))["rooms"]
    assert name not in [r["name"] for r in rooms]
    await eve.close()
    await admin.close()
