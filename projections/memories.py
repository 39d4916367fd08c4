"""The memory projection: agents' long-term memories in pgvector, a pure function of the log.

It follows the whole event log in notification order and writes the tables of
``infra/memories.py``:

- a room's ``MessagePosted`` becomes an episodic memory of every agent that is a member *at
  that point of the log* (so nothing from before it joined, or while it was away), with the
  heuristic importance; ``MessageRedacted`` deletes those memories again (and reflections
  citing them);
- someone joining a room and feedback on an agent's own message become social memories;
- the ``MemoryStream`` events apply the recorded decisions: memories added by hand or by the
  agent, model-rated importance, retrievals (``last_accessed_at``, ``access_count``), merges,
  forgetting, reflections (semantic memories citing their sources), and facts about users.

Each batch runs in one transaction that also moves the tracking row, which it locks first:
events are applied exactly once, even with two runners. Every value comes from the log or
from the embedder, so dropping the tables and rebuilding gives the same rows.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.errors import SalonError
from domain.memories import check_kind
from infra.embeddings import Embedder, MiniLMEmbedder, vector_literal
from infra.memories import check_schema, create_tables, drop_tables
from infra.sealing import SealingMapper
from infra.store import open_app
from memory import observations
from memory.scoring import rating_to_importance

log = logging.getLogger(__name__)
NAME = "memories"
EVENTS_TABLE = "salon_events"
ROOM = "domain.rooms:Room."
STREAM = "domain.memories:MemoryStream."
TOPICS = [ROOM + n for n in ("RoomCreated", "RoomForked", "MemberJoined", "MemberLeft",
                             "MessagePosted", "MessageRedacted", "FeedbackGiven")] + \
         [STREAM + n for n in ("MemoryStreamOpened", "MemoryRecorded", "ImportanceRated",
                               "MemoriesRetrieved", "MemoriesMerged", "MemoriesForgotten",
                               "ReflectionRecorded", "FactRemembered", "FactForgotten")] + \
         ["domain.users:User.UserForgotten"]
JOIN_RATING = 2
INSERT = ("INSERT INTO {t} (id, agent_id, kind, content, embedding, importance, "
          "importance_source, created_at, last_accessed_at, access_count, room, room_id, "
          "position, message_id, author, cites, source) VALUES (%s, %s, %s, %s, %s::vector, "
          "%s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s::uuid[], %s) ON CONFLICT (id) DO NOTHING")


@dataclass
class _Row:
    """A memory waiting for its embedding."""

    memory_id: str
    agent: str
    kind: str
    content: str
    importance: float
    importance_source: str
    created_at: datetime
    room: str | None = None
    room_id: uuid.UUID | None = None
    position: int | None = None
    message_id: str | None = None
    author: str | None = None
    cites: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


def _timestamp(state: dict[str, Any]) -> datetime:
    value = state["timestamp"]
    return datetime.fromisoformat(value["_data_"] if isinstance(value, dict) else value)


class MemoryProjection:
    """Follows the event log into the memory tables of one schema."""

    def __init__(self, database_url: str, schema: str = "public",
                 embedder: Embedder | None = None, agents: Iterable[str] | None = None,
                 batch: int = 500, events_table: str = EVENTS_TABLE) -> None:
        self.database_url = database_url
        self.schema = check_schema(schema)
        self.embedder = embedder or MiniLMEmbedder()
        # Only these agents' memories (tests scope a projection this way); None: every agent.
        self.agents = set(agents) if agents is not None else None
        self.batch = batch
        self.events_table = check_schema(events_table)
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._opener: SealingMapper | None = None  # opens the sealed personal fields
        self._pending: list[_Row] = []
        self._handlers: dict[str, Callable[[psycopg.Connection[Any], Any, dict[str, Any],
                                            int], None]] = {
            "RoomCreated": self._room_created, "RoomForked": self._room_created,
            "MemberJoined": self._member_joined, "MemberLeft": self._member_left,
            "MessagePosted": self._message_posted, "MessageRedacted": self._message_redacted,
            "FeedbackGiven": self._feedback_given,
            "MemoryStreamOpened": self._stream_opened, "MemoryRecorded": self._memory_recorded,
            "ImportanceRated": self._importance_rated,
            "MemoriesRetrieved": self._memories_retrieved,
            "MemoriesMerged": self._memories_merged,
            "MemoriesForgotten": self._memories_forgotten,
            "ReflectionRecorded": self._reflection_recorded,
            "FactRemembered": self._fact_remembered, "FactForgotten": self._fact_forgotten,
            "UserForgotten": self._user_forgotten,
        }

    def t(self, name: str) -> str:
        """A table of this projection's schema."""
        return f"{self.schema}.{name}"

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, row_factory=dict_row,
                                         prepare_threshold=None)
            with self._conn.transaction():
                create_tables(self._conn, self.schema)
        return self._conn

    def close(self) -> None:
        """Close the database connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- following the log ------------------------------------------------------------------

    def position(self) -> int:
        """The notification id of the last event taken in."""
        conn = self._connection()
        with conn.transaction():
            row = conn.execute(f"SELECT position FROM {self.t('salon_memory_tracking')} "
                               "WHERE name = %s", (NAME,)).fetchone()
        return int(row["position"]) if row else 0

    def catch_up(self) -> int:
        """Take in every event recorded so far; returns how many events were applied."""
        applied = 0
        while True:
            count, more = self._step()
            applied += count
            if not more:
                return applied

    def _step(self) -> tuple[int, bool]:
        conn = self._connection()
        try:
            with conn.transaction():
                tracking = self.t("salon_memory_tracking")
                conn.execute(f"INSERT INTO {tracking} (name, position) VALUES (%s, 0) "
                             "ON CONFLICT (name) DO NOTHING", (NAME,))
                row = conn.execute(f"SELECT position FROM {tracking} WHERE name = %s "
                                   "FOR UPDATE", (NAME,)).fetchone()
                start = int(row["position"]) if row else 0
                # The event store commits under a table lock, in notification order: every id
                # up to the visible maximum is committed, so nothing is skipped.
                head_row = conn.execute(f"SELECT max(notification_id) AS head FROM "
                                        f"{self.events_table}").fetchone()
                head = int(head_row["head"] or 0) if head_row else 0
                if head <= start:
                    return 0, False
                events = conn.execute(
                    f"SELECT notification_id, originator_id, originator_version, topic, state "
                    f"FROM {self.events_table} WHERE notification_id > %s AND "
                    "notification_id <= %s AND topic = ANY(%s) ORDER BY notification_id "
                    "LIMIT %s", (start, head, TOPICS, self.batch)).fetchall()
                full = len(events) == self.batch
                for event in events:
                    self._apply(conn, event)
                self._flush(conn)
                end = int(events[-1]["notification_id"]) if full else head
                conn.execute(f"UPDATE {tracking} SET position = %s WHERE name = %s",
                             (end, NAME))
                return len(events), full
        finally:
            self._pending.clear()

    def _apply(self, conn: psycopg.Connection[Any], event: dict[str, Any]) -> None:
        name = str(event["topic"]).rpartition(".")[2]
        try:
            state = json.loads(bytes(event["state"]))
            if self._opener is None:
                mapper = open_app(self.database_url).mapper
                assert isinstance(mapper, SealingMapper)
                self._opener = mapper
            if not self._opener.open_state(str(event["topic"]), event["originator_id"], state):
                state["erased"] = True
            self._handlers[name](conn, event["originator_id"], state,
                                 int(event["originator_version"]))
        except (KeyError, TypeError, ValueError, SalonError) as error:
            # A malformed event is passed over (the same way on every rebuild) rather than
            # stopping the projection for good.
            log.warning("the memory projection passed over event %s (%s): %s",
                        event["notification_id"], event["topic"], error)

    def rebuild(self) -> int:
        """Drop the tables and take in the whole log again; returns how many events."""
        conn = self._connection()
        with conn.transaction():
            drop_tables(conn, self.schema)
            create_tables(conn, self.schema)
        return self.catch_up()

    def run(self, stop: threading.Event, interval: float = 0.5,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """Catch up, then poll every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.catch_up()
            except Exception as error:  # noqa: BLE001 - a projection keeps following
                log.exception("the memory projection failed a batch; retrying")
                if on_error is not None:
                    on_error(error)
                self.close()
            stop.wait(interval)
        self.close()

    def start(self, interval: float = 0.5) -> Callable[[], None]:
        """Run in a daemon thread; returns a function that stops it and waits for it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop, interval),
                                  name="salon-memory-projection", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=30)

        return halt

    # -- writing ----------------------------------------------------------------------------

    def _wanted(self, agent: str) -> bool:
        return self.agents is None or agent in self.agents

    def _add(self, row: _Row) -> None:
        if self._wanted(row.agent):
            self._pending.append(row)

    def _flush(self, conn: psycopg.Connection[Any]) -> None:
        """Embed the waiting memories in one batch and insert them."""
        if not self._pending:
            return
        texts = list(dict.fromkeys(r.content for r in self._pending))
        vectors = dict(zip(texts, self.embedder.embed(texts), strict=True))
        with conn.cursor() as cursor:
            cursor.executemany(INSERT.format(t=self.t("salon_memories")), [
                (r.memory_id, r.agent, r.kind, r.content, vector_literal(vectors[r.content]),
                 r.importance, r.importance_source, r.created_at, r.created_at, r.room,
                 r.room_id, r.position, r.message_id, r.author, r.cites, Jsonb(r.source))
                for r in self._pending])
        self._pending.clear()

    def _members(self, conn: psycopg.Connection[Any], room_id: uuid.UUID) -> list[str]:
        rows = conn.execute(f"SELECT agent_id FROM {self.t('salon_memory_members')} "
                            "WHERE room_id = %s ORDER BY agent_id", (room_id,)).fetchall()
        return [r["agent_id"] for r in rows]

    def _room(self, conn: psycopg.Connection[Any], room_id: uuid.UUID) -> str:
        row = conn.execute(f"SELECT name FROM {self.t('salon_memory_rooms')} "
                           "WHERE room_id = %s", (room_id,)).fetchone()
        return str(row["name"]) if row else str(room_id)

    def _agent_of(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID) -> str | None:
        row = conn.execute(f"SELECT agent_id FROM {self.t('salon_memory_streams')} "
                           "WHERE stream_id = %s", (stream_id,)).fetchone()
        agent = str(row["agent_id"]) if row else None
        return agent if agent is not None and self._wanted(agent) else None

    # -- room events --------------------------------------------------------------------------

    def _room_created(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                      state: dict[str, Any], version: int) -> None:
        conn.execute(f"INSERT INTO {self.t('salon_memory_rooms')} (room_id, name) "
                     "VALUES (%s, %s) ON CONFLICT (room_id) DO UPDATE SET name = EXCLUDED.name",
                     (room_id, state["name"]))

    def _member_joined(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                       state: dict[str, Any], version: int) -> None:
        member, kind = str(state["member_id"]), str(state.get("member_kind", "human"))
        room = self._room(conn, room_id)
        for agent in self._members(conn, room_id):
            if agent != member:
                self._add(_Row(observations.observation_id(agent, f"{room_id}:{version}"),
                               agent, "social", observations.joined(room, member, kind),
                               rating_to_importance(JOIN_RATING), "heuristic",
                               _timestamp(state), room=room, room_id=room_id, position=version,
                               author=member, source={"joined": member}))
        if kind == "agent" and self._wanted(member):
            conn.execute(f"INSERT INTO {self.t('salon_memory_members')} (room_id, agent_id) "
                         "VALUES (%s, %s) ON CONFLICT DO NOTHING", (room_id, member))

    def _member_left(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                     state: dict[str, Any], version: int) -> None:
        conn.execute(f"DELETE FROM {self.t('salon_memory_members')} "
                     "WHERE room_id = %s AND agent_id = %s", (room_id, state["member_id"]))

    def _message_posted(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                        state: dict[str, Any], version: int) -> None:
        if state.get("erased") or state.get("redacted"):
            return  # its words were taken back: nothing is formed from them
        room = self._room(conn, room_id)
        author, text = str(state["author_id"]), str(state["text"])
        mentions = [str(m) for m in state.get("mentions") or []]
        for agent in self._members(conn, room_id):
            rating = observations.said_importance(agent, author, text, mentions)
            self._add(_Row(observations.observation_id(agent, str(state["message_id"])), agent,
                           "episodic", observations.said(agent, room, author, text),
                           rating_to_importance(rating), "heuristic", _timestamp(state),
                           room=room, room_id=room_id, position=version,
                           message_id=str(state["message_id"]), author=author,
                           source={"text": text}))

    def _message_redacted(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                          state: dict[str, Any], version: int) -> None:
        self._flush(conn)
        gone = conn.execute(f"DELETE FROM {self.t('salon_memories')} WHERE message_id = %s "
                            "AND room_id = %s RETURNING id", (str(state["message_id"]),
                                                             room_id)).fetchall()
        self._delete_citing(conn, [r["id"] for r in gone])

    def _user_forgotten(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                        state: dict[str, Any], version: int) -> None:
        """A person was forgotten: what agents formed from their words and know of them goes."""
        self._flush(conn)
        name = str(state["name"])
        gone = conn.execute(f"DELETE FROM {self.t('salon_memories')} WHERE author = %s "
                            "AND author <> agent_id RETURNING id", (name,)).fetchall()
        self._delete_citing(conn, [r["id"] for r in gone])
        conn.execute(f"DELETE FROM {self.t('salon_memory_facts')} WHERE user_id = %s", (name,))

    def _delete_citing(self, conn: psycopg.Connection[Any], ids: list[Any]) -> None:
        # What was inferred from a forgotten memory goes with it, transitively.
        while ids:
            rows = conn.execute(f"DELETE FROM {self.t('salon_memories')} WHERE cites && "
                                "%s::uuid[] RETURNING id", ([str(i) for i in ids],)).fetchall()
            ids = [r["id"] for r in rows]

    def _feedback_given(self, conn: psycopg.Connection[Any], room_id: uuid.UUID,
                        state: dict[str, Any], version: int) -> None:
        self._flush(conn)
        rows = conn.execute(
            f"SELECT agent_id, source->>'text' AS text FROM {self.t('salon_memories')} "
            "WHERE message_id = %s AND room_id = %s AND author = agent_id",
            (str(state["message_id"]), room_id)).fetchall()
        members = set(self._members(conn, room_id))
        room = self._room(conn, room_id)
        for row in rows:
            agent = str(row["agent_id"])
            if agent not in members:
                continue
            rating = int(state["rating"])
            self._add(_Row(observations.observation_id(agent, f"{room_id}:{version}"), agent,
                           "social", observations.feedback(room, str(state["member_id"]),
                                                           rating, state.get("comment"),
                                                           str(row["text"])),
                           rating_to_importance(5 if rating > 0 else 6), "heuristic",
                           _timestamp(state), room=room, room_id=room_id, position=version,
                           message_id=None, author=str(state["member_id"]),
                           source={"feedback": rating}))

    # -- memory stream events ---------------------------------------------------------------

    def _stream_opened(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                       state: dict[str, Any], version: int) -> None:
        conn.execute(f"INSERT INTO {self.t('salon_memory_streams')} (stream_id, agent_id) "
                     "VALUES (%s, %s) ON CONFLICT DO NOTHING", (stream_id, state["agent"]))

    def _memory_recorded(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                         state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        source = dict(state.get("source") or {})
        self._add(_Row(str(state["memory_id"]), agent, check_kind(str(state["kind"])),
                       str(state["content"]), rating_to_importance(float(state["importance"])),
                       str(state.get("importance_source", "heuristic")), _timestamp(state),
                       room=source.get("room"), cites=[str(c) for c in source.get("cites", [])],
                       source=source))

    def _reflection_recorded(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                             state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        self._flush(conn)
        cites = [str(c) for c in state["cites"]]
        # Sources forgotten before the reflection was recorded are not cited.
        alive = conn.execute(f"SELECT id::text AS id, room, source->'rooms' AS rooms "
                             f"FROM {self.t('salon_memories')} "
                             "WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                             (agent, cites)).fetchall()
        kept = [c for c in cites if c in {r["id"] for r in alive}]
        if not kept:
            return
        # The rooms it was drawn from, through cited reflections too: recall shows it only
        # where every one of them may be read.
        rooms = sorted({r["room"] for r in alive if r["room"] is not None} |
                       {str(name) for r in alive for name in (r["rooms"] or [])})
        self._add(_Row(str(state["memory_id"]), agent, "semantic", str(state["content"]),
                       rating_to_importance(float(state["importance"])), "model",
                       _timestamp(state), cites=kept,
                       source={"question": str(state.get("question", "")), "rooms": rooms}))

    def _importance_rated(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                          state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        self._flush(conn)
        ratings = state["ratings"]
        with conn.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {self.t('salon_memories')} SET importance = %s, "
                "importance_source = 'model' WHERE agent_id = %s AND id = %s::uuid",
                [(rating_to_importance(float(r)), agent, m) for m, r in sorted(ratings.items())])

    def _memories_retrieved(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                            state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        self._flush(conn)
        conn.execute(f"UPDATE {self.t('salon_memories')} SET last_accessed_at = %s, "
                     "access_count = access_count + 1 WHERE agent_id = %s "
                     "AND id = ANY(%s::uuid[])",
                     (_timestamp(state), agent, [str(m) for m in state["memory_ids"]]))

    def _memories_merged(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                         state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        self._flush(conn)
        t = self.t("salon_memories")
        merged = [str(m) for m in state["merged_ids"]]
        kept = str(state["kept_id"])
        conn.execute(
            f"UPDATE {t} k SET importance = GREATEST(k.importance, d.importance), "
            "access_count = k.access_count + d.access_count, "
            "last_accessed_at = GREATEST(k.last_accessed_at, d.last_accessed_at) "
            f"FROM (SELECT max(importance) AS importance, sum(access_count)::int AS "
            f"access_count, max(last_accessed_at) AS last_accessed_at FROM {t} "
            "WHERE agent_id = %s AND id = ANY(%s::uuid[])) d "
            "WHERE k.agent_id = %s AND k.id = %s::uuid AND d.importance IS NOT NULL",
            (agent, merged, agent, kept))
        conn.execute(f"DELETE FROM {t} WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                     (agent, merged))
        # Reflections that cited a merged memory now cite the one it was folded into.
        citing = conn.execute(f"SELECT id, cites::text[] AS cites FROM {t} WHERE agent_id = %s "
                              "AND cites && %s::uuid[]", (agent, merged)).fetchall()
        for row in citing:
            cites = list(dict.fromkeys(kept if c in merged else c for c in row["cites"]))
            conn.execute(f"UPDATE {t} SET cites = %s::uuid[] WHERE id = %s", (cites, row["id"]))

    def _memories_forgotten(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                            state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        self._flush(conn)
        conn.execute(f"DELETE FROM {self.t('salon_memories')} WHERE agent_id = %s "
                     "AND id = ANY(%s::uuid[])", (agent, [str(m) for m in state["memory_ids"]]))

    def _fact_remembered(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                         state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None or state.get("erased"):
            return
        conn.execute(
            f"INSERT INTO {self.t('salon_memory_facts')} (agent_id, fact_id, user_id, key, "
            "value, category, recorded_at, room) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (agent_id, fact_id) DO UPDATE SET key = EXCLUDED.key, "
            "value = EXCLUDED.value, category = EXCLUDED.category, room = EXCLUDED.room",
            (agent, state["fact_id"], state["user_id"], state["key"], state["value"],
             state["category"], _timestamp(state), state.get("room")))

    def _fact_forgotten(self, conn: psycopg.Connection[Any], stream_id: uuid.UUID,
                        state: dict[str, Any], version: int) -> None:
        agent = self._agent_of(conn, stream_id)
        if agent is None:
            return
        conn.execute(f"DELETE FROM {self.t('salon_memory_facts')} WHERE agent_id = %s "
                     "AND fact_id = %s", (agent, state["fact_id"]))
