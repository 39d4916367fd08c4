"""Knowledge bases through protocol v1: admins add documents, agents search them by meaning."""

from __future__ import annotations

import json

from salon.platform import Running
from tests.clients import Client

MANUAL = ("The boiler in flat 3 is reset by holding the red button for ten seconds. "
          "Rent is due on the first working day of each month. "
          "Bins go out on Tuesday evenings; glass is collected every other Friday.")


async def test_documents_are_added_by_admins_and_found_by_an_agents_tool(
        salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    collection, agent = f"{name}-manual", f"{name}-concierge"
    added = await admin.ok({"type": "add_document", "collection": collection,
                            "title": "house manual", "text": MANUAL})
    assert added["chunks"] >= 1
    listed = await admin.ok({"type": "knowledge", "collection": collection})
    assert listed["documents"] == [{"title": "house manual", "chunks": added["chunks"]}]
    found = await admin.ok({"type": "knowledge", "collection": collection,
                            "query": "how do I restart the heating?", "k": 1})
    assert "red button" in found["passages"][0]["chunk"]

    member = await admin.ok({"type": "create_token", "user": f"{name}-tenant"})
    tenant = await Client.open(salon.ws_url, member["token"])
    refused = await tenant.request({"type": "add_document", "collection": collection,
                                    "title": "planted", "text": "nonsense"})
    assert refused["code"] == "forbidden"
    bad = await admin.request({"type": "add_document", "collection": "no spaces please",
                               "title": "x", "text": "y"})
    assert bad["code"] == "invalid" and "collection" in bad["message"]

    search = json.dumps({"tool": "search_knowledge_base",
                         "arguments": {"query": "heating reset", "k": 1}})
    await admin.ok({"type": "create_agent", "definition": {
        "name": agent, "tools": ["search_knowledge_base"], "knowledge": collection,
        "script": [json.dumps([search, "From the manual: {result}"])]}})
    await admin.ok({"type": "create_room", "name": name})
    await admin.ok({"type": "add_agent", "room": name, "agent": agent})
    await admin.ok({"type": "join", "room": name, "since": 0})
    await tenant.ok({"type": "join", "room": name, "since": 0})
    await tenant.ok({"type": "say", "room": name, "text": f"@{agent} the heating is off"})
    await admin.wait_for(lambda c: any(m["author_id"] == agent for m in c.messages(name))
                         or [e for e in c.ephemerals if e["kind"] == "turn_failed"],
                         "the concierge's answer")
    assert not [e for e in admin.ephemerals if e["kind"] == "turn_failed"], \
        [e.get("error") for e in admin.ephemerals]
    [answer] = [m["text"] for m in admin.messages(name) if m["author_id"] == agent]
    assert answer.startswith("From the manual: ") and "red button" in answer, answer
    await tenant.close()
    await admin.close()
