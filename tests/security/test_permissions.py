"""Every frame type × {admin, owner, member of the room, non-member, anonymous}: allowed or
refused exactly as SECURITY.md (and ``domain/policy.py``'s ``FRAME_RULES``) says.

A frame type with no row here fails the test, so a new frame cannot ship without its rule.
"allowed" means the reply is anything but ``forbidden``/``unauthenticated`` (a row may well be
answered ``not_found`` for a made-up id: the policy let it through); "refused" means
``forbidden``. Anonymous peers (no ``hello``) are refused every frame and disconnected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from domain.policy import FRAME_RULES
from gateway.protocol import TYPES
from salon.platform import Running
from tests.clients import Client

ROLES = ("admin", "owner", "member", "outsider")
EVERYONE = set(ROLES)
READERS = {"admin", "owner", "member"}
OWNERS = {"admin", "owner"}
ADMINS = {"admin"}

Frame = Callable[[dict[str, str]], dict[str, Any]]


def _definition(n: dict[str, str]) -> dict[str, Any]:
    return {"name": n["agent"], "persona": "redefined for the table", "script": ["ok"]}


# (frame type, frame built from the fixture's names, who is allowed). Order matters only at
# the end: the emergency stop runs last.
ROWS: list[tuple[str, Frame, set[str]]] = [
    ("hello", lambda n: {"type": "hello", "token": n["token"]}, EVERYONE),
    ("whoami", lambda n: {"type": "whoami"}, EVERYONE),
    ("list_rooms", lambda n: {"type": "list_rooms"}, EVERYONE),
    ("list_agents", lambda n: {"type": "list_agents"}, EVERYONE),
    ("create_room", lambda n: {"type": "create_room", "name": n["fresh"]}, EVERYONE),
    ("create_agent", lambda n: {"type": "create_agent", "definition": {"name": n["fresh"]}},
     EVERYONE),
    ("join", lambda n: {"type": "join", "room": n["room"]}, READERS),
    ("leave", lambda n: {"type": "leave", "room": n["room"]}, EVERYONE),
    ("say", lambda n: {"type": "say", "room": n["room"], "text": "hello"}, READERS),
    ("history", lambda n: {"type": "history", "room": n["room"]}, READERS),
    ("feedback", lambda n: {"type": "feedback", "room": n["room"], "message_id": "nope",
                            "rating": 1}, READERS),
    ("invoke", lambda n: {"type": "invoke", "room": n["room"], "agent": n["agent"]}, READERS),
    ("fork", lambda n: {"type": "fork", "room": n["room"], "at": 1, "name": n["fresh"]},
     READERS),
    ("replay", lambda n: {"type": "replay", "room": n["room"], "at": 1}, READERS),
    ("diff", lambda n: {"type": "diff", "room": n["room"], "other": n["room"]}, READERS),
    ("export", lambda n: {"type": "export", "kind": "room", "name": n["room"]}, READERS),
    ("export", lambda n: {"type": "export", "kind": "agent", "name": n["agent"]}, OWNERS),
    ("set_policy", lambda n: {"type": "set_policy", "room": n["room"], "mode": "free"}, OWNERS),
    ("add_member", lambda n: {"type": "add_member", "room": n["room"], "user": n["spare"]},
     OWNERS),
    ("add_agent", lambda n: {"type": "add_agent", "room": n["room"], "agent": n["agent"]},
     OWNERS),
    ("override", lambda n: {"type": "override", "room": n["room"], "agent": n["agent"],
                            "changes": {"persona": "what if"}}, OWNERS),
    ("redefine_agent", lambda n: {"type": "redefine_agent", "definition": _definition(n)},
     OWNERS),
    ("command", lambda n: {"type": "command", "agent": n["agent"], "command": "resume"},
     OWNERS),
    ("show_agent", lambda n: {"type": "show_agent", "agent": n["agent"]}, EVERYONE),
    ("agent_state", lambda n: {"type": "agent_state", "agent": n["agent"]}, EVERYONE),
    ("memories", lambda n: {"type": "memories", "agent": n["agent"]}, OWNERS),
    ("add_memory", lambda n: {"type": "add_memory", "agent": n["agent"], "content": "x"},
     OWNERS),
    ("delete_memory", lambda n: {"type": "delete_memory", "agent": n["agent"],
                                 "memory_id": "nope"}, OWNERS),
    ("memory_upkeep", lambda n: {"type": "memory_upkeep", "agent": n["agent"]}, OWNERS),
    ("facts", lambda n: {"type": "facts", "agent": n["agent"], "about": n["owner"]}, OWNERS),
    ("forget_fact", lambda n: {"type": "forget_fact", "agent": n["agent"], "fact_id": "nope",
                               "about": n["owner"]}, OWNERS),
    ("set_consent", lambda n: {"type": "set_consent", "memory": "on", "user": n["owner"]},
     {"owner"}),
    ("consent", lambda n: {"type": "consent", "user": n["owner"]}, OWNERS),
    ("my_memories", lambda n: {"type": "my_memories"}, EVERYONE),
    ("forget_memory", lambda n: {"type": "forget_memory", "agent": n["agent"],
                                 "memory_id": "nope"}, EVERYONE),
    ("knowledge", lambda n: {"type": "knowledge", "collection": n["collection"]}, OWNERS),
    ("add_document", lambda n: {"type": "add_document", "collection": n["collection"],
                                "title": "more", "text": "more text"}, ADMINS),
    ("share_knowledge", lambda n: {"type": "share_knowledge", "collection": n["collection"],
                                   "readers": [n["owner"]]}, ADMINS),
    ("create_token", lambda n: {"type": "create_token", "user": n["fresh"]}, ADMINS),
    ("revoke_token", lambda n: {"type": "revoke_token", "user": n["spare"]}, ADMINS),
    ("grant", lambda n: {"type": "grant", "user": n["spare"],
                         "capabilities": {"permissions": []}}, ADMINS),
    ("grants", lambda n: {"type": "grants", "user": n["owner"]}, OWNERS),
    ("rerun", lambda n: {"type": "rerun", "room": n["room"], "name": n["fresh"]}, ADMINS),
    ("import", lambda n: {"type": "import", "data": "not an export"}, ADMINS),
    ("set_guard", lambda n: {"type": "set_guard", "room": n["room"],
                             "policy": {"mode": "off"}}, OWNERS),
    ("set_agent_guard", lambda n: {"type": "set_agent_guard", "agent": n["agent"],
                                   "policy": None}, OWNERS),
    ("redact", lambda n: {"type": "redact", "room": n["room"], "message_id": "nope"},
     READERS),
    ("keep_redacted", lambda n: {"type": "keep_redacted", "room": n["room"]}, OWNERS),
    ("forget_me", lambda n: {"type": "forget_me", "confirm": "not-my-name"}, EVERYONE),
    ("forget_user", lambda n: {"type": "forget_user", "user": n["fresh"]}, ADMINS),
    ("rotate_keys", lambda n: {"type": "rotate_keys"}, ADMINS),
    ("emergency_stop", lambda n: {"type": "emergency_stop", "reason": "permission table"},
     ADMINS),
]


def test_every_frame_type_has_a_row_and_a_rule() -> None:
    assert {t for t, _, _ in ROWS} == set(TYPES), \
        f"frame types without a row: {sorted(set(TYPES) - {t for t, _, _ in ROWS})}"
    assert set(FRAME_RULES) == set(TYPES), \
        f"frame types without a rule: {sorted(set(TYPES) ^ set(FRAME_RULES))}"


def test_the_rules_say_what_the_rows_say() -> None:
    by_rule: dict[str, set[frozenset[str]]] = {}
    for kind, _, allowed in ROWS:
        if kind != "export":
            by_rule.setdefault(FRAME_RULES[kind], set()).add(frozenset(allowed))
    assert by_rule["admin"] == {frozenset(ADMINS)}
    assert by_rule["room_reader"] == {frozenset(READERS)}
    assert by_rule["agent_owner"] == {frozenset(OWNERS)}
    assert by_rule["user"] == {frozenset(EVERYONE)}
    assert by_rule["self"] == {frozenset({"owner"})}


async def test_each_frame_as_each_principal(salon: Running, name: str) -> None:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    names = {"room": f"{name}-room", "agent": f"{name}-agent", "owner": f"{name}-owner",
             "member": f"{name}-member", "outsider": f"{name}-outsider",
             "spare": f"{name}-spare", "collection": f"{name}-docs"}
    tokens = {"admin": salon.admin_token}
    for role in ("owner", "member", "outsider", "spare"):
        tokens[role] = (await admin.ok({"type": "create_token", "user": names[role]}))["token"]
    owner = await Client.open(salon.ws_url, tokens["owner"])
    await owner.ok({"type": "create_room", "name": names["room"], "visibility": "private"})
    await owner.ok({"type": "add_member", "room": names["room"], "user": names["member"]})
    await owner.ok({"type": "create_agent", "definition": {"name": names["agent"],
                                                           "script": ["hi"]}})
    await owner.ok({"type": "add_agent", "room": names["room"], "agent": names["agent"]})
    await admin.ok({"type": "add_document", "collection": names["collection"], "title": "t",
                    "text": "some words"})
    await admin.ok({"type": "share_knowledge", "collection": names["collection"],
                    "readers": [names["owner"]]})
    await owner.close()

    clients = {role: await Client.open(salon.ws_url, tokens[role]) for role in ROLES}
    wrong: list[str] = []
    for number, (kind, build, allowed) in enumerate(ROWS):
        for role in ROLES:
            fresh = f"{name}-{number}-{role}"
            frame = build({**names, "fresh": fresh, "token": tokens[role]})
            reply = await clients[role].request(frame)
            refused = reply["type"] == "error" and reply["code"] in ("forbidden",
                                                                     "unauthenticated")
            if refused == (role in allowed):
                wrong.append(f"{kind} as {role}: {json.dumps(reply)[:300]}")
        if kind != "hello":
            anonymous = await Client.open(salon.ws_url)
            reply = await anonymous.request(build({**names, "fresh": f"{name}-{number}-anon",
                                                   "token": "nobody.nothing"}))
            if reply.get("code") != "unauthenticated":
                wrong.append(f"{kind} as anonymous: {reply}")
            await anonymous.ws.wait_closed()
            if anonymous.ws.close_code != 4401:
                wrong.append(f"{kind} as anonymous: closed with {anonymous.ws.close_code}")
    for client in clients.values():
        await client.close()
    await admin.close()
    if wrong:
        pytest.fail("\n".join(wrong), pytrace=False)


@pytest.mark.parametrize("kind", sorted(FRAME_RULES))
def test_rules_are_known_kinds(kind: str) -> None:
    assert FRAME_RULES[kind] in {"anyone", "user", "room_reader", "room_owner", "agent_owner",
                                 "agent_user", "self_or_admin", "self", "knowledge_reader",
                                 "admin"}
