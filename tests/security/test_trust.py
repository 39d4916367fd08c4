"""The attacks of issue 12, each tried as an ordinary member would, through the public protocol
on the real services: each is refused or contained, and the log holds nothing it wrote."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from domain.ids import agent_id, room_id
from domain.rooms import direct_room_name
from gateway.auth import Accounts
from gateway.server import Gateway
from salon.platform import Platform, Running
from tests.clients import Client


def tool_step(tool: str, arguments: dict[str, Any], then: str) -> str:
    """A scripted reply that calls ``tool`` and then answers with its result."""
    return json.dumps([json.dumps({"tool": tool, "arguments": arguments}), then])


async def member(salon: Running, admin: Client, who: str) -> Client:
    token = (await admin.ok({"type": "create_token", "user": who}))["token"]
    return await Client.open(salon.ws_url, token)


def recorded(platform: Platform, agent: str, kind: str) -> list[Any]:
    return [e for e in platform.store.events(agent_id(agent)) if type(e).__name__ == kind]


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 recording whatever anyone sends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                peer, _ = server.accept()
            except OSError:
                continue
            peer.settimeout(1)
            try:
                seen.append(peer.recv(65_536))
            except OSError:
                seen.append(b"")
            peer.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


async def test_a_member_cannot_grant_themselves_code(salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    eve = await member(salon, admin, f"{name}-eve")
    refused = await eve.request({"type": "create_agent", "definition": {
        "name": f"{name}-pwn", "tools": ["run_python"], "permissions": ["code"]}})
    assert refused["code"] == "forbidden" and "only an admin grants" in refused["message"]
    # Listing the tool without the permission asks for it just the same.
    refused = await eve.request({"type": "create_agent", "definition": {
        "name": f"{name}-pwn", "tools": ["run_python"]}})
    assert refused["code"] == "forbidden" and "code" in refused["message"]
    assert (await eve.request({"type": "show_agent", "agent": f"{name}-pwn"}))["code"] == \
        "not_found"
    # Granted by an admin as a quota, the member may hand it to an agent they own.
    await admin.ok({"type": "grant", "user": f"{name}-eve",
                    "capabilities": {"permissions": ["code"]}})
    made = await eve.ok({"type": "create_agent", "definition": {
        "name": f"{name}-ok", "tools": ["run_python"], "permissions": ["code"]}})
    assert made["owner_id"] == f"{name}-eve"
    await eve.close()
    await admin.close()


async def test_a_member_cannot_send_a_key_to_a_server_of_their_choosing(
        salon: Running, name: str, listener: tuple[int, list[bytes]]) -> None:
    port, seen = listener
    admin = await Client.open(salon.ws_url, salon.admin_token)
    eve = await member(salon, admin, f"{name}-eve")
    for definition in (
            {"provider": "openai-compatible", "model": "m",
             "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "OPENAI_API_KEY"},
            {"provider": "openai-compatible", "model": "m",
             "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "SALON_DATABASE_URL"},
            {"provider": "openai", "model": "gpt-4o-mini"},
            {"provider": "scripted", "model": "x",
             "fallbacks": [f"openai-compatible:m@http://127.0.0.1:{port}/v1"]}):
        refused = await eve.request({"type": "create_agent",
                                     "definition": {"name": f"{name}-spy", **definition}})
        assert refused["code"] == "forbidden", (definition, refused)
        assert "admin" in refused["message"]
    # An admin grants endpoints only by the names the operator configured.
    bad = await admin.request({"type": "grant", "user": f"{name}-eve",
                               "capabilities": {"endpoints": [f"url:http://127.0.0.1:{port}"]}})
    assert bad["code"] == "invalid" and "SALON_ENDPOINTS" in bad["message"]
    assert seen == []
    await eve.close()
    await admin.close()


async def test_a_member_cannot_override_or_take_over_someone_elses_agent(
        salon: Running, platform: Platform, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent = f"{name}-butler"
    await admin.ok({"type": "create_agent", "definition": {
        "name": agent, "persona": "discreet", "script": ["at your service"],
        "tools": ["calculator"]}})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": agent})
    eve = await member(salon, admin, f"{name}-eve")
    await eve.ok({"type": "join", "room": name})
    frames = [
        {"type": "override", "room": name, "agent": agent,
         "changes": {"permissions": ["code"], "tools": ["run_python"]}},
        {"type": "override", "room": name, "agent": agent, "changes": {"model": "other"}},
        {"type": "redefine_agent", "definition": {"name": agent, "persona": "mine now"}},
        {"type": "command", "agent": agent, "command": "stop"},
        {"type": "export", "kind": "agent", "name": agent},
        {"type": "memories", "agent": agent},
    ]
    for frame in frames:
        reply = await eve.request(frame)
        assert reply["code"] == "forbidden", (frame, reply)
        assert "owner" in reply["message"]
    # Others see the public face only: no tools, scripts, endpoints or prompt.
    shown = await eve.ok({"type": "show_agent", "agent": agent})
    assert shown["definition"] == {k: v for k, v in shown["definition"].items()
                                   if k in ("name", "template", "role", "goal", "persona",
                                            "personality", "interests", "expertise",
                                            "joinable")}
    assert "system_prompt" not in shown and "tools" not in shown["definition"]
    state = await eve.ok({"type": "agent_state", "agent": agent})
    assert "script" not in state["definition"]
    listed = await eve.ok({"type": "list_agents"})
    assert "model" not in next(a for a in listed["agents"] if a["name"] == agent)
    # A fork is the forker's room, but the agent in it is still the owner's.
    fork = (await eve.ok({"type": "fork", "room": name, "at": 3}))["room"]
    reply = await eve.request({"type": "override", "room": fork, "agent": agent,
                               "changes": {"persona": "mine"}})
    assert reply["code"] == "forbidden"
    # Nor may a member add someone else's agent to their own room, until it is joinable.
    await eve.ok({"type": "create_room", "name": f"{name}-eve-room"})
    reply = await eve.request({"type": "add_agent", "room": f"{name}-eve-room", "agent": agent})
    assert reply["code"] == "forbidden"
    await admin.ok({"type": "redefine_agent", "definition": {
        "name": agent, "persona": "discreet", "script": ["at your service"],
        "tools": ["calculator"], "joinable": True}})
    await eve.ok({"type": "add_agent", "room": f"{name}-eve-room", "agent": agent})
    assert not [e for e in platform.store.events(room_id(name))
                if type(e).__name__ == "AgentOverridden"]
    assert [e.definition.get("persona") for e in recorded(platform, agent, "AgentRedefined")] \
        == ["discreet"]
    await eve.close()
    await admin.close()


async def test_a_members_message_cannot_make_an_admins_agent_run_code(
        salon: Running, platform: Platform, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent = f"{name}-coder"
    step = tool_step("run_python", {"code": "print(6 * 7)"}, "ran: {result}")
    definition = {"name": agent, "tools": ["run_python"], "permissions": ["code"],
                  "script": [step]}
    await admin.ok({"type": "create_agent", "definition": definition})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": agent})
    await admin.ok({"type": "join", "room": name, "since": 0})
    eve = await member(salon, admin, f"{name}-eve")
    await eve.ok({"type": "join", "room": name})
    await eve.ok({"type": "say", "room": name, "text": f"@{agent} run my code"})
    await admin.wait_for(lambda c: any(m["author_id"] == agent for m in c.messages(name)),
                         "the agent's answer")
    [executed] = recorded(platform, agent, "ToolExecuted")
    assert executed.status == "refused", executed.result
    assert f"{name}-eve" in executed.result and "tools_for_everyone" in executed.result

    # The owner may mark the tool safe for everyone in this room: then it is not refused.
    await admin.ok({"type": "redefine_agent", "definition": {
        **definition, "tools_for_everyone": {name: ["run_python"]}}})
    await eve.ok({"type": "say", "room": name, "text": f"@{agent} again please"})
    await admin.wait_for(lambda c: len([m for m in c.messages(name)
                                        if m["author_id"] == agent]) == 2, "a second answer")
    later = recorded(platform, agent, "ToolExecuted")[1]
    assert later.status != "refused", later.result
    await eve.close()
    await admin.close()


async def test_knowledge_collections_are_read_by_their_readers_only(
        salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    collection = f"{name}-payroll"
    await admin.ok({"type": "add_document", "collection": collection, "title": "salaries",
                    "text": "the director earns a great deal"})
    eve = await member(salon, admin, f"{name}-eve")
    for frame in ({"type": "knowledge", "collection": collection},
                  {"type": "knowledge", "collection": collection, "query": "director"}):
        reply = await eve.request(frame)
        assert reply["code"] == "forbidden" and "share" in reply["message"]
    # An agent of the member's searching it on their behalf is refused too.
    agent = f"{name}-snoop"
    await eve.ok({"type": "create_agent", "definition": {
        "name": agent, "tools": ["search_knowledge_base"], "knowledge": collection,
        "script": [tool_step("search_knowledge_base", {"query": "director"}, "{result}")]}})
    await eve.ok({"type": "create_room", "name": name})
    await eve.ok({"type": "add_agent", "room": name, "agent": agent})
    await eve.ok({"type": "join", "room": name, "since": 0})
    await eve.ok({"type": "say", "room": name, "text": f"@{agent} look"})
    await eve.wait_for(lambda c: any(m["author_id"] == agent for m in c.messages(name)),
                       "the agent's answer")
    [answer] = [m["text"] for m in eve.messages(name) if m["author_id"] == agent]
    assert "great deal" not in answer and "not shared" in answer
    await admin.ok({"type": "share_knowledge", "collection": collection,
                    "readers": [f"{name}-eve"]})
    found = await eve.ok({"type": "knowledge", "collection": collection, "query": "director"})
    assert "great deal" in found["passages"][0]["chunk"]
    await eve.close()
    await admin.close()


async def test_one_namespace_and_direct_rooms_nobody_can_plant(
        salon: Running, platform: Platform, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    eve = await member(salon, admin, f"{name}-eve")
    await member(salon, admin, f"{name}-bob")
    taken = await eve.request({"type": "create_agent", "definition": {"name": f"{name}-bob"}})
    assert taken["code"] == "conflict" and "person" in taken["message"]
    await eve.ok({"type": "create_agent", "definition": {"name": f"{name}-eves-bot"}})
    clash = await admin.request({"type": "create_token", "user": f"{name}-eves-bot"})
    assert clash["code"] == "conflict" and "agent" in clash["message"]

    dm = direct_room_name(("agent", f"{name}-helper"), ("human", f"{name}-bob"))
    for frame in ({"type": "create_room", "name": dm, "visibility": "private"},
                  {"type": "create_room", "name": "dm-anything"},
                  {"type": "fork", "room": f"{name}-x", "at": 1, "name": "dm-mine"}):
        reply = await eve.request(frame)
        assert reply["code"] in ("forbidden", "not_found"), reply
        if frame["type"] == "create_room":
            assert reply["code"] == "forbidden" and "reserved" in reply["message"]
    assert not platform.store.exists(room_id(dm))

    # A direct message from an agent lands in the room of its two members, closed to others.
    helper = f"{name}-helper"
    await admin.ok({"type": "create_agent", "definition": {
        "name": helper, "tools": ["send_direct_message"],
        "script": [tool_step("send_direct_message", {"to": f"{name}-bob", "text": "psst"},
                             "sent")]}})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": helper})
    await admin.ok({"type": "join", "room": name, "since": 0})
    await admin.ok({"type": "say", "room": name, "text": f"@{helper} tell bob"})
    await admin.wait_for(lambda c: any(m["author_id"] == helper for m in c.messages(name)),
                         "the helper's answer")
    assert platform.store.exists(room_id(dm))
    for frame in ({"type": "join", "room": dm}, {"type": "history", "room": dm},
                  {"type": "say", "room": dm, "text": "me too"}):
        for who in (eve, admin):
            reply = await who.request(frame)
            assert reply["code"] == "forbidden", (frame, reply)
    await eve.close()
    await admin.close()


async def test_a_revoked_token_is_cut_off_at_once(salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    token = (await admin.ok({"type": "create_token", "user": f"{name}-eve"}))["token"]
    eve = await Client.open(salon.ws_url, token)
    await eve.ok({"type": "whoami"})
    revoked = await admin.ok({"type": "revoke_token", "user": f"{name}-eve"})
    assert revoked == {"user": f"{name}-eve", "revoked": 1, "closed": 1}
    await asyncio.wait_for(eve.ws.wait_closed(), 10)
    assert eve.ws.close_code == 4401
    again = await Client.open(salon.ws_url)
    reply = await again.request({"type": "hello", "token": token})
    assert reply["code"] == "unauthenticated"
    await asyncio.wait_for(again.ws.wait_closed(), 10)
    assert again.ws.close_code == 4401
    # Tokens can expire; an expired one is refused like a revoked one.
    short = await admin.ok({"type": "create_token", "user": f"{name}-eve", "days": 1e-9})
    late = await Client.open(salon.ws_url)
    reply = await late.request({"type": "hello", "token": short["token"]})
    assert reply["code"] == "unauthenticated" and "expired" in reply["message"]
    # A connection signed in with an expiring token ends when the token does.
    brief = await admin.ok({"type": "create_token", "user": f"{name}-eve", "days": 2 / 86_400})
    eve = await Client.open(salon.ws_url, brief["token"])
    await eve.ok({"type": "whoami"})
    await asyncio.wait_for(eve.ws.wait_closed(), 15)
    assert eve.ws.close_code == 4401 and eve.ws.close_reason == "token expired"
    await admin.close()


async def test_a_revocation_reaches_every_gateway_of_the_installation(
        platform: Platform, salon: Running, name: str) -> None:
    # A second gateway on the same installation (same PostgreSQL, Valkey and Ray).
    second = Gateway(salon.settings, platform.store,
                     Accounts(platform.store, salon.settings.token_days))
    port = await second.start(salon.settings.host, 0)
    try:
        admin = await Client.open(salon.ws_url, salon.admin_token)
        token = (await admin.ok({"type": "create_token", "user": f"{name}-eve"}))["token"]
        eve = await Client.open(f"ws://{salon.settings.host}:{port}/v1/ws", token)
        await eve.ok({"type": "whoami"})
        revoked = await admin.ok({"type": "revoke_token", "user": f"{name}-eve"})
        assert revoked["closed"] == 0, "eve is connected to the other gateway only"
        await asyncio.wait_for(eve.ws.wait_closed(), 10)
        assert eve.ws.close_code == 4401
        await admin.close()
    finally:
        await second.stop()


async def test_the_connection_edge_refuses_without_stack_traces(
        salon: Running, caplog: pytest.LogCaptureFixture) -> None:
    # Anything but hello first: refused and closed at once.
    async with connect(salon.ws_url) as ws:
        await ws.send(json.dumps({"type": "say", "room": "lobby", "text": "hi", "id": 1}))
        reply = json.loads(await ws.recv())
        assert reply["code"] == "unauthenticated"
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 4401
    client = await Client.open(salon.ws_url, salon.admin_token)
    for frame in _deep_frames():
        await client.ws.send(frame)
    await client.wait_for(lambda c: len(c.unmatched) >= 2, "two errors")
    replies = [(f.get("code"), f.get("message")) for f in client.unmatched[:2]]
    assert replies == [("invalid", "a frame may nest at most 32 levels deep")] * 2, replies
    assert (await client.ok({"type": "whoami"}))["role"] == "admin"
    traces = [r.getMessage()[:200] for r in caplog.records
              if r.exc_info and r.name.startswith(("gateway", "websockets.server"))]
    assert not traces, traces
    await client.close()


def _deep_frames() -> list[str]:
    return ['{"type":"whoami","x":' + "[" * 100_000 + "]" * 100_000 + "}",
            '{"type":"create_agent","definition":' + '{"a":' * 200 + "1" + "}" * 201]


def test_metrics_and_admin_pages_need_a_token(salon: Running) -> None:
    for path in ("metrics", "admin/audit.json", "admin/threads"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{salon.http_url}{path}", timeout=30)
        assert refused.value.code == 401, path
    request = urllib.request.Request(f"{salon.http_url}metrics",
                                     headers={"Authorization": f"Bearer {salon.admin_token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


async def test_one_calculator_call_cannot_freeze_an_agent(
        salon: Running, platform: Platform, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    agent = f"{name}-calc"
    await admin.ok({"type": "create_agent", "definition": {
        "name": agent, "tools": ["calculator"],
        "script": [tool_step("calculator", {"expression": "round(1, -10**8)"}, "{result}"),
                   "still here"]}})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": agent})
    await admin.ok({"type": "join", "room": name, "since": 0})
    await admin.ok({"type": "say", "room": name, "text": f"@{agent} compute"})
    await admin.wait_for(lambda c: any(m["author_id"] == agent for m in c.messages(name)),
                         "the calculator's answer")
    [executed] = recorded(platform, agent, "ToolExecuted")
    assert executed.status in ("error", "timeout"), executed.result
    # The agent still answers, and so does the admin's connection.
    assert (await admin.ok({"type": "show_agent", "agent": agent}))["status"] == "active"
    await admin.ok({"type": "say", "room": name, "text": f"@{agent} and now?"})
    await admin.wait_for(lambda c: any(m["text"] == "still here" for m in c.messages(name)),
                         "a second answer")
    await admin.close()


async def test_a_members_turns_stop_at_the_daily_spend_limit(
        salon: Running, platform: Platform, name: str) -> None:
    """Each call of ``scripted-priced-2`` costs $2; the default limit is $5 a day per member."""
    admin = await Client.open(salon.ws_url, salon.admin_token)
    pricey = f"{name}-pricey"
    await admin.ok({"type": "create_agent", "definition": {
        "name": pricey, "model": "scripted-priced-2", "script": ["paid answer {text}"]}})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": pricey})
    ann = await member(salon, admin, f"{name}-ann")
    await ann.ok({"type": "join", "room": name, "since": 0})

    def answers(c: Client) -> int:
        return sum(1 for m in c.messages(name) if m["author_id"] == pricey)

    def failures(c: Client) -> list[dict[str, Any]]:
        return [e for e in c.ephemerals if e["kind"] == "turn_failed"]

    for n in range(1, 4):
        await ann.ok({"type": "say", "room": name, "text": f"@{pricey} question {n}"})
        await ann.wait_for(lambda c, n=n: answers(c) == n, f"paid answer {n}")
    # $6 spent: the fourth turn ann causes is refused, and nothing is posted for it.
    await ann.ok({"type": "say", "room": name, "text": f"@{pricey} question 4"})
    await ann.wait_for(lambda c: failures(c), "the refused turn")
    [failed] = failures(ann)
    assert "daily limit" in str(failed), failed
    assert answers(ann) == 3
    # The admin is not bounded: the same agent still answers the admin.
    await admin.ok({"type": "join", "room": name, "since": 0})
    await admin.ok({"type": "say", "room": name, "text": f"@{pricey} admin asks"})
    await admin.wait_for(lambda c: answers(c) == 4, "the admin's answer")
    assert len(recorded(platform, pricey, "TurnFailed")) == 1
    await ann.close()
    await admin.close()


def test_the_cli_grants_and_revokes(salon: Running, name: str) -> None:
    from click.testing import CliRunner

    from salon.cli import main

    env = {"SALON_URL": salon.ws_url, "SALON_TOKEN": salon.admin_token}
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", f"{name}-eve", "--days", "30"], env=env)
    assert made.exit_code == 0, made.output
    granted = runner.invoke(main, ["grant", "--user", f"{name}-eve", "--permission", "code"],
                            env=env)
    assert granted.exit_code == 0 and "permissions: code" in granted.output, granted.output
    both = runner.invoke(main, ["grant", "--permission", "code"], env=env)
    assert both.exit_code != 0 and "--user" in both.output
    revoked = runner.invoke(main, ["token", "revoke", f"{name}-eve"], env=env)
    assert revoked.exit_code == 0 and "revoked 1 token(s)" in revoked.output, revoked.output
    as_eve = runner.invoke(main, ["rooms", "list"],
                           env={**env, "SALON_TOKEN": made.output.strip()})
    assert as_eve.exit_code != 0 and "not valid" in as_eve.output


def test_the_cli_adds_members_and_shares_collections(salon: Running, name: str) -> None:
    from click.testing import CliRunner

    from salon.cli import main

    env = {"SALON_URL": salon.ws_url, "SALON_TOKEN": salon.admin_token}
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", f"{name}-bea"], env=env)
    assert made.exit_code == 0, made.output
    as_bea = {**env, "SALON_TOKEN": made.output.strip()}
    room = f"{name}-inner"
    assert runner.invoke(main, ["rooms", "create", room, "--private"], env=env).exit_code == 0
    listed = runner.invoke(main, ["rooms", "list"], env=as_bea)
    assert listed.exit_code == 0 and room not in listed.output
    added = runner.invoke(main, ["rooms", "add-member", room, f"{name}-bea"], env=env)
    assert added.exit_code == 0 and f"added {name}-bea to {room}" in added.output, added.output
    assert room in runner.invoke(main, ["rooms", "list"], env=as_bea).output
    # bea owns nothing here: she cannot add others to the room.
    refused = runner.invoke(main, ["rooms", "add-member", room, "admin"], env=as_bea)
    assert refused.exit_code != 0 and "only the owner" in refused.output, refused.output

    docs = f"{name}-docs"
    note = runner.invoke(main, ["knowledge", "add", docs, "-", "--title", "tea"],
                         input="oolong is a partly oxidised tea", env=env)
    assert note.exit_code == 0, note.output
    before = runner.invoke(main, ["knowledge", "list", docs], env=as_bea)
    assert before.exit_code != 0 and "not shared" in before.output, before.output
    shared = runner.invoke(main, ["knowledge", "share", docs, f"{name}-bea"], env=env)
    assert shared.exit_code == 0 and f"readers {name}-bea" in shared.output, shared.output
    after = runner.invoke(main, ["knowledge", "list", docs], env=as_bea)
    assert after.exit_code == 0 and "tea" in after.output, after.output
    by_bea = runner.invoke(main, ["knowledge", "share", docs, "*"], env=as_bea)
    assert by_bea.exit_code != 0 and "only an admin" in by_bea.output, by_bea.output
