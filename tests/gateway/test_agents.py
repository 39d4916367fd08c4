"""Agents as chat participants, through protocol v1 on the real stack."""

from __future__ import annotations

import json
import time

import ray

from domain.ids import agent_id, room_id
from salon.platform import Platform, Running
from tests.clients import Client


async def room_with_agents(salon: Running, name: str, *agents: dict) -> Client:
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_room", "name": name})
    for agent in agents:
        await client.ok({"type": "create_agent", "definition": agent})
        await client.ok({"type": "add_agent", "room": name, "agent": agent["name"]})
    await client.ok({"type": "join", "room": name, "since": 0})
    return client


def by(client: Client, room: str, author: str) -> list[str]:
    return [m["text"] for m in client.messages(room) if m["author_id"] == author]


async def settle(client: Client, room: str, platform: Platform, agents: list[str]) -> None:
    """Wait until every agent took in the room's head with no work in hand, and the client too."""
    namespace = platform.running.settings.namespace

    def head() -> int:
        return int(platform.store.events(room_id(room), newest=True, limit=1)[0]
                   .originator_version)

    def quiet(_: Client) -> bool:
        top = head()
        for agent in agents:
            seen = ray.get(ray.get_actor(f"agent:{agent}", namespace=namespace)
                           .seen.remote(room))
            if seen["busy"] or seen["position"] < top:
                return False
        return head() == top

    await client.wait_for(quiet, "every agent to take in the room and finish its turns")
    top = head()
    await client.wait_for(lambda c: bool(c.positions(room)) and c.positions(room)[-1] >= top,
                          "the room's head")


async def test_only_the_named_agent_answers_and_quiet_agents_stay_quiet(
        salon: Running, platform: Platform, name: str) -> None:
    ada, bo, cy = (f"{name}-{n}" for n in ("ada", "bo", "cy"))
    client = await room_with_agents(
        salon, name, *({"name": n, "chattiness": 0, "interests": ["gardening"],
                        "script": [f"{n} answers"]} for n in (ada, bo, cy)))
    await client.ok({"type": "say", "room": name, "text": f"@{bo} what about gardening?"})
    await client.ok({"type": "say", "room": name, "text": f"{cy}, and you?"})
    await client.ok({"type": "say", "room": name, "text": "gardening tips, anyone?"})
    await settle(client, name, platform, [ada, bo, cy])
    assert by(client, name, bo) == [f"{bo} answers"]
    assert by(client, name, cy) == [f"{cy} answers"]
    assert by(client, name, ada) == []
    await client.close()


async def test_a_chatty_agent_speaks_on_its_interests_unaddressed(
        salon: Running, platform: Platform, name: str) -> None:
    fan = f"{name}-fan"
    client = await room_with_agents(salon, name, {"name": fan, "chattiness": 1.0,
                                                  "interests": ["orchids"],
                                                  "script": ["orchids are great"]})
    await client.ok({"type": "say", "room": name, "text": "the weather is nice"})
    await client.ok({"type": "say", "room": name, "text": "my orchids bloomed"})
    await settle(client, name, platform, [fan])
    assert by(client, name, fan) == ["orchids are great"]
    await client.close()


async def test_an_agent_to_agent_exchange_stops_at_the_cap(salon: Running, platform: Platform,
                                                           name: str) -> None:
    ping, pong = f"{name}-ping", f"{name}-pong"
    client = await room_with_agents(salon, name,
                                    {"name": ping, "script": [f"@{pong} your turn"]},
                                    {"name": pong, "script": [f"@{ping} your turn"]})
    await client.ok({"type": "set_policy", "room": name, "mode": "free",
                     "max_agent_streak": 5})
    await client.ok({"type": "say", "room": name, "text": f"@{ping} start"})
    await settle(client, name, platform, [ping, pong])
    streak = [m for m in client.messages(name)][1:]
    assert len(streak) == 5 and all(m["author_kind"] == "agent" for m in streak)
    assert [m["agent_streak"] for m in streak] == [1, 2, 3, 4, 5]
    await client.close()


async def test_round_robin_and_selector_modes_pick_one_speaker(salon: Running,
                                                               platform: Platform,
                                                               name: str) -> None:
    one, two, mod = (f"{name}-{n}" for n in ("one", "two", "mod"))
    client = await room_with_agents(salon, name, {"name": one, "script": ["one speaks"]},
                                    {"name": two, "script": ["two speaks"]})
    await client.ok({"type": "set_policy", "room": name, "mode": "round_robin"})
    for text in ("first", "second", "third"):
        await client.ok({"type": "say", "room": name, "text": text})
        await settle(client, name, platform, [one, two])
    assert [m["author_id"] for m in client.messages(name)] == [
        client.messages(name)[0]["author_id"], one, client.messages(name)[0]["author_id"], two,
        client.messages(name)[0]["author_id"], one]
    await client.ok({"type": "create_agent",
                     "definition": {"name": mod, "template": "moderator", "chattiness": 0,
                                    "script": [f"I choose {two}"]}})
    await client.ok({"type": "add_agent", "room": name, "agent": mod})
    await client.ok({"type": "set_policy", "room": name, "mode": "selector", "selector": mod})
    await client.ok({"type": "say", "room": name, "text": "who is next?"})
    await settle(client, name, platform, [one, two, mod])
    await client.wait_for(lambda c: c.messages(name)[-1]["author_id"] == two, "two's answer")
    assert by(client, name, mod) == []
    await client.close()


async def test_an_idle_room_wakes_an_agent_once_with_an_injected_clock(
        salon: Running, platform: Platform, name: str) -> None:
    host = f"{name}-host"
    client = await room_with_agents(salon, name, {"name": host, "idle_after_seconds": 3600,
                                                  "script": ["anyone here?"]})
    await client.ok({"type": "say", "room": name, "text": "hello"})
    await settle(client, name, platform, [host])
    actor = ray.get_actor(f"agent:{host}", namespace=salon.settings.namespace)
    assert await actor.tick.remote(time.time() + 60) == 0
    assert await actor.tick.remote(time.time() + 3601) == 1
    await client.wait_for(lambda c: by(c, name, host) == ["anyone here?"], "the idle message")
    await settle(client, name, platform, [host])
    assert await actor.tick.remote(time.time() + 9000) == 0, "it woke the room twice"
    await client.close()


def order_of(platform: Platform, topic_suffix: str, stream: object) -> list[int]:
    with platform.store.app.recorder.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT notification_id FROM salon_events WHERE originator_id = %s AND topic LIKE %s "
            "ORDER BY notification_id", (stream, f"%{topic_suffix}")).fetchall()
    return [r["notification_id"] for r in rows]


def agent_messages(platform: Platform, room: str, agent: str) -> list[int]:
    with platform.store.app.recorder.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT notification_id, state FROM salon_events WHERE originator_id = %s "
            "AND topic LIKE %s ORDER BY notification_id",
            (room_id(room), "%MessagePosted")).fetchall()
    return [r["notification_id"] for r in rows
            if json.loads(bytes(r["state"]))["author_id"] == agent]


async def test_pause_cancels_the_turn_in_flight_and_resume_answers_again(
        salon: Running, platform: Platform, name: str) -> None:
    slow = f"{name}-slow"
    client = await room_with_agents(salon, name, {
        "name": slow, "model": "scripted-paced-0.3",
        "script": ["one two three four five six seven eight nine ten eleven twelve"]})
    await client.ok({"type": "say", "room": name, "text": f"@{slow} talk slowly"})
    await client.wait_for(lambda c: any(e["kind"] == "agent_token" for e in c.ephemerals),
                          "the first streamed word")
    paused = await client.ok({"type": "command", "agent": slow, "command": "pause"})
    assert paused["status"] == "paused"
    refused = await client.request({"type": "invoke", "room": name, "agent": slow})
    assert refused["code"] == "conflict"
    await settle(client, name, platform, [slow])
    [pause_at] = order_of(platform, "AgentPaused", agent_id(slow))
    assert all(n < pause_at for n in agent_messages(platform, name, slow))
    kinds = [type(e).__name__ for e in platform.store.events(agent_id(slow))]
    assert "TurnFailed" in kinds and kinds.index("TurnFailed") < kinds.index("AgentPaused")

    await client.ok({"type": "command", "agent": slow, "command": "resume"})
    await client.ok({"type": "say", "room": name, "text": f"@{slow} again"})
    await settle(client, name, platform, [slow])
    assert len(by(client, name, slow)) == 1
    await client.close()


async def test_emergency_stop_stops_every_agent_at_once(salon: Running, platform: Platform,
                                                        name: str) -> None:
    tick, tock = f"{name}-tick", f"{name}-tock"
    client = await room_with_agents(
        salon, name, {"name": tick, "model": "scripted-paced-0.05", "script": [f"@{tock} go"]},
        {"name": tock, "model": "scripted-paced-0.05", "script": [f"@{tick} go"]})
    await client.ok({"type": "set_policy", "room": name, "mode": "free", "max_agent_streak": 50})
    await client.ok({"type": "say", "room": name, "text": f"@{tick} begin"})
    await client.wait_for(lambda c: len(c.messages(name)) >= 3, "the agents to get going")
    member = await client.ok({"type": "create_token", "user": f"{name}-joe"})
    joe = await Client.open(salon.ws_url, member["token"])
    assert (await joe.request({"type": "emergency_stop"}))["code"] == "forbidden"
    assert (await joe.request({"type": "command", "agent": tick,
                               "command": "stop"}))["code"] == "forbidden"
    await joe.close()
    stopped = await client.ok({"type": "emergency_stop", "reason": "test"})
    assert {tick, tock} <= set(stopped["stopped"])
    await settle(client, name, platform, [tick, tock])
    for agent in (tick, tock):
        [stop_at] = order_of(platform, "AgentStopped", agent_id(agent))
        assert all(n < stop_at for n in agent_messages(platform, name, agent))
    count = len(client.messages(name))
    await client.ok({"type": "say", "room": name, "text": f"@{tick} @{tock} still there?"})
    await settle(client, name, platform, [tick, tock])
    assert len(client.messages(name)) == count + 1
    for agent in (tick, tock):
        await client.ok({"type": "command", "agent": agent, "command": "resume"})
    await client.close()


async def test_feedback_and_definitions(salon: Running, name: str) -> None:
    helper = f"{name}-help"
    client = await room_with_agents(salon, name, {"name": helper, "template": "support_agent",
                                                  "personality": {"tone": "cheerful"}})
    said = await client.ok({"type": "say", "room": name, "text": "rate me"})
    await client.ok({"type": "feedback", "room": name, "message_id": said["message_id"],
                     "rating": 1, "comment": "good"})
    await client.wait_for(lambda c: any(e["event"]["kind"] == "feedback_given"
                                        for e in c.events), "the feedback event")
    bad = await client.request({"type": "feedback", "room": name, "message_id": "nope",
                                "rating": 1})
    assert bad["code"] == "not_found"
    shown = await client.ok({"type": "show_agent", "agent": helper})
    assert "customer support agent" in shown["system_prompt"]
    assert "Tone: cheerful" in shown["system_prompt"] and shown["version"] == 1
    redefined = await client.ok({"type": "redefine_agent", "definition": {
        "name": helper, "template": "support_agent", "goal": "close tickets fast"}})
    assert redefined["version"] == 2 and "close tickets fast" in redefined["system_prompt"]
    wrong = await client.request({"type": "create_agent",
                                  "definition": {"name": f"{name}-x", "template": "wizard"}})
    assert wrong["code"] == "invalid" and "unknown template" in wrong["message"]
    await client.close()


async def test_tool_calls_are_executed_refused_and_recorded(salon: Running, platform: Platform,
                                                            name: str) -> None:
    calc = f"{name}-calc"
    client = await room_with_agents(salon, name, {
        "name": calc, "tools": ["calculator"],
        "script": [json.dumps([json.dumps({"tool": "calculator",
                                           "arguments": {"expression": "2**10 + sqrt(16)"}}),
                               "the answer is {result}"]),
                   json.dumps([json.dumps({"tool": "run_python",
                                           "arguments": {"code": "print(1)"}}),
                               "python said: {result}"]),
                   json.dumps([json.dumps({"tool": "calculator",
                                           "arguments": {"expression": "().__class__"}}),
                               "calculator said: {result}"])]})
    for ask in ("compute", "run code", "break out"):
        await client.ok({"type": "say", "room": name, "text": f"@{calc} {ask}"})
        await settle(client, name, platform, [calc])
    replies = by(client, name, calc)
    assert replies[0] == "the answer is 1028"
    assert replies[1].startswith("python said: ") and "allow" in replies[1].lower(), replies[1]
    assert "calculator said: " in replies[2] and "attribute" in replies[2].lower(), replies[2]
    executed = [e for e in platform.store.events(agent_id(calc))
                if type(e).__name__ == "ToolExecuted"]
    assert [(e.tool, e.status) for e in executed] == [
        ("calculator", "ok"), ("run_python", "refused"), ("calculator", "error")]
    assert executed[0].result == "1028" and executed[0].arguments == {
        "expression": "2**10 + sqrt(16)"}
    assert any(e["kind"] == "tool_executed" and e["tool"] == "run_python"
               and e["status"] == "refused" for e in client.ephemerals)
    await client.close()
