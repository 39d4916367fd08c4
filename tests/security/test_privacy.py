"""Taking words back, through the protocol: redaction, erasure of a person, what is at rest.

Every check reads what an attacker with the database or Valkey would read: all tables of all
schemas (as text, and bytea as hex) and every Valkey key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import redis
from click.testing import CliRunner

from projections import audit, threads
from projections.audit import Audit
from projections.runner import Runner
from projections.service import ProjectionSettings
from projections.threads import Threads
from projections.verification import verify
from projections.views import Reader
from salon.cli import main
from salon.platform import Platform, Running
from tests.clients import Client

DEADLINE = 60.0


async def _people(salon: Running, name: str, *who: str) -> dict[str, Client]:
    admin = await Client.open(salon.ws_url, salon.admin_token)
    clients = {"admin": admin}
    for person in who:
        token = (await admin.ok({"type": "create_token", "user": f"{name}-{person}"}))["token"]
        clients[person] = await Client.open(salon.ws_url, token)
    return clients


def _found_in_tables(database_url: str, needle: str, schemas: list[str] | None = None,
                     ) -> list[str]:
    """Tables (schema.table) whose rows hold ``needle`` as text or as bytes."""
    hexed = needle.encode().hex()
    found = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', "
            "'information_schema')").fetchall()
        for schema, table in tables:
            if schemas is not None and schema not in schemas:
                continue
            hit = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" AS t WHERE t::text LIKE %s '
                "OR t::text LIKE %s", (f"%{needle}%", f"%{hexed}%")).fetchone()
            if hit and hit[0]:
                found.append(f"{schema}.{table}")
    return found


def _found_in_valkey(redis_url: str, needle: str) -> list[str]:
    """Valkey keys whose value holds ``needle``."""
    client = redis.Redis.from_url(redis_url)
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [*client.hgetall(key).values()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            values = list(client.smembers(key)) if kind == "set" else \
                [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [v for _, fields in client.xrange(key) for v in fields.values()]
        else:
            values = []
        if any(needle.encode() in bytes(v) for v in values) or needle.encode() in key:
            found.append(key.decode(errors="replace"))
    return found


def _live_threads(salon: Running) -> Reader:
    assert salon.settings.database_url
    return Reader(salon.settings.database_url, ProjectionSettings().schema("threads"))


async def _until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(check)
        if seen:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def _memories(client: Client, agent: str, query: str) -> list[dict[str, Any]]:
    found = await client.ok({"type": "memories", "agent": agent, "limit": 200})
    searched = await client.ok({"type": "memories", "agent": agent, "query": query,
                                "limit": 50})
    return [*found["memories"], *searched["memories"]]


async def _remembers(client: Client, agent: str, needle: str) -> bool:
    return needle in str(await _memories(client, agent, needle))


async def _forgot(client: Client, agent: str, needle: str) -> bool:
    return needle not in str(await _memories(client, agent, needle))


async def _until_async(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what}")


async def test_a_redacted_message_is_gone_from_every_reader_and_rebuild(
        salon: Running, platform: Platform, name: str) -> None:
    people = await _people(salon, name, "ann", "bob")
    ann, bob = people["ann"], people["bob"]
    room = f"{name}-room"
    canary = f"canary{name.replace('-', '')}tangerine"
    agent = f"{name}-keeper"
    await ann.ok({"type": "create_room", "name": room})
    await ann.ok({"type": "create_agent", "definition": {"name": agent}})
    await ann.ok({"type": "add_agent", "room": room, "agent": agent})
    await bob.ok({"type": "join", "room": room})
    said = await ann.ok({"type": "say", "room": room, "text": f"my door code is {canary}"})
    await bob.ok({"type": "say", "room": room, "text": "thanks, noted"})
    await ann.ok({"type": "say", "room": room, "text": "and the spare key is under the pot"})
    live = _live_threads(salon)
    try:
        # Three messages make a title, from the first ones: it quotes the canary.
        titled = await _until(lambda: threads.thread(live, room)["title"], "a title")
        assert canary in titled
    finally:
        live.close()
    kept_fork = (await bob.ok({"type": "fork", "room": room, "at": said["position"],
                               "name": f"{room}-kept", "keep_redacted": True}))["room"]
    plain_fork = (await bob.ok({"type": "fork", "room": room, "at": said["position"],
                                "name": f"{room}-plain"}))["room"]

    await _until_async(lambda: _remembers(ann, agent, canary), "the agent remembers it")
    refused = await bob.request({"type": "redact", "room": room,
                                 "message_id": said["message_id"]})
    assert refused["code"] == "forbidden" and "author" in refused["message"]
    too_long = await ann.request({"type": "redact", "room": room,
                                  "message_id": said["message_id"], "reason": "x" * 501})
    assert too_long["code"] == "invalid"
    missing = await ann.request({"type": "redact", "room": room, "message_id": "nope"})
    assert missing["code"] == "not_found"

    done = await ann.ok({"type": "redact", "room": room, "message_id": said["message_id"],
                         "reason": "shared by mistake"})
    assert done["message_position"] == said["position"] and done["forks"] == [plain_fork]
    again = await ann.request({"type": "redact", "room": room,
                               "message_id": said["message_id"]})
    assert again["code"] == "conflict"
    await bob.wait_for(lambda c: any(f["room"] == room and f["event"]["kind"] ==
                                      "message_redacted" for f in c.events), "the redaction")

    history = (await bob.ok({"type": "history", "room": room}))["events"]
    posted = [e["event"] for e in history if e["event"]["kind"] == "message_posted"]
    assert posted[0]["text"] == "" and posted[0]["redacted"] is True
    assert posted[1]["text"] == "thanks, noted"
    redaction = [e["event"] for e in history if e["event"]["kind"] == "message_redacted"]
    assert redaction[0]["by"] == f"{name}-ann" and redaction[0]["message_id"] == \
        said["message_id"]
    replay = await bob.ok({"type": "replay", "room": room, "at": said["position"]})
    assert replay["transcript"][-1]["text"] == "" and replay["transcript"][-1]["redacted"]
    exported = await ann.ok({"type": "export", "kind": "room", "name": room})
    assert canary not in str(exported)
    plain = (await bob.ok({"type": "history", "room": plain_fork}))["events"]
    assert canary not in str(plain)
    kept = (await bob.ok({"type": "history", "room": kept_fork}))["events"]
    assert canary in str(kept), "a fork whose owner kept copies keeps its copy"
    later = (await bob.ok({"type": "fork", "room": room, "at": said["position"],
                           "name": f"{room}-later"}))["room"]
    assert canary not in str((await bob.ok({"type": "history", "room": later}))["events"])

    await _until_async(lambda: _forgot(ann, agent, canary), "the agent's memory lets it go")
    # The live threads view, its search, and a rebuild of every view from 0.
    live = _live_threads(salon)
    try:
        await _until(lambda: threads.messages(live, room)[:1] and
                     threads.messages(live, room)[0]["redacted"], "the threads view redacts")
        assert threads.search(live, canary, room=room) == []
        # The title that quoted it is dropped and made again from what is left.
        retitled = await _until(lambda: threads.thread(live, room)["title"], "a new title")
        assert canary not in retitled and canary not in str(threads.thread(live, room))
    finally:
        live.close()
    database_url = salon.settings.database_url
    assert database_url
    for projection in (Threads, Audit):
        schema = f"t_{name.replace('-', '_')}_{projection.name}"
        runner = Runner(projection, database_url, schema).start()
        reader = Reader(database_url, schema)
        try:
            runner.wait_for(timeout=120)
            if projection is Threads:
                # (The fork whose owner kept its copies holds the words, by that choice.)
                assert threads.search(reader, canary, room=room) == []
                assert threads.search(reader, canary, room=plain_fork) == []
                assert canary not in str(threads.messages(reader, room))
            else:
                assert _found_in_tables(database_url, canary, [schema]) == []
                assert verify(reader).ok
                rows = audit.entries(reader, room=room, limit=100,
                                     opener=audit.store_opener(platform.store))
                first = [r for r in rows if r["action"] == "message_posted"][0]
                assert first["details"]["text"] == "" and first["details"]["redacted"]
                taken = [r for r in rows if r["action"] == "message_redacted"][0]
                assert taken["actor"] == f"user:{name}-ann"
        finally:
            runner.stop()
            reader.close()
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for client in people.values():
        await client.close()


async def test_what_is_said_is_never_plaintext_in_the_event_store(
        salon: Running, name: str) -> None:
    people = await _people(salon, name, "ann")
    canary = f"canary{name.replace('-', '')}quince"
    room = f"{name}-room"
    await people["ann"].ok({"type": "create_room", "name": room})
    await people["ann"].ok({"type": "say", "room": room, "text": f"I live at {canary}"})
    await people["ann"].ok({"type": "feedback", "room": room, "rating": 1,
                            "message_id": (await people["ann"].ok(
                                {"type": "say", "room": room, "text": "more"}))["message_id"],
                            "comment": f"again {canary}"})
    assert salon.settings.database_url
    assert _found_in_tables(salon.settings.database_url, canary, ["public"]) == []
    for client in people.values():
        await client.close()


async def test_forgetting_a_person_leaves_their_words_nowhere(
        salon: Running, platform: Platform, name: str) -> None:
    people = await _people(salon, name, "carol", "dan")
    carol, dan, admin = people["carol"], people["dan"], people["admin"]
    room = f"{name}-room"
    canary = f"canary{name.replace('-', '')}persimmon"
    agent = f"{name}-listener"
    await carol.ok({"type": "create_room", "name": room})
    await dan.ok({"type": "join", "room": room})
    await dan.ok({"type": "create_agent", "definition": {"name": agent}})
    await dan.ok({"type": "add_agent", "room": room, "agent": agent})
    for n in range(4):
        await carol.ok({"type": "say", "room": room, "text": f"note {n}: {canary} matters"})
        await dan.ok({"type": "say", "room": room, "text": f"dan's reply number {n}"})
    live = _live_threads(salon)
    try:
        await _until(lambda: threads.search(live, canary, room=room), "the view has her words")
    finally:
        live.close()
    await _until_async(lambda: _remembers(dan, agent, canary), "the agent remembers her")

    refused = await dan.request({"type": "forget_user", "user": f"{name}-carol"})
    assert refused["code"] == "forbidden"
    unconfirmed = await carol.request({"type": "forget_me", "confirm": "someone"})
    assert unconfirmed["code"] == "invalid"
    done = await carol.ok({"type": "forget_me", "confirm": f"{name}-carol"})
    assert done["tokens_revoked"] == 1 and done["rooms"] == 1
    await carol.ws.wait_closed()

    history = (await dan.ok({"type": "history", "room": room}))["events"]
    posted = [e["event"] for e in history if e["event"]["kind"] == "message_posted"]
    assert [p["text"] for p in posted if p["author_id"] == f"{name}-carol"] == [""] * 4
    assert all(p.get("erased") for p in posted if p["author_id"] == f"{name}-carol")
    assert [p["text"] for p in posted if p["author_id"] == f"{name}-dan"] == \
        [f"dan's reply number {n}" for n in range(4)]
    replay = await dan.ok({"type": "replay", "room": room, "at": history[-1]["position"]})
    assert canary not in str(replay)
    assert canary not in str(await admin.ok({"type": "export", "kind": "room", "name": room}))

    live = _live_threads(salon)
    try:
        await _until(lambda: not threads.search(live, canary), "the threads view purges")
    finally:
        live.close()
    assert salon.settings.database_url and salon.settings.redis_url
    await _until_async(lambda: _forgot(dan, agent, canary), "the agent's memory lets her go")
    await _until(lambda: _found_in_tables(salon.settings.database_url, canary) == [],
                 "no table holds her words")
    assert _found_in_valkey(salon.settings.redis_url, canary) == []
    reader = Reader(salon.settings.database_url, ProjectionSettings().schema("audit"))
    try:
        assert verify(reader).ok
    finally:
        reader.close()
    for client in (dan, admin):
        await client.close()


async def test_the_cli_redacts_forgets_and_rotates(salon: Running, name: str) -> None:
    people = await _people(salon, name, "erin", "finn")
    erin, admin = people["erin"], people["admin"]
    room = f"{name}-room"
    await erin.ok({"type": "create_room", "name": room})
    said = await erin.ok({"type": "say", "room": room, "text": "a slip of the tongue"})
    finn_token = (await admin.ok({"type": "create_token", "user": f"{name}-finn"}))["token"]
    runner = CliRunner()

    def run(token: str, *args: str, stdin: str | None = None) -> Any:
        return runner.invoke(main, list(args), input=stdin,
                             env={"SALON_URL": salon.ws_url, "SALON_TOKEN": token})

    refused = await asyncio.to_thread(run, finn_token, "redact", room, said["message_id"])
    assert refused.exit_code == 4 and "author" in refused.output
    done = await asyncio.to_thread(run, salon.admin_token, "redact", room, said["message_id"],
                                   "--reason", "asked to")
    assert done.exit_code == 0 and f"position {said['position']}" in done.output, done.output
    member_rotates = await asyncio.to_thread(run, finn_token, "keys", "rotate")
    assert member_rotates.exit_code == 4
    rotated = await asyncio.to_thread(run, salon.admin_token, "keys", "rotate")
    assert rotated.exit_code == 0 and "re-wrapped" in rotated.output, rotated.output
    history = (await erin.ok({"type": "history", "room": room}))["events"]
    assert any(e["event"]["kind"] == "message_redacted" for e in history), \
        "the room still reads after the rotation"
    wrong = await asyncio.to_thread(run, finn_token, "forget-me", stdin="someone-else\n")
    assert wrong.exit_code == 2, wrong.output
    gone = await asyncio.to_thread(run, finn_token, "forget-me", stdin=f"{name}-finn\n")
    assert gone.exit_code == 0 and f"forgot {name}-finn" in gone.output, gone.output
    again = await asyncio.to_thread(run, finn_token, "rooms", "list")
    assert again.exit_code == 8, "the forgotten person's token no longer works"
    not_admin = await asyncio.to_thread(run, finn_token, "users", "forget", f"{name}-erin")
    assert not_admin.exit_code == 8
    erased = await asyncio.to_thread(run, salon.admin_token, "users", "forget", f"{name}-erin")
    assert erased.exit_code == 0 and "1 room(s) purged" in erased.output, erased.output
    await admin.close()
