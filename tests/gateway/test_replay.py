"""Replay, fork, diff, export and import through protocol v1 on the real stack."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import exports
from domain.errors import Invalid
from domain.ids import agent_id, room_id
from domain.rooms import Room
from salon.platform import Platform, Running
from tests.clients import Client
from tests.installations import fresh_services


@settings(max_examples=5, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_state_replayed_at_random_positions_equals_the_state_built_up_to_them(
        seed: int) -> None:
    rng = random.Random(seed)
    room = Room.create("big", "alice")
    for member in ("bo", "cy"):
        room.join(member, "human")
    states: dict[int, dict] = {}
    while room.position < 1_000:
        author = rng.choice(["alice", "bo", "cy"])
        roll = rng.random()
        if roll < 0.02 and room.message_ids:
            room.give_feedback(rng.choice(list(room.message_ids)), author, 1)
        elif roll < 0.03:
            room.set_policy(rng.choice(["free", "round_robin"]), rng.randint(0, 5))
        else:
            room.post(author, f"m{room.position}", client_msg_id=rng.choice([None, "k1", "k2"]))
        states[room.position] = room.describe()
    events = room.collect_events()
    for position in rng.sample(sorted(states), 10):
        past = None
        for e in events[:position]:
            past = e.mutate(past)
        assert past is not None and past.describe() == states[position]


async def test_a_fork_is_independent_and_continues_from_its_point(salon: Running,
                                                                 name: str) -> None:
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_room", "name": name})
    for i in range(5):
        await client.ok({"type": "say", "room": name, "text": f"m{i}"})
    head = (await client.ok({"type": "history", "room": name, "limit": 1}))["events"][-1]
    forked = await client.ok({"type": "fork", "room": name, "at": 5, "name": f"{name}-f"})
    fork = forked["room"]
    assert forked["position"] == 5
    in_parent = await client.ok({"type": "say", "room": name, "text": "parent only"})
    in_fork = await client.ok({"type": "say", "room": fork, "text": "fork only"})
    assert in_fork["position"] == 6 and in_parent["position"] == head["position"] + 1
    parent = [e["event"].get("text") for e in
              (await client.ok({"type": "history", "room": name}))["events"]]
    child = (await client.ok({"type": "history", "room": fork}))["events"]
    assert "fork only" not in parent and parent[-1] == "parent only"
    assert child[0]["event"]["kind"] == "room_forked"
    assert child[0]["event"]["parent_room_id"] == name and child[0]["event"]["at_position"] == 5
    assert [e["event"].get("text") for e in child[2:]] == ["m0", "m1", "m2", "fork only"]
    grandchild = await client.ok({"type": "fork", "room": fork, "at": 6})
    assert grandchild["room"].startswith(f"{name}-f-fork-")
    parted = await client.ok({"type": "diff", "room": name, "other": fork})
    assert parted["shared_up_to"] == 5
    assert [e["text"] for e in parted["other_only"]] == ["fork only"]
    past = await client.ok({"type": "replay", "room": name, "at": 4})
    assert past["state"]["position"] == 4
    assert [m["text"] for m in past["transcript"]] == ["m0", "m1"]
    too_far = await client.request({"type": "fork", "room": name, "at": 999})
    assert too_far["code"] == "invalid"
    by_message = await client.ok({"type": "fork", "room": name,
                                  "message_id": in_parent["message_id"]})
    assert by_message["at"] == in_parent["position"]
    await client.close()


async def test_export_then_import_gives_the_same_transcript_and_tampering_is_refused(
        salon: Running, platform: Platform, name: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_room", "name": name})
    for i in range(4):
        await client.ok({"type": "say", "room": name, "text": f"line {i} \u00e9"})
    exported = await client.ok({"type": "export", "kind": "room", "name": name})
    data = exported["data"]
    before = (await client.ok({"type": "history", "room": name}))["events"]
    await client.close()

    # A fresh installation: its own database and actors, its own gateway.
    with fresh_services(platform, tmp_path_factory.mktemp("fresh-home")) as fresh:
        http, _, token = str(fresh.watch_url).partition("?token=")
        other = await Client.open(http.replace("http://", "ws://") + "v1/ws", token)
        try:
            altered = data.replace("line 2", "line X")
            refused = await other.request({"type": "import", "data": altered})
            assert refused["code"] == "invalid" and "line 6 fails its checksum" in \
                refused["message"]
            assert not fresh.store.exists(room_id(name)), "a refused import wrote something"
            for broken in (data[:-40], "\n".join(data.splitlines()[:3] +
                                                  data.splitlines()[4:])):
                assert (await other.request({"type": "import", "data": broken}))["code"] == \
                    "invalid"
            assert not fresh.store.exists(room_id(name))

            imported = await other.ok({"type": "import", "data": data})
            assert imported == {"kind": "room", "name": name,
                                "position": before[-1]["position"]}
            after = (await other.ok({"type": "history", "room": name}))["events"]
            assert after == before
            again = await other.request({"type": "import", "data": data})
            assert again["code"] == "conflict"
        finally:
            await other.close()


def test_every_single_altered_byte_is_detected() -> None:
    room = Room.create("r", "alice")
    room.post("alice", "hello")
    records = [exports.Record(e.originator_version, type(e).__qualname__, str(vars(e)))
               for e in room.collect_events()]
    text = exports.write("room", "r", records)
    assert exports.read(text)[2] == records
    rng = random.Random(7)
    for index in rng.sample(range(len(text) - 1), 40):
        if text[index] == "\n":
            continue
        changed = text[:index] + chr((ord(text[index]) + 1) % 128 or 65) + text[index + 1:]
        try:
            exports.read(changed)
        except Invalid:
            continue
        raise AssertionError(f"a change at byte {index} went unnoticed")


async def test_a_recorded_three_agent_conversation_with_tools_reruns_identically(
        salon: Running, platform: Platform, name: str) -> None:
    from tests.gateway.test_agents import room_with_agents, settle

    a, b, c = (f"{name}-{n}" for n in ("a", "b", "c"))
    calc = '{"tool": "calculator", "arguments": {"expression": "6*7"}}'
    client = await room_with_agents(
        salon, name,
        {"name": a, "tools": ["calculator"],
         "script": [json.dumps([calc, f"{a}: it is {{result}} @{b}"])]},
        {"name": b, "script": [f"{b} agrees with {{author}} @{c}"]},
        {"name": c, "opening_line": f"{c} is here", "script": [f"{c} closes: {{text}}"]})
    await client.ok({"type": "set_policy", "room": name, "mode": "free", "max_agent_streak": 5})
    await settle(client, name, platform, [a, b, c])
    await client.ok({"type": "say", "room": name, "text": f"@{a} what is six times seven?"})
    await settle(client, name, platform, [a, b, c])
    await client.ok({"type": "say", "room": name, "text": "thanks all"})
    await settle(client, name, platform, [a, b, c])
    source = [(m["author_id"], m["text"]) for m in client.messages(name)]
    assert source[0][0] == c and {a, b, c, "admin"} == {author for author, _ in source}
    tools = [e for e in platform.store.events(agent_id(a))
             if type(e).__name__ == "ToolExecuted"]
    assert tools and tools[0].tool == "calculator"

    # Any real model call would now fail: every agent points at a closed local port.
    for agent in (a, b, c):
        shown = await client.ok({"type": "show_agent", "agent": agent})
        await client.ok({"type": "redefine_agent", "definition": {
            **shown["definition"], "provider": "openai-compatible", "model": "offline",
            "base_url": "http://127.0.0.1:9/v1"}})
    result = await client.ok({"type": "rerun", "room": name, "name": f"{name}-again"})
    assert result["transcript_equal"] is True
    history = await client.ok({"type": "history", "room": f"{name}-again", "limit": 500})
    again = [(e["event"]["author_id"], e["event"]["text"]) for e in history["events"]
             if e["event"]["kind"] == "message_posted"]
    assert again == source
    await client.close()


async def test_a_counterfactual_fork_runs_an_agent_with_another_definition(
        salon: Running, platform: Platform, name: str) -> None:
    from tests.gateway.test_agents import by, room_with_agents, settle

    bot = f"{name}-bot"
    client = await room_with_agents(salon, name, {"name": bot, "script": ["plan A"]})
    await client.ok({"type": "say", "room": name, "text": f"@{bot} which plan?"})
    await settle(client, name, platform, [bot])
    head = (await client.ok({"type": "history", "room": name, "limit": 1}))["events"][-1]
    what_if = (await client.ok({"type": "fork", "room": name, "at": head["position"]}))["room"]
    await client.ok({"type": "override", "room": what_if, "agent": bot,
                     "changes": {"script": ["plan B"], "model": "scripted-other"}})
    bad = await client.request({"type": "override", "room": what_if, "agent": bot,
                                "changes": {"chattiness": 7}})
    assert bad["code"] == "invalid"
    await client.ok({"type": "join", "room": what_if, "since": 0})
    await client.ok({"type": "say", "room": what_if, "text": f"@{bot} and now?"})
    await client.ok({"type": "say", "room": name, "text": f"@{bot} and now?"})
    await settle(client, what_if, platform, [bot])
    await settle(client, name, platform, [bot])
    assert by(client, what_if, bot)[-1] == "plan B"
    assert by(client, name, bot) == ["plan A", "plan A"]
    await client.close()
