"""The audit log: what an agent saw, said, called and spent, and tampering found by position."""

from __future__ import annotations

import json

import psycopg

from domain.agents import Agent, AgentDefinition
from domain.ids import room_id
from domain.rooms import Room
from infra.store import EventStore
from projections import audit
from projections.audit import Audit, row_hash
from projections.runner import Runner
from projections.verification import verify
from projections.views import Reader


def _conversation(store: EventStore, name: str) -> tuple[str, str]:
    """A room where alice asks agent BOT, which calls a model and a tool and answers."""
    bot = f"{name}-bot"
    store.save(Agent.define(AgentDefinition(name=bot), owner_id="alice").collect_events())
    room = Room.create(name, "alice")
    room.join(bot, "agent")
    question, position = room.post("alice", f"@{bot} what grows in shade?")
    store.save(room.collect_events())
    agent = store.get(Agent, Agent.create_id({"name": bot}), bot)
    agent.start_turn("turn-1", name, {"kind": "mention", "position": position, "by": "alice"})
    agent.record_model_call("turn-1", "scripted", "scripted-echo",
                            {"positions": [position], "prompt_sha256": "ab" * 32},
                            {"text": "ferns", "tool_calls": [{"name": "lookup"}]},
                            input_tokens=120, output_tokens=7, cost_usd=0.0021,
                            latency_ms=35.0)
    agent.record_tool_call("turn-1", "lookup", {"q": "shade"}, "ferns, hostas", "ok", 3.5)
    store.save(agent.collect_events())
    room.post(bot, "Ferns and hostas grow in shade.", reply_to=question)
    store.save(room.collect_events())
    agent.complete_turn("turn-1", None)
    store.save(agent.collect_events())
    return bot, question


def test_audit_answers_what_an_agent_saw_said_called_and_spent(
        platform, database_url: str, schema: str, name: str) -> None:
    bot, _ = _conversation(platform.store, name)
    runner = Runner(Audit, database_url, schema).start()
    reader = Reader(database_url, schema)
    try:
        runner.wait_for()
        rows = audit.entries(reader, agent=bot, limit=1000,
                             opener=audit.store_opener(platform.store))
        held = audit.entries(reader, agent=bot, limit=1000)
        # The audit's own rows refer to people's words; its pages read them from the log.
        assert held[3]["details"]["output"] == {"$personal": "output"}
        assert held[5]["details"]["text"] == {"$personal": "text"}
        assert held[3]["details"]["cost_usd"] == 0.0021
        assert [r["action"] for r in rows] == [
            "agent_defined", "member_joined", "turn_started", "model_called", "tool_executed",
            "message_posted", "turn_completed"]
        called = rows[3]
        assert called["actor"] == f"agent:{bot}"
        assert called["target"] == "model:scripted/scripted-echo"
        assert (called["room"], called["user"]) == (name, "alice")
        assert called["details"]["output"]["text"] == "ferns"
        assert called["details"]["cost_usd"] == 0.0021
        assert rows[4]["target"] == "tool:lookup" and rows[4]["details"]["result"] == \
            "ferns, hostas"
        assert rows[5]["details"]["text"] == "Ferns and hostas grow in shade."

        assert [r["action"] for r in audit.entries(reader, room=name, user="alice",
                                                   limit=1000)] == \
            ["room_created", "member_joined", "message_posted", "turn_started",
             "model_called", "tool_executed", "turn_completed"]
        assert len(audit.entries(reader, room=name, action="message_posted")) == 2
        first = rows[0]["at"]
        assert audit.entries(reader, agent=bot, until=first) == []
        assert len(audit.entries(reader, agent=bot, since=first, limit=1000)) == 7

        lines = list(audit.export(reader, "jsonl", agent=bot))
        assert [json.loads(line)["position"] for line in lines] == \
            [r["position"] for r in rows]
        text = "".join(audit.export(reader, "csv", agent=bot))
        assert text.splitlines()[0].startswith("position,stream_id,version,at,actor,action")
        assert len(text.splitlines()) == 8
    finally:
        reader.close()
        runner.close()


def test_verify_names_the_position_of_a_modified_a_deleted_and_an_inserted_row(
        platform, database_url: str, schema: str, name: str) -> None:
    store: EventStore = platform.store
    room = Room.create(name, "alice")
    for n in range(6):
        room.post("alice", f"message {n} about tomatoes")
    store.save(room.collect_events())
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A hole in the log's positions, as a rolled-back insert leaves: room for a forgery.
        gap = conn.execute("SELECT nextval(pg_get_serial_sequence('salon_events', "
                           "'notification_id'))").fetchone()[0]
    room.post("alice", "the last word")
    store.save(room.collect_events())

    runner = Runner(Audit, database_url, schema).start()
    reader = Reader(database_url, schema)
    try:
        runner.wait_for()
        runner.stop()
        assert verify(reader).ok
        # The room's own stream (the platform's job worker may add its thread's title events).
        mine = [e for e in audit.entries(reader, room=name, limit=100)
                if e["stream_id"] == str(room_id(name))]
        assert len(mine) == 9 and mine[-2]["position"] < gap < mine[-1]["position"]
        modified, deleted = mine[3]["position"], mine[5]["position"]
        before = reader.rows("SELECT * FROM {s}.entries WHERE position = %s",
                             (mine[-2]["position"],))[0]
        forged = {**before, "position": gap, "actor": "user:mallory",
                  "details": json.dumps({"text": "mallory was granted admin"}),
                  "prev_hash": before["hash"]}
        forged["hash"] = row_hash(forged["prev_hash"], forged)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"UPDATE {schema}.entries SET actor = 'user:mallory' "
                         "WHERE position = %s", (modified,))
            conn.execute(f"DELETE FROM {schema}.entries WHERE position = %s", (deleted,))
            columns = list(forged)
            conn.execute(f"INSERT INTO {schema}.entries ({', '.join(columns)}) VALUES "
                         f"({', '.join(['%s'] * len(columns))})", [forged[c] for c in columns])

        found = verify(reader)
        assert not found.ok
        assert [(f.kind, f.position) for f in found.findings] == [
            ("modified", modified), ("deleted", deleted), ("inserted", gap)], found.findings
        assert all(str(f.position) in f.message for f in found.findings)
    finally:
        reader.close()
        runner.close()
