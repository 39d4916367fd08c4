"""The runner: a projection killed mid catch-up resumes to the rows of a from-scratch rebuild."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from domain.agents import Agent, AgentDefinition
from domain.rooms import Room
from infra.store import EventStore
from projections.audit import Audit
from projections.registry import PROJECTIONS
from projections.runner import Runner, progress
from projections.verification import verify
from projections.views import Reader

ROOT = Path(__file__).resolve().parents[2]
KILL_AT = 100  # the event (of those it reads) during which the projection's process dies
# A projection process that kills itself (SIGKILL: no cleanup, a transaction left open) in the
# middle of a batch, while catching up.
DOOMED = """
import os, signal, sys
from projections.registry import PROJECTIONS
from projections.runner import Runner
name, url, schema, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = PROJECTIONS[name]

class Doomed(base):
    name = base.name
    seen = 0

    def apply(self, event, tx):
        Doomed.seen += 1
        if Doomed.seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        super().apply(event, tx)

runner = Runner(Doomed, url, schema, batch_size=30).start()
runner.wait_for(timeout=120)
sys.exit(3)  # caught up without dying: the log was too short for this test
"""


def _history(store: EventStore, name: str) -> None:
    """A room of 150 messages with replies, an agent's 50 turns, all before the runner starts."""
    room = Room.create(name, "alice")
    room.join(f"{name}-bot", "agent")
    previous = None
    for n in range(150):
        previous, _ = room.post("alice" if n % 3 else f"{name}-bot", f"message {n} on ferns",
                                reply_to=previous if n % 2 else None)
    store.save(room.collect_events())
    agent = Agent.define(AgentDefinition(name=f"{name}-bot"))
    for n in range(50):
        agent.start_turn(f"t{n}", name, {"kind": "mention", "position": n + 3, "by": "alice"})
        agent.record_model_call(f"t{n}", "scripted", "echo", {}, {"text": f"{n}"}, 10 + n, n,
                                0.0001 * n, float(n))
        agent.record_tool_call(f"t{n}", "calculator", {"n": n}, str(n), "ok", 1.0)
        agent.complete_turn(f"t{n}", None)
    store.save(agent.collect_events())


class Near:
    """An embedding (a pgvector column), equal to another within float noise: the same text
    embedded in batches of other sizes may differ by a few units in the last place, so each
    component may differ by at most 1e-6. Every other column is compared byte for byte."""

    def __init__(self, text: str) -> None:
        self.values = [float(x) for x in text.strip("[]").split(",") if x]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Near) and len(self.values) == len(other.values) and all(
            abs(a - b) <= 1e-6 for a, b in zip(self.values, other.values, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Near({self.values[:3]}…)"


def _tables(database_url: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a view but its tracking table, in a fixed order (the
    order of its columns other than embeddings, which compare as ``Near``)."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        tables = [r["table_name"] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,)) if not r["table_name"].endswith("_tracking")]
        for table in sorted(tables):
            vectors = {r["column_name"] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND udt_name = 'vector'", (schema, table))}
            rows = conn.execute(f"SELECT * FROM {schema}.{table}").fetchall()
            dump[table] = sorted(
                (tuple(Near(str(v)) if k in vectors else str(v) for k, v in row.items())
                 for row in rows),
                key=lambda row: tuple(v for v in row if isinstance(v, str)))
    return dump


@pytest.mark.parametrize("projection", sorted(PROJECTIONS))
def test_a_projection_killed_mid_catch_up_resumes_to_the_rows_of_a_rebuild(
        platform, database_url: str, schema: str, name: str, projection: str) -> None:
    _history(platform.store, name)
    cls = PROJECTIONS[projection]
    head = progress(database_url, cls, schema).head

    doomed = subprocess.run([sys.executable, "-c", DOOMED, projection, database_url, schema,
                             str(KILL_AT)], cwd=ROOT, capture_output=True, timeout=180)
    assert doomed.returncode == -9, doomed.stderr.decode()[-3000:]
    killed = progress(database_url, cls, schema)
    assert 0 < killed.position < head, "it died mid catch-up, some batches committed"
    committed = _tables(database_url, schema)

    resumed = Runner(cls, database_url, schema, batch_size=30, until=head).start()
    fresh_schema = f"{schema}_fresh"
    fresh = Runner(cls, database_url, fresh_schema, until=head).start()
    try:
        resumed.wait_for(head, timeout=90)
        fresh.wait_for(head, timeout=90)
        resumed.stop()
        fresh.stop()
        assert resumed.position() == fresh.position()
        rebuilt = _tables(database_url, fresh_schema)
        assert _tables(database_url, schema) == rebuilt
        assert any(rebuilt.values()) and committed != rebuilt
        # Nothing applied twice: the resumed runner applied exactly what the dead one had not.
        assert resumed.applied + _applied_before(database_url, cls, killed.position) == \
            fresh.applied
        if cls is Audit:
            reader = Reader(database_url, schema)
            assert verify(reader).ok
            reader.close()
    finally:
        resumed.close()
        fresh.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {fresh_schema} CASCADE")


def _applied_before(database_url: str, cls: Any, position: int) -> int:
    """How many events ``cls`` reads at or below ``position``."""
    topics = list(cls.topics)
    with psycopg.connect(database_url) as conn:
        sql = "SELECT count(*) FROM salon_events WHERE notification_id <= %s"
        params: list[Any] = [position]
        if topics:
            sql += " AND topic = ANY(%s)"
            params.append(topics)
        return int(conn.execute(sql, params).fetchone()[0])


@pytest.mark.parametrize("projection", sorted(PROJECTIONS))
def test_two_runners_on_one_view_apply_each_event_once(
        platform, database_url: str, schema: str, name: str, projection: str) -> None:
    _history(platform.store, name)
    cls = PROJECTIONS[projection]
    head = progress(database_url, cls, schema).head
    fresh_schema = f"{schema}_fresh"
    # Two runners racing over one view (say, a host Ray restarted while the old one lingers).
    racing = [Runner(cls, database_url, schema, batch_size=size, until=head).start()
              for size in (7, 11)]
    fresh = Runner(cls, database_url, fresh_schema, until=head).start()
    try:
        for runner in [*racing, fresh]:
            runner.wait_for(head, timeout=90)
            runner.stop()
        assert sum(r.applied for r in racing) == fresh.applied
        assert _tables(database_url, schema) == _tables(database_url, fresh_schema)
    finally:
        for runner in [*racing, fresh]:
            runner.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {fresh_schema} CASCADE")
