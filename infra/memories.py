"""Long-term memories in pgvector: the tables of the memory projection and every query on them.

Rows are written only by the memory projection (``projections/memories.py``); everything here
reads them, always for one agent at a time: no query takes more than one agent, and the
functions people reach through the gateway check that the caller owns the agent first.
The values its reads return (``Memory``, ``Retrieved``) are plain data in ``memory/stored.py``,
re-exported here; the memory service uses this store through ``memory.ports.MemoryTables``.

Tables (in ``schema``, the memory view's ``salon_memories`` by default; tests use schemas of
their own):

- ``salon_memories``: ``(id, agent_id, kind, content, embedding vector(384), importance 0..1,
  importance_source, created_at, last_accessed_at, access_count, room, position, message_id,
  author, cites, source)`` with an HNSW index (cosine) on the embedding;
- ``salon_memory_facts``: facts per (agent, user);
- ``salon_memory_members``, ``salon_memory_rooms``, ``salon_memory_streams``: what the
  projection needs to know of rooms and memory streams as it follows the log;
- ``salon_memory_consent``: each person's consent to being remembered, by room;
- ``memories_tracking``: how far the projection got (the ``Projection`` framework's tracking
  table, updated in the same transaction as each batch).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from domain import policy
from domain.agents import Agent
from domain.errors import Invalid, NotFound
from domain.ids import agent_id, check_name
from domain.memories import KINDS, Weights
from domain.policy import Principal
from infra.embeddings import DIMENSIONS, parse_vector, vector_literal
from infra.store import EventStore
from memory.context import ContextMessage
from memory.facts import Fact
from memory.reflection import Statement
from memory.scoring import Candidate, rank
from memory.stored import Memory, Retrieved
from memory.upkeep import MemoryState

SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Candidates per part: the most relevant (HNSW), the most recent and the most important.
# An agent with fewer memories than this has every memory scored, exactly.
CANDIDATES = 200

# The memory projection's names, in one place: the projection (``projections/memories.py``)
# writes these tables and everything here reads them. Its view lives in a schema of its own,
# ``salon_memories`` (the projections' ``salon_`` prefix and its name), beside its tracking
# table ``memories_tracking``; tests use schemas of their own.
VIEW = "memories"
SCHEMA_NAME = f"salon_{VIEW}"
MEMORIES = "salon_memories"
FACTS = "salon_memory_facts"
MEMBERS = "salon_memory_members"
ROOMS = "salon_memory_rooms"
STREAMS = "salon_memory_streams"
CONSENT = "salon_memory_consent"
# ``{s}`` stands for the schema (as in every view's DDL, ``projections/views.py``).
STATEMENTS: tuple[str, ...] = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{MEMORIES} (
    id uuid PRIMARY KEY,
    agent_id text NOT NULL,
    kind text NOT NULL,
    content text NOT NULL,
    embedding vector({DIMENSIONS}) NOT NULL,
    importance real NOT NULL,
    importance_source text NOT NULL,
    created_at timestamptz NOT NULL,
    last_accessed_at timestamptz NOT NULL,
    access_count integer NOT NULL DEFAULT 0,
    room text,
    room_id uuid,
    position integer,
    message_id text,
    author text,
    cites uuid[] NOT NULL DEFAULT '{{}}',
    source jsonb NOT NULL DEFAULT '{{}}'
)""",
    f"CREATE INDEX IF NOT EXISTS salon_memories_recent ON {{s}}.{MEMORIES} "
    "(agent_id, last_accessed_at DESC)",
    f"CREATE INDEX IF NOT EXISTS salon_memories_important ON {{s}}.{MEMORIES} "
    "(agent_id, importance DESC)",
    f"CREATE INDEX IF NOT EXISTS salon_memories_created ON {{s}}.{MEMORIES} "
    "(agent_id, created_at)",
    f"CREATE INDEX IF NOT EXISTS salon_memories_messages ON {{s}}.{MEMORIES} (message_id)",
    f"CREATE INDEX IF NOT EXISTS salon_memories_authors ON {{s}}.{MEMORIES} (author)",
    f"CREATE INDEX IF NOT EXISTS salon_memories_embedding ON {{s}}.{MEMORIES} "
    "USING hnsw (embedding vector_cosine_ops)",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{FACTS} (
    agent_id text NOT NULL,
    fact_id text NOT NULL,
    user_id text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    category text NOT NULL,
    recorded_at timestamptz NOT NULL,
    room text,
    PRIMARY KEY (agent_id, fact_id)
)""",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{MEMBERS} (
    room_id uuid NOT NULL,
    agent_id text NOT NULL,
    PRIMARY KEY (room_id, agent_id)
)""",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{ROOMS} (
    room_id uuid PRIMARY KEY,
    name text NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{STREAMS} (
    stream_id uuid PRIMARY KEY,
    agent_id text NOT NULL
)""",
    # Each person's consent to agents remembering them: room '' is their default.
    f"""CREATE TABLE IF NOT EXISTS {{s}}.{CONSENT} (
    user_id text NOT NULL,
    room text NOT NULL,
    memory boolean NOT NULL,
    PRIMARY KEY (user_id, room)
)""",
)
COLUMNS = ("id::text AS id, agent_id, kind, content, importance, importance_source, "
           "created_at, last_accessed_at, access_count, room, position, message_id, author, "
           "cites::text[] AS cites, source")


def check_schema(schema: str) -> str:
    """Return ``schema`` if it is a plain lowercase identifier, else raise Invalid."""
    if not SCHEMA.match(schema):
        raise Invalid(f"schema {schema!r} is not a plain lowercase identifier")
    return schema


def _memory(row: dict[str, Any]) -> Memory:
    return Memory(memory_id=row["id"], agent_id=row["agent_id"], kind=row["kind"],
                  content=row["content"], importance=float(row["importance"]),
                  importance_source=row["importance_source"], created_at=row["created_at"],
                  last_accessed_at=row["last_accessed_at"],
                  access_count=int(row["access_count"]), room=row["room"],
                  position=row["position"], cites=tuple(row["cites"] or ()))


class MemoryStore:
    """Reads one schema's memory tables (the projection writes them). Thread-safe."""

    def __init__(self, database_url: str, schema: str = SCHEMA_NAME, max_size: int = 4) -> None:
        self.schema = check_schema(schema)
        # Generic plans of prepared statements do not see the query vector and may skip the
        # HNSW index: every query is planned with its vector.
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            database_url, connection_class=psycopg.Connection[dict[str, Any]], min_size=1,
            max_size=max_size, open=True,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None})

    def table(self, name: str = MEMORIES) -> str:
        """A schema-qualified table name."""
        return f"{self.schema}.{name}"

    def ensure_tables(self) -> None:
        """Create the schema, tables and indexes if they are missing."""
        with self.pool.connection() as conn:
            create_tables(conn, self.schema)

    def close(self) -> None:
        """Close the connections."""
        self.pool.close()

    def _rows(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    # -- retrieval ------------------------------------------------------------------------

    def retrieve(self, agent: str, query: Sequence[float], k: int = 5,
                 weights: Weights | None = None, now: datetime | None = None,
                 kinds: Sequence[str] | None = None, candidates: int = CANDIDATES,
                 skip_room: str | None = None, skip_from: int | None = None,
                 formed_by: datetime | None = None,
                 rooms: Sequence[str] | None = None) -> list[Retrieved]:
        """The ``k`` best memories of ``agent`` for ``query`` (an embedding), best first.

        ``rooms``, when given, are the only rooms whose memories may surface (memories formed
        in no room, like the owner's own notes, always may).

        Candidates are the agent's most relevant memories (HNSW), its most recently accessed
        and its most important, ``candidates`` of each; every part is min-max normalised over
        that union, so an agent with fewer memories than ``candidates`` is scored exactly.
        Memories of ``skip_room`` from position ``skip_from`` on (messages the turn's context
        shows anyway) are left out, and so are memories formed after ``formed_by`` (an agent
        in a fork remembers only what it knew at the fork point).
        """
        check_name(agent, "agent")
        for kind in kinds or ():
            if kind not in KINDS:
                raise Invalid(f"memory kind must be one of {', '.join(KINDS)}, not {kind!r}")
        vector = vector_literal(_checked(query))
        kind_filter = "AND kind = ANY(%(kinds)s)" if kinds else ""
        if skip_room is not None and skip_from is not None:
            kind_filter += " AND NOT (room IS NOT DISTINCT FROM %(skip_room)s AND " \
                           "position IS NOT NULL AND position >= %(skip_from)s)"
        if formed_by is not None:
            kind_filter += " AND created_at <= %(formed_by)s"
        if rooms is not None:
            # A reflection is formed in no room: it may surface only where all the rooms of
            # the memories it was drawn from may (``source.rooms``, set by the projection).
            kind_filter += " AND (room = ANY(%(rooms)s) OR (room IS NULL AND " \
                           "COALESCE(source->'rooms', '[]'::jsonb) <@ to_jsonb(%(rooms)s::text[])))"
        t = self.table()
        sql = f"""
            WITH rel AS (SELECT id FROM {t} WHERE agent_id = %(agent)s {kind_filter}
                         ORDER BY embedding <=> %(q)s::vector LIMIT %(n)s),
                 rec AS (SELECT id FROM {t} WHERE agent_id = %(agent)s {kind_filter}
                         ORDER BY last_accessed_at DESC LIMIT %(n)s),
                 imp AS (SELECT id FROM {t} WHERE agent_id = %(agent)s {kind_filter}
                         ORDER BY importance DESC LIMIT %(n)s)
            SELECT {COLUMNS}, 1 - (embedding <=> %(q)s::vector) AS relevance FROM {t}
            WHERE agent_id = %(agent)s
              AND id IN (SELECT id FROM rel UNION SELECT id FROM rec UNION SELECT id FROM imp)
        """
        args = {"agent": agent, "q": vector, "n": candidates, "kinds": list(kinds or []),
                "skip_room": skip_room, "skip_from": skip_from, "formed_by": formed_by,
                "rooms": list(rooms or [])}
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(sql, args).fetchall()
        memories = {row["id"]: _memory(row) for row in rows}
        ranked = rank([Candidate(row["id"], float(row["importance"]),
                                 row["last_accessed_at"], float(row["relevance"]))
                       for row in rows], now or datetime.now(UTC), weights, k)
        return [Retrieved(memories[s.memory_id], s) for s in ranked]

    def similar_messages(self, agent: str, room: str, query: Sequence[float],
                         before_position: int, k: int) -> list[ContextMessage]:
        """Messages of ``room`` older than ``before_position`` that ``agent`` saw, most
        relevant to ``query`` first (for the ``vector`` context strategy)."""
        if k <= 0:
            return []
        rows = self._rows(
            f"SELECT position, author, source->>'text' AS text FROM {self.table()} "
            "WHERE agent_id = %s AND room = %s AND kind = 'episodic' AND position < %s "
            "AND message_id IS NOT NULL ORDER BY embedding <=> %s::vector LIMIT %s",
            (check_name(agent, "agent"), room, before_position,
             vector_literal(_checked(query)), k))
        return [ContextMessage(int(r["position"]), str(r["author"]), str(r["text"]))
                for r in rows]

    # -- listing --------------------------------------------------------------------------

    def memories(self, agent: str, kind: str | None = None, limit: int = 50,
                 offset: int = 0) -> list[Memory]:
        """The agent's memories, newest first."""
        if kind is not None and kind not in KINDS:
            raise Invalid(f"memory kind must be one of {', '.join(KINDS)}, not {kind!r}")
        rows = self._rows(
            f"SELECT {COLUMNS} FROM {self.table()} WHERE agent_id = %s "
            "AND (%s::text IS NULL OR kind = %s) ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            (check_name(agent, "agent"), kind, kind, max(0, min(limit, 1_000)), max(offset, 0)))
        return [_memory(r) for r in rows]

    def memory(self, agent: str, memory_id: str) -> Memory:
        """One memory of ``agent``; NotFound if ``agent`` holds no such memory."""
        rows = self._rows(f"SELECT {COLUMNS} FROM {self.table()} "
                          "WHERE agent_id = %s AND id::text = %s",
                          (check_name(agent, "agent"), memory_id))
        if not rows:
            raise NotFound(f"agent {agent!r} has no memory {memory_id!r}; "
                           f"`salon agents memory {agent}` lists them")
        return _memory(rows[0])

    def rooms(self, agent: str) -> list[str]:
        """The rooms ``agent``'s memories were formed in."""
        rows = self._rows(f"SELECT DISTINCT room FROM {self.table()} WHERE agent_id = %s "
                          "AND room IS NOT NULL", (check_name(agent, "agent"),))
        return [str(r["room"]) for r in rows]

    def count(self, agent: str) -> int:
        """How many memories ``agent`` holds."""
        return int(self._rows(f"SELECT count(*) AS n FROM {self.table()} WHERE agent_id = %s",
                              (check_name(agent, "agent"),))[0]["n"])

    def facts(self, agent: str, user: str | None = None) -> list[dict[str, str]]:
        """Facts ``agent`` holds (about ``user`` only, if given), oldest first."""
        rows = self._rows(
            f"SELECT fact_id, user_id, key, value, category FROM "
            f"{self.table(FACTS)} WHERE agent_id = %s "
            "AND (%s::text IS NULL OR user_id = %s) ORDER BY recorded_at, fact_id",
            (check_name(agent, "agent"), user, user))
        return [dict(r) for r in rows]

    def facts_by_user(self, agent: str, users: Sequence[str],
                      rooms: Sequence[str] | None = None) -> dict[str, list[Fact]]:
        """Facts about each of ``users`` (those with any), for the system prompt.

        ``rooms``, when given, are the only rooms whose facts may surface (facts learned in
        no room, like those an owner recorded, always may)."""
        if not users:
            return {}
        rows = self._rows(
            f"SELECT user_id, key, value, category FROM {self.table(FACTS)} "
            "WHERE agent_id = %s AND user_id = ANY(%s) "
            "AND (%s::text[] IS NULL OR room IS NULL OR room = ANY(%s::text[])) "
            "ORDER BY recorded_at, fact_id",
            (check_name(agent, "agent"), list(users),
             None if rooms is None else list(rooms), None if rooms is None else list(rooms)))
        found: dict[str, list[Fact]] = {}
        for r in rows:
            found.setdefault(r["user_id"], []).append(Fact(r["key"], r["value"], r["category"]))
        return found

    # -- reflection and upkeep --------------------------------------------------------------

    def ratings_since_reflection(self, agent: str, window: int = 100) -> list[float]:
        """1-10 ratings of the (at most ``window``) newest memories since the last reflection,
        oldest first."""
        t = self.table()
        rows = self._rows(
            f"SELECT importance FROM {t} WHERE agent_id = %(a)s AND created_at > COALESCE("
            f"(SELECT max(created_at) FROM {t} WHERE agent_id = %(a)s AND source ? 'question'),"
            " '-infinity') AND NOT source ? 'question' ORDER BY created_at DESC LIMIT %(n)s",
            {"a": check_name(agent, "agent"), "n": window})
        return [float(r["importance"]) * 10 for r in reversed(rows)]

    def newest(self, agent: str, n: int = 100) -> list[Statement]:
        """The ``n`` newest memories as numbered-statement material, oldest first."""
        rows = self._rows(f"SELECT id::text AS id, content FROM {self.table()} "
                          "WHERE agent_id = %s ORDER BY created_at DESC, id LIMIT %s",
                          (check_name(agent, "agent"), n))
        return [Statement(r["id"], r["content"]) for r in reversed(rows)]

    def unrated(self, agent: str, limit: int = 20) -> list[Memory]:
        """The newest memories whose importance only the heuristic gave."""
        rows = self._rows(f"SELECT {COLUMNS} FROM {self.table()} WHERE agent_id = %s AND "
                          "importance_source = 'heuristic' ORDER BY created_at DESC LIMIT %s",
                          (check_name(agent, "agent"), limit))
        return [_memory(r) for r in rows]

    def states(self, agent: str, limit: int | None = None,
               include: Sequence[str] = ()) -> list[MemoryState]:
        """The memories of ``agent`` as upkeep sees it: every one, or (with ``limit``) the
        ``limit`` oldest, plus those named in ``include``."""
        t = self.table()
        rows = self._rows(
            f"SELECT id::text AS id, importance, created_at, last_accessed_at FROM {t} "
            "WHERE agent_id = %(a)s AND (%(n)s::int IS NULL OR id = ANY(%(i)s::uuid[]) OR id IN "
            f"(SELECT id FROM {t} WHERE agent_id = %(a)s ORDER BY created_at, id "
            "LIMIT %(n)s))",
            {"a": check_name(agent, "agent"), "n": limit, "i": list(include)})
        return [MemoryState(r["id"], float(r["importance"]), r["created_at"],
                            r["last_accessed_at"]) for r in rows]

    def contents(self, agent: str, memory_ids: Sequence[str]) -> dict[str, str]:
        """The text of each of ``memory_ids`` that is the agent's, by id."""
        rows = self._rows(f"SELECT id::text AS id, content FROM {self.table()} "
                          "WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                          (check_name(agent, "agent"), list(memory_ids)))
        return {r["id"]: r["content"] for r in rows}

    def agents(self, after: str = "", limit: int = 1_000) -> list[str]:
        """Names of agents holding long-term memories, in name order, after ``after``."""
        rows = self._rows(f"SELECT DISTINCT agent_id FROM {self.table()} WHERE agent_id > %s "
                          "ORDER BY agent_id LIMIT %s", (after, limit))
        return [r["agent_id"] for r in rows]

    def similar_pairs(self, agent: str, threshold: float, newest: int = 500,
                      neighbours: int = 3) -> list[tuple[str, str, float]]:
        """Pairs of the agent's memories at or above ``threshold`` cosine, looking from its
        ``newest`` memories at their nearest ``neighbours`` (HNSW)."""
        t = self.table()
        sql = f"""
            SELECT a.id::text AS a, b.id::text AS b, b.similarity
            FROM (SELECT id, embedding FROM {t} WHERE agent_id = %(a)s
                  ORDER BY created_at DESC LIMIT %(n)s) a
            CROSS JOIN LATERAL (
                SELECT id, 1 - (embedding <=> a.embedding) AS similarity FROM {t}
                WHERE agent_id = %(a)s AND id <> a.id
                ORDER BY embedding <=> a.embedding LIMIT %(k)s) b
            WHERE b.similarity >= %(t)s
        """
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(sql, {"a": check_name(agent, "agent"), "n": newest,
                                      "k": neighbours, "t": threshold}).fetchall()
        return [(r["a"], r["b"], float(r["similarity"])) for r in rows]

    def snapshot(self, agent: str | None = None) -> list[dict[str, Any]]:
        """Every row (of ``agent``, or all), embeddings included, ordered by id: for checks."""
        rows = self._rows(
            f"SELECT {COLUMNS}, embedding::text AS embedding FROM {self.table()} "
            "WHERE %s::text IS NULL OR agent_id = %s ORDER BY id", (agent, agent))
        return [{**r, "embedding": parse_vector(r["embedding"])} for r in rows]


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the memory tables in ``schema`` (idempotent; without the projection's tracking
    table, which its view adds: ``projections.memories``)."""
    s = check_schema(schema)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
    for statement in STATEMENTS:
        conn.execute(statement.replace("{s}", s))


def _checked(vector: Sequence[float]) -> Sequence[float]:
    if len(vector) != DIMENSIONS:
        raise Invalid(f"a query embedding has {DIMENSIONS} dimensions, got {len(vector)}")
    return vector


# -- who may see an agent's memories -------------------------------------------------------

def check_access(store: EventStore, agent: str, user: str, is_admin: bool = False) -> Agent:
    """The agent, if ``user`` owns it or is an admin; Forbidden otherwise.

    Agents act as themselves: an agent (``user`` = its name) is never the owner of another
    agent, so one agent asking for another's memories is refused here too.
    """
    found = store.get(Agent, agent_id(check_name(agent, "agent")),
                      f"agent {agent!r} does not exist; `salon agents list` shows the agents")
    policy.require_agent_owner(Principal.acting(user, is_admin),
                               policy.AgentFacts(found.name, found.owner_id),
                               "read or change its memories")
    return found
