"""The room tools an agent uses in a real turn: the member list and direct messages, wired to
the real room actors (not to stand-in callables)."""

from __future__ import annotations

import json
from typing import Any

from domain.ids import agent_id
from domain.rooms import direct_room_name
from salon.platform import Platform, Running
from tests.clients import Client


def _executed(platform: Platform, agent: str) -> list[Any]:
    assert platform.store is not None
    return [e for e in platform.store.events(agent_id(agent))
            if type(e).__name__ == "ToolExecuted"]


async def test_an_agent_lists_the_room_and_writes_to_a_member_directly(
        salon: Running, platform: Platform, name: str) -> None:
    bot, room = f"{name}-bot", f"{name}-room"
    admin = await Client.open(salon.ws_url, salon.admin_token)
    token = (await admin.ok({"type": "create_token", "user": f"{name}-pia"}))["token"]
    pia = await Client.open(salon.ws_url, token)
    members = json.dumps({"tool": "list_room_members", "arguments": {}})
    direct = json.dumps({"tool": "send_direct_message",
                         "arguments": {"to": f"{name}-pia", "text": "just for you"}})
    nobody = json.dumps({"tool": "send_direct_message",
                         "arguments": {"to": f"{name}-nobody", "text": "lost"}})
    await admin.ok({"type": "create_agent", "definition": {
        "name": bot, "tools": ["list_room_members", "send_direct_message"],
        "script": [json.dumps([members, direct, nobody, "done: {result}"])]}})
    await pia.ok({"type": "create_room", "name": room})
    await admin.ok({"type": "join", "room": room})
    await admin.ok({"type": "add_agent", "room": room, "agent": bot})
    await pia.ok({"type": "join", "room": room, "since": 0})
    await pia.ok({"type": "say", "room": room, "text": f"@{bot} who is here?"})
    await pia.wait_for(lambda c: any(f["room"] == room and f["event"]["kind"] ==
                                     "message_posted" and f["event"]["author_id"] == bot
                                     for f in c.events), "the agent's reply")

    listed, sent, lost = _executed(platform, bot)
    assert (listed.tool, listed.status) == ("list_room_members", "ok")
    names = {m["name"]: m["kind"] for m in json.loads(listed.result)}
    assert names == {f"{name}-pia": "human", "admin": "human", bot: "agent"}
    assert (sent.tool, sent.status) == ("send_direct_message", "ok"), sent.result
    assert (lost.tool, lost.status) == ("send_direct_message", "error")
    assert "nobody called" in lost.result

    # The direct room is private to the two of them; pia reads the message there.
    dm = direct_room_name(("agent", bot), ("human", f"{name}-pia"))
    assert json.loads(sent.result)["room"] == dm
    history = (await pia.ok({"type": "history", "room": dm}))["events"]
    said = [e["event"] for e in history if e["event"]["kind"] == "message_posted"]
    assert [(m["author_id"], m["text"]) for m in said] == [(bot, "just for you")]
    token = (await admin.ok({"type": "create_token", "user": f"{name}-eve"}))["token"]
    eve = await Client.open(salon.ws_url, token)
    refused = await eve.request({"type": "history", "room": dm})
    assert refused["code"] == "forbidden"
    for client in (eve, pia, admin):
        await client.close()
