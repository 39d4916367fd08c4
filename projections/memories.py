"""The memory projection: agents' long-term memories in pgvector, a pure function of the log.

A ``Projection`` like threads, audit and metrics (``projections/views.py``): its view is the
tables of ``infra/memories.py`` in the schema ``salon_memories`` with the tracking table
``memories_tracking``; ``projections.service`` runs it in the Ray actor ``projection:memories``,
``salon projections status`` lists it and ``salon projections rebuild memories`` refills it
from position 0. The events it reads are named by their classes (its ``topics`` follow), and
every table by ``infra.memories``. It writes:

- a room's ``MessagePosted`` becomes an episodic memory of every agent that is a member *at
  that point of the log* (so nothing from before it joined, or while it was away), with the
  heuristic importance; ``MessageRedacted`` deletes those memories again (and reflections
  citing them);
- someone joining a room and feedback on an agent's own message become social memories;
- the ``MemoryStream`` events apply the recorded decisions: memories added by hand or by the
  agent, model-rated importance, retrievals (``last_accessed_at``, ``access_count``), merges,
  forgetting, reflections (semantic memories citing their sources), and facts about users;
- a person's ``MemoryConsentChanged`` (their user stream): from that point of the log no
  memory whose source is theirs (their messages, their joining, their feedback) and no fact
  about them is formed where they have not consented, and those already held there are
  deleted (with the reflections citing them).

A batch's new memories are embedded together (``finish``) by the embedder it was given: the
platform hands it the background embedder actor (``actors/embedder.py``); without one it loads
all-MiniLM-L6-v2 in its own process. Every value comes from the log or from the embedder, so
dropping the view and rebuilding gives the same rows (embeddings to float noise).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, ClassVar

from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from domain.errors import SalonError
from domain.memories import MemoryStream, check_kind
from domain.rooms import Room
from domain.users import User
from infra import memories as tables
from infra.embeddings import Embedder, MiniLMEmbedder, vector_literal
from memory import observations
from memory.scoring import rating_to_importance
from projections.runner import Runner
from projections.views import Projection, Tx, Undecodable, View, topic_of

log = logging.getLogger(__name__)
NAME = tables.VIEW
SCHEMA = tables.SCHEMA_NAME
JOIN_RATING = 2
M = f"{{s}}.{tables.MEMORIES}"
FACTS = f"{{s}}.{tables.FACTS}"
MEMBERS = f"{{s}}.{tables.MEMBERS}"
ROOMS = f"{{s}}.{tables.ROOMS}"
STREAMS = f"{{s}}.{tables.STREAMS}"
CONSENT = f"{{s}}.{tables.CONSENT}"
INSERT = (f"INSERT INTO {M} (id, agent_id, kind, content, embedding, importance, "
          "importance_source, created_at, last_accessed_at, access_count, room, room_id, "
          "position, message_id, author, cites, source) VALUES (%s, %s, %s, %s, %s::vector, "
          "%s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s::uuid[], %s) ON CONFLICT (id) DO NOTHING")
# What a malformed event raises in a handler: it is passed over (the same way on every
# rebuild) rather than stopping the projection for good.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, SalonError)


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


class MemoryView(View):
    """The memory tables (``infra/memories.py``) and the projection's tracking record."""

    ddl = tables.STATEMENTS


def _topic(cls: type, event: str | None = None) -> str:
    """The stored topic of an event class, or of event ``event`` of aggregate ``cls`` (one
    this code may not define yet: ``Room.MessageRedacted`` is in the catalogue before the
    Room aggregate records it)."""
    found = getattr(cls, event, None) if event else cls
    return get_topic(found) if isinstance(found, type) else f"{get_topic(cls)}.{event}"


# The events the memory view reads, by topic, each with its handler: its topics follow.
HANDLED: dict[str, str] = {
    _topic(Room.RoomCreated): "_room_created", _topic(Room.RoomForked): "_room_created",
    _topic(Room.MemberJoined): "_member_joined", _topic(Room.MemberLeft): "_member_left",
    _topic(Room.MessagePosted): "_message_posted",
    _topic(Room.MessageRedacted): "_message_redacted",
    _topic(Room.FeedbackGiven): "_feedback_given",
    _topic(MemoryStream.MemoryStreamOpened): "_stream_opened",
    _topic(MemoryStream.MemoryRecorded): "_memory_recorded",
    _topic(MemoryStream.ImportanceRated): "_importance_rated",
    _topic(MemoryStream.MemoriesRetrieved): "_memories_retrieved",
    _topic(MemoryStream.MemoriesMerged): "_memories_merged",
    _topic(MemoryStream.MemoriesForgotten): "_memories_forgotten",
    _topic(MemoryStream.ReflectionRecorded): "_reflection_recorded",
    _topic(MemoryStream.FactRemembered): "_fact_remembered",
    _topic(MemoryStream.FactForgotten): "_fact_forgotten",
    _topic(User, "MemoryConsentChanged"): "_consent_changed",
    _topic(User, "UserForgotten"): "_user_forgotten",
}


def _fields(event: object) -> Any:
    """An event as its handlers read it: a decoded event, or an undecodable one's fields."""
    if not isinstance(event, Undecodable):
        return event
    return SimpleNamespace(**{**event.state, "originator_id": event.originator_id,
                              "originator_version": event.originator_version,
                              "timestamp": event.timestamp})


class Memories(Projection[MemoryView]):
    """Follows the log into agents' memory tables."""

    name = NAME
    view_class = MemoryView
    topics: ClassVar[tuple[str, ...]] = tuple(sorted(HANDLED))

    def __init__(self, view: MemoryView, embedder: Embedder | None = None,
                 agents: Iterable[str] | None = None) -> None:
        super().__init__(view)
        self._embedder = embedder
        # Only these agents' memories (tests scope a view this way); None: every agent.
        self.agents = set(agents) if agents is not None else None
        self._pending: list[_Row] = []
        self._handlers: dict[str, Callable[[Any, Tx], None]] = {
            topic: getattr(self, method) for topic, method in HANDLED.items()}
        # (person, room or '') -> "on"|"off", as of ``_consent_at`` (a batch's end).
        self._consent: dict[tuple[str, str], str] = {}
        self._consent_at: int | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder given, or all-MiniLM-L6-v2 in this process (loaded on first use)."""
        if self._embedder is None:
            self._embedder = MiniLMEmbedder()
        return self._embedder

    # -- batches ----------------------------------------------------------------------------

    def apply(self, event: object, tx: Tx) -> None:  # type: ignore[override]
        topic = topic_of(event)
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            handler(_fields(event), tx)
        except MALFORMED as error:
            log.warning("the memory projection passed over event %s (%s): %s", tx.position,
                        topic, error)

    def begin(self, tx: Tx) -> None:
        self._pending.clear()
        if self._consent_at != tx.position:  # another runner moved the view on
            self._consent = {(r["user_id"], r["room"]): "on" if r["memory"] else "off"
                             for r in tx.rows(f"SELECT user_id, room, memory FROM {CONSENT}")}
            self._consent_at = tx.position

    def finish(self, tx: Tx) -> None:
        self._flush(tx)
        self._consent_at = tx.position

    def abort(self) -> None:
        self._pending.clear()
        self._consent_at = None

    # -- writing ----------------------------------------------------------------------------

    def _wanted(self, agent: str) -> bool:
        return self.agents is None or agent in self.agents

    def _add(self, row: _Row) -> None:
        if self._wanted(row.agent):
            self._pending.append(row)

    def _flush(self, tx: Tx) -> None:
        """Embed the waiting memories in one batch and insert them."""
        if not self._pending:
            return
        texts = list(dict.fromkeys(r.content for r in self._pending))
        vectors = dict(zip(texts, self.embedder.embed(texts), strict=True))
        tx.cursor.executemany(tx.view.sql(INSERT), [
            (r.memory_id, r.agent, r.kind, r.content, vector_literal(vectors[r.content]),
             r.importance, r.importance_source, r.created_at, r.created_at, r.room,
             r.room_id, r.position, r.message_id, r.author, r.cites, Jsonb(r.source))
            for r in self._pending])
        self._pending.clear()

    def _members(self, tx: Tx, room_id: uuid.UUID) -> list[str]:
        rows = tx.rows(f"SELECT agent_id FROM {MEMBERS} WHERE room_id = %s ORDER BY agent_id",
                       (room_id,))
        return [r["agent_id"] for r in rows]

    def _room(self, tx: Tx, room_id: uuid.UUID) -> str:
        rows = tx.rows(f"SELECT name FROM {ROOMS} WHERE room_id = %s", (room_id,))
        return str(rows[0]["name"]) if rows else str(room_id)

    def _agent_of(self, tx: Tx, stream_id: uuid.UUID) -> str | None:
        rows = tx.rows(f"SELECT agent_id FROM {STREAMS} WHERE stream_id = %s", (stream_id,))
        agent = str(rows[0]["agent_id"]) if rows else None
        return agent if agent is not None and self._wanted(agent) else None

    def consents(self, person: str, room: str | None) -> bool:
        """Whether ``person`` lets agents remember them in ``room`` at this point of the log
        (the room's setting, else their default, else on; as ``domain.users.User.consents``)."""
        found = self._consent.get((person, room)) if room else None
        return (found or self._consent.get((person, ""), "on")) == "on"

    # -- room events --------------------------------------------------------------------------

    def _room_created(self, event: Any, tx: Tx) -> None:
        tx.execute(f"INSERT INTO {ROOMS} (room_id, name) VALUES (%s, %s) "
                   "ON CONFLICT (room_id) DO UPDATE SET name = EXCLUDED.name",
                   (event.originator_id, event.name))

    def _member_joined(self, event: Any, tx: Tx) -> None:
        room_id, version = event.originator_id, int(event.originator_version)
        member = str(event.member_id)
        kind = str(getattr(event, "member_kind", "human"))
        room = self._room(tx, room_id)
        if self.consents(member, room):
            for agent in self._members(tx, room_id):
                if agent != member:
                    self._add(_Row(observations.observation_id(agent, f"{room_id}:{version}"),
                                   agent, "social", observations.joined(room, member, kind),
                                   rating_to_importance(JOIN_RATING), "heuristic",
                                   event.timestamp, room=room, room_id=room_id,
                                   position=version, author=member,
                                   source={"joined": member}))
        if kind == "agent" and self._wanted(member):
            tx.execute(f"INSERT INTO {MEMBERS} (room_id, agent_id) VALUES (%s, %s) "
                       "ON CONFLICT DO NOTHING", (room_id, member))

    def _member_left(self, event: Any, tx: Tx) -> None:
        tx.execute(f"DELETE FROM {MEMBERS} WHERE room_id = %s AND agent_id = %s",
                   (event.originator_id, event.member_id))

    def _message_posted(self, event: Any, tx: Tx) -> None:
        if getattr(event, "erased", False) or getattr(event, "redacted", False):
            return  # its words were taken back: nothing is formed from them
        room_id, version = event.originator_id, int(event.originator_version)
        room = self._room(tx, room_id)
        author, text = str(event.author_id), str(event.text)
        if not self.consents(author, room):
            return
        mentions = [str(m) for m in getattr(event, "mentions", None) or []]
        for agent in self._members(tx, room_id):
            rating = observations.said_importance(agent, author, text, mentions)
            self._add(_Row(observations.observation_id(agent, str(event.message_id)), agent,
                           "episodic", observations.said(agent, room, author, text),
                           rating_to_importance(rating), "heuristic", event.timestamp,
                           room=room, room_id=room_id, position=version,
                           message_id=str(event.message_id), author=author,
                           source={"text": text}))

    def _message_redacted(self, event: Any, tx: Tx) -> None:
        self._flush(tx)
        gone = tx.rows(f"DELETE FROM {M} WHERE message_id = %s AND room_id = %s RETURNING id",
                       (str(event.message_id), event.originator_id))
        self._delete_citing(tx, [r["id"] for r in gone])

    def _delete_citing(self, tx: Tx, ids: list[Any]) -> None:
        # What was inferred from a forgotten memory goes with it, transitively.
        while ids:
            rows = tx.rows(f"DELETE FROM {M} WHERE cites && %s::uuid[] RETURNING id",
                           ([str(i) for i in ids],))
            ids = [r["id"] for r in rows]

    def _feedback_given(self, event: Any, tx: Tx) -> None:
        self._flush(tx)
        room_id, version = event.originator_id, int(event.originator_version)
        member = str(event.member_id)
        room = self._room(tx, room_id)
        if not self.consents(member, room):
            return
        rows = tx.rows(f"SELECT agent_id, source->>'text' AS text FROM {M} "
                       "WHERE message_id = %s AND room_id = %s AND author = agent_id",
                       (str(event.message_id), room_id))
        members = set(self._members(tx, room_id))
        for row in rows:
            agent = str(row["agent_id"])
            if agent not in members:
                continue
            rating = int(event.rating)
            self._add(_Row(observations.observation_id(agent, f"{room_id}:{version}"), agent,
                           "social", observations.feedback(room, member, rating,
                                                           getattr(event, "comment", None),
                                                           str(row["text"])),
                           rating_to_importance(5 if rating > 0 else 6), "heuristic",
                           event.timestamp, room=room, room_id=room_id, position=version,
                           message_id=None, author=member, source={"feedback": rating}))

    # -- memory stream events ---------------------------------------------------------------

    def _stream_opened(self, event: Any, tx: Tx) -> None:
        tx.execute(f"INSERT INTO {STREAMS} (stream_id, agent_id) VALUES (%s, %s) "
                   "ON CONFLICT DO NOTHING", (event.originator_id, event.agent))

    def _memory_recorded(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        source = dict(getattr(event, "source", None) or {})
        self._add(_Row(str(event.memory_id), agent, check_kind(str(event.kind)),
                       str(event.content), rating_to_importance(float(event.importance)),
                       str(getattr(event, "importance_source", "heuristic")), event.timestamp,
                       room=source.get("room"), cites=[str(c) for c in source.get("cites", [])],
                       source=source))

    def _reflection_recorded(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        self._flush(tx)
        cites = [str(c) for c in event.cites]
        # Sources forgotten before the reflection was recorded are not cited.
        alive = tx.rows(f"SELECT id::text AS id, room, source->'rooms' AS rooms FROM {M} "
                        "WHERE agent_id = %s AND id = ANY(%s::uuid[])", (agent, cites))
        kept = [c for c in cites if c in {r["id"] for r in alive}]
        if not kept:
            return
        # The rooms it was drawn from, through cited reflections too: recall shows it only
        # where every one of them may be read.
        rooms = sorted({r["room"] for r in alive if r["room"] is not None} |
                       {str(name) for r in alive for name in (r["rooms"] or [])})
        self._add(_Row(str(event.memory_id), agent, "semantic", str(event.content),
                       rating_to_importance(float(event.importance)), "model",
                       event.timestamp, cites=kept,
                       source={"question": str(getattr(event, "question", "")),
                               "rooms": rooms}))

    def _importance_rated(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        self._flush(tx)
        tx.cursor.executemany(
            tx.view.sql(f"UPDATE {M} SET importance = %s, importance_source = 'model' "
                        "WHERE agent_id = %s AND id = %s::uuid"),
            [(rating_to_importance(float(r)), agent, m)
             for m, r in sorted(event.ratings.items())])

    def _memories_retrieved(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        self._flush(tx)
        tx.execute(f"UPDATE {M} SET last_accessed_at = %s, access_count = access_count + 1 "
                   "WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                   (event.timestamp, agent, [str(m) for m in event.memory_ids]))

    def _memories_merged(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        self._flush(tx)
        merged = [str(m) for m in event.merged_ids]
        kept = str(event.kept_id)
        tx.execute(
            f"UPDATE {M} k SET importance = GREATEST(k.importance, d.importance), "
            "access_count = k.access_count + d.access_count, "
            "last_accessed_at = GREATEST(k.last_accessed_at, d.last_accessed_at) "
            f"FROM (SELECT max(importance) AS importance, sum(access_count)::int AS "
            f"access_count, max(last_accessed_at) AS last_accessed_at FROM {M} "
            "WHERE agent_id = %s AND id = ANY(%s::uuid[])) d "
            "WHERE k.agent_id = %s AND k.id = %s::uuid AND d.importance IS NOT NULL",
            (agent, merged, agent, kept))
        tx.execute(f"DELETE FROM {M} WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                   (agent, merged))
        # Reflections that cited a merged memory now cite the one it was folded into.
        citing = tx.rows(f"SELECT id, cites::text[] AS cites FROM {M} WHERE agent_id = %s "
                         "AND cites && %s::uuid[]", (agent, merged))
        for row in citing:
            cites = list(dict.fromkeys(kept if c in merged else c for c in row["cites"]))
            tx.execute(f"UPDATE {M} SET cites = %s::uuid[] WHERE id = %s", (cites, row["id"]))

    def _memories_forgotten(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        self._flush(tx)
        tx.execute(f"DELETE FROM {M} WHERE agent_id = %s AND id = ANY(%s::uuid[])",
                   (agent, [str(m) for m in event.memory_ids]))

    def _fact_remembered(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        room = getattr(event, "room", None)
        if agent is None or getattr(event, "erased", False) or \
                not self.consents(str(event.user_id), room):
            return
        tx.execute(
            f"INSERT INTO {FACTS} (agent_id, fact_id, user_id, key, value, category, "
            "recorded_at, room) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (agent_id, fact_id) DO UPDATE SET key = EXCLUDED.key, "
            "value = EXCLUDED.value, category = EXCLUDED.category, room = EXCLUDED.room",
            (agent, event.fact_id, event.user_id, event.key, event.value, event.category,
             event.timestamp, room))

    def _fact_forgotten(self, event: Any, tx: Tx) -> None:
        agent = self._agent_of(tx, event.originator_id)
        if agent is None:
            return
        tx.execute(f"DELETE FROM {FACTS} WHERE agent_id = %s AND fact_id = %s",
                   (agent, event.fact_id))

    # -- user events --------------------------------------------------------------------------

    def _consent_changed(self, event: Any, tx: Tx) -> None:
        """A person's consent changed: remember it, and forget what they no longer allow."""
        person, memory = str(event.name), str(event.memory)
        room = getattr(event, "room", None)
        if memory not in ("on", "off"):
            raise ValueError(f"memory consent {memory!r}")
        self._flush(tx)
        self._consent[(person, room or "")] = memory
        tx.execute(f"INSERT INTO {CONSENT} (user_id, room, memory) VALUES (%s, %s, %s) "
                   "ON CONFLICT (user_id, room) DO UPDATE SET memory = EXCLUDED.memory",
                   (person, room or "", memory == "on"))
        if memory == "on":
            return
        if room is not None:
            where, args = "room = %s", (room,)
        else:
            # Off by default: everywhere but the rooms they said on for.
            allowed = [r for (p, r), value in self._consent.items()
                       if p == person and r and value == "on"]
            where, args = "(room IS NULL OR NOT room = ANY(%s))", (allowed,)  # type: ignore[assignment]
        agents = "" if self.agents is None else " AND agent_id = ANY(%s)"
        scope = () if self.agents is None else (sorted(self.agents),)
        gone = tx.rows(f"DELETE FROM {M} WHERE author = %s AND {where}{agents} RETURNING id",
                       (person, *args, *scope))
        self._delete_citing(tx, [r["id"] for r in gone])
        tx.execute(f"DELETE FROM {FACTS} WHERE user_id = %s AND {where}{agents}",
                   (person, *args, *scope))


    def _user_forgotten(self, event: Any, tx: Tx) -> None:
        """A person was forgotten (crypto-shredded): what agents formed from their words and
        know of them goes from the view too."""
        person = str(event.name)
        self._flush(tx)
        gone = tx.rows(f"DELETE FROM {M} WHERE author = %s AND author <> agent_id RETURNING id",
                       (person,))
        self._delete_citing(tx, [r["id"] for r in gone])
        tx.execute(f"DELETE FROM {FACTS} WHERE user_id = %s", (person,))


class MemoryProjection:
    """The memory view caught up on demand, in the caller's thread: for tests and tools that
    need it current now (the platform runs ``Memories`` in ``projection:memories``)."""

    def __init__(self, database_url: str, schema: str = SCHEMA,
                 embedder: Embedder | None = None, agents: Iterable[str] | None = None,
                 batch: int = 500) -> None:
        self.schema = schema
        self.runner = Runner(Memories, database_url, schema, batch_size=batch,
                             options={"embedder": embedder, "agents": agents})

    def catch_up(self) -> int:
        """Apply every event recorded so far; returns how many were applied."""
        return self.runner.catch_up()

    def rebuild(self) -> int:
        """Drop the view and apply the whole log again; returns how many events."""
        self.runner.rebuild()
        return self.catch_up()

    def position(self) -> int:
        """The position (notification id) of the last event applied."""
        return self.runner.position()

    def close(self) -> None:
        """Release the connections."""
        self.runner.close()
