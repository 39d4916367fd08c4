"""Threads: every room's messages with their reply chains, full-text search, archive state,
stats (message count, bytes, where it was forked from) and its generated title and summary.

Tables (in the view's schema): ``threads`` (one row per room) and ``messages`` (one row per
posted message, with the root of its reply chain and its depth, and a ``tsvector`` for
PostgreSQL full-text search). ``authors`` counts each author's messages and bytes per room,
which per-user quotas read.

Titles, summaries and archiving come from the room's ``Thread`` stream (``domain.threads``:
titles and summaries written by the job worker, archiving by an owner's or admin's command).
A room archived in its own stream (``RoomArchived``: closed to posts) is archived here too.
"""

from __future__ import annotations

from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from domain.errors import Invalid, NotFound
from domain.ids import room_id
from domain.rooms import Room
from domain.threads import Thread
from domain.users import User
from projections.views import Projection, Reader, Tx, View

INSERT_THREAD = """
INSERT INTO {s}.threads (room_id, name, topic, visibility, owner_id, created_at,
                         forked_from, forked_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_MESSAGE = """
INSERT INTO {s}.messages (room_id, position, message_id, author_id, author_kind, text,
                          reply_to, root_id, depth, bytes, posted_at, redacted, erased)
SELECT %(room)s, %(position)s, %(id)s, %(author)s, %(kind)s, %(text)s, %(reply_to)s,
       COALESCE(p.root_id, %(id)s), COALESCE(p.depth + 1, 0), %(bytes)s, %(at)s,
       %(redacted)s, %(erased)s
FROM (SELECT 1) AS one
LEFT JOIN {s}.messages AS p ON p.room_id = %(room)s AND p.message_id = %(reply_to)s"""
COUNT_MESSAGE = """
UPDATE {s}.threads SET message_count = message_count + 1, bytes = bytes + %(bytes)s,
       last_position = %(position)s, last_message_at = %(at)s
WHERE room_id = %(room)s"""
COUNT_AUTHOR = """
INSERT INTO {s}.authors (author_id, room_id, messages, bytes) VALUES (%(author)s, %(room)s, 1,
       %(bytes)s)
ON CONFLICT (author_id, room_id) DO UPDATE
SET messages = {s}.authors.messages + 1, bytes = {s}.authors.bytes + EXCLUDED.bytes"""


class ThreadsView(View):
    """Tables of the threads read model."""

    ddl = (
        """CREATE TABLE IF NOT EXISTS {s}.threads (
            room_id uuid PRIMARY KEY,
            name text NOT NULL,
            topic text NOT NULL DEFAULT '',
            visibility text NOT NULL DEFAULT 'public',
            owner_id text NOT NULL DEFAULT '',
            created_at timestamptz,
            forked_from text,
            forked_at integer,
            members integer NOT NULL DEFAULT 0,
            archived boolean NOT NULL DEFAULT false,
            archived_at timestamptz,
            closed boolean NOT NULL DEFAULT false,
            message_count integer NOT NULL DEFAULT 0,
            bytes bigint NOT NULL DEFAULT 0,
            last_position integer NOT NULL DEFAULT 0,
            last_message_at timestamptz,
            title text,
            title_position integer,
            summary text,
            summary_position integer,
            purges integer NOT NULL DEFAULT 0)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS threads_name ON {s}.threads (name)",
        """CREATE TABLE IF NOT EXISTS {s}.messages (
            room_id uuid NOT NULL,
            position integer NOT NULL,
            message_id text NOT NULL,
            author_id text NOT NULL,
            author_kind text NOT NULL,
            text text NOT NULL,
            reply_to text,
            root_id text NOT NULL,
            depth integer NOT NULL,
            bytes integer NOT NULL,
            posted_at timestamptz NOT NULL,
            redacted boolean NOT NULL DEFAULT false,
            erased boolean NOT NULL DEFAULT false,
            search tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
            PRIMARY KEY (room_id, position),
            UNIQUE (room_id, message_id))""",
        "CREATE INDEX IF NOT EXISTS messages_search ON {s}.messages USING gin (search)",
        "CREATE INDEX IF NOT EXISTS messages_root ON {s}.messages (room_id, root_id, position)",
        # Columns added since the first release (existing views gain them in place).
        "ALTER TABLE {s}.threads ADD COLUMN IF NOT EXISTS purges integer NOT NULL DEFAULT 0",
        "ALTER TABLE {s}.messages ADD COLUMN IF NOT EXISTS redacted boolean NOT NULL "
        "DEFAULT false",
        "ALTER TABLE {s}.messages ADD COLUMN IF NOT EXISTS erased boolean NOT NULL DEFAULT false",
        """CREATE TABLE IF NOT EXISTS {s}.authors (
            author_id text NOT NULL,
            room_id uuid NOT NULL,
            messages integer NOT NULL,
            bytes bigint NOT NULL,
            PRIMARY KEY (author_id, room_id))""",
    )


class Threads(Projection[ThreadsView]):
    """Rooms as threads of messages."""

    name = "threads"
    view_class = ThreadsView

    @singledispatchmethod
    def apply(self, event: object, tx: Tx) -> None:
        """Events this view ignores."""

    @apply.register
    def _(self, event: Room.RoomCreated, tx: Tx) -> None:
        _begin(tx, event.originator_id)
        tx.execute(INSERT_THREAD, (event.originator_id, event.name, event.topic,
                                   event.visibility, event.owner_id, event.timestamp,
                                   None, None))

    @apply.register
    def _(self, event: Room.RoomForked, tx: Tx) -> None:
        _begin(tx, event.originator_id)
        tx.execute(INSERT_THREAD, (event.originator_id, event.name, event.topic,
                                   event.visibility, event.owner_id, event.timestamp,
                                   event.parent_room_id, event.at_position))

    @apply.register
    def _(self, event: Room.MemberJoined, tx: Tx) -> None:
        tx.execute("UPDATE {s}.threads SET members = members + 1 WHERE room_id = %s",
                   (event.originator_id,))

    @apply.register
    def _(self, event: Room.MemberLeft, tx: Tx) -> None:
        tx.execute("UPDATE {s}.threads SET members = members - 1 WHERE room_id = %s",
                   (event.originator_id,))

    @apply.register
    def _(self, event: Room.MessagePosted, tx: Tx) -> None:
        values = {"room": event.originator_id, "position": event.originator_version,
                  "id": event.message_id, "author": event.author_id,
                  "kind": getattr(event, "author_kind", "human"), "text": event.text,
                  "reply_to": event.reply_to, "bytes": len(event.text.encode()),
                  "at": event.timestamp, "redacted": bool(getattr(event, "redacted", False)),
                  "erased": bool(getattr(event, "erased", False))}
        tx.execute(INSERT_MESSAGE, values)
        tx.execute(COUNT_MESSAGE, values)
        tx.execute(COUNT_AUTHOR, values)

    @apply.register
    def _(self, event: Room.RoomArchived, tx: Tx) -> None:
        tx.execute("UPDATE {s}.threads SET archived = true, closed = true, "
                   "archived_at = coalesce(archived_at, %s) WHERE room_id = %s",
                   (event.timestamp, event.originator_id))

    @apply.register
    def _(self, event: Thread.ThreadArchived, tx: Tx) -> None:
        tx.execute("UPDATE {s}.threads SET archived = true, archived_at = %s WHERE room_id = %s",
                   (event.timestamp, _room_of(event.room)))

    @apply.register
    def _(self, event: Thread.ThreadUnarchived, tx: Tx) -> None:
        tx.execute("UPDATE {s}.threads SET archived = false, archived_at = NULL "
                   "WHERE room_id = %s", (_room_of(event.room),))

    @apply.register
    def _(self, event: Thread.TitleGenerated, tx: Tx) -> None:
        if not getattr(event, "erased", False):  # its key went with a redaction: made anew
            _digest(tx, "title", event.room, event.title, event.up_to_position)

    @apply.register
    def _(self, event: Thread.SummaryGenerated, tx: Tx) -> None:
        if not getattr(event, "erased", False):
            _digest(tx, "summary", event.room, event.text, event.up_to_position)

    @apply.register
    def _(self, event: Room.MessageRedacted, tx: Tx) -> None:
        tx.execute("UPDATE {s}.messages SET text = '', redacted = true "
                   "WHERE room_id = %s AND message_id = %s",
                   (event.originator_id, event.message_id))
        _purge_digests(tx, "room_id = %s", (event.originator_id,))

    @apply.register
    def _(self, event: User.UserForgotten, tx: Tx) -> None:
        tx.execute("UPDATE {s}.messages SET text = '', erased = true WHERE author_id = %s "
                   "AND author_kind = 'human'", (event.name,))
        _purge_digests(tx, "room_id IN (SELECT room_id FROM {s}.authors WHERE author_id = %s)",
                       (event.name,))


def _begin(tx: Tx, room: UUID) -> None:
    """A room's stream starts: whatever this view held for its id goes (a stream that was
    removed and imported again starts afresh rather than stopping the view on a duplicate)."""
    for table in ("messages", "authors", "threads"):
        tx.execute(f"DELETE FROM {{s}}.{table} WHERE room_id = %s", (room,))


def _purge_digests(tx: Tx, where: str, params: tuple[Any, ...]) -> None:
    """Titles and summaries may quote what was taken back: drop them; the planner makes them
    again (``purges`` gives the new jobs new ids)."""
    tx.execute("UPDATE {s}.threads SET title = NULL, title_position = NULL, summary = NULL, "
               f"summary_position = NULL, purges = purges + 1 WHERE {where}", params)


def _room_of(room: str) -> UUID | None:
    try:
        return room_id(room)
    except Invalid:
        return None  # not a room this view can know: the update matches no row


def _digest(tx: Tx, column: str, room: str, text: str, position: int) -> None:
    # An older job finishing late never replaces a newer title or summary.
    tx.execute(f"UPDATE {{s}}.threads SET {column} = %s, {column}_position = %s "
               f"WHERE room_id = %s AND coalesce({column}_position, -1) <= %s",
               (text, position, _room_of(room), position))


# -- queries ---------------------------------------------------------------------------------

THREAD_COLUMNS = ("name, topic, visibility, owner_id, created_at, forked_from, forked_at, "
                  "members, archived, archived_at, closed, message_count, bytes, last_position, "
                  "last_message_at, title, title_position, summary, summary_position")
MESSAGE_COLUMNS = ("position, message_id, author_id, author_kind, text, reply_to, root_id, "
                   "depth, bytes, posted_at, redacted, erased")


def listing(reader: Reader, archived: bool | None = False, limit: int = 100
            ) -> list[dict[str, Any]]:
    """Threads, newest activity first: open ones (``archived=False``), archived, or all."""
    where = "" if archived is None else "WHERE archived = %s"
    params: tuple[Any, ...] = () if archived is None else (archived,)
    return _plain(reader.rows(
        f"SELECT {THREAD_COLUMNS} FROM {{s}}.threads {where} "
        "ORDER BY coalesce(last_message_at, created_at) DESC, name LIMIT %s",
        (*params, limit)))


def thread(reader: Reader, room: str) -> dict[str, Any]:
    """One room's thread row (stats, archive state, title, summary), or NotFound."""
    rows = reader.rows(f"SELECT {THREAD_COLUMNS} FROM {{s}}.threads WHERE room_id = %s",
                       (room_id(room),))
    if not rows:
        raise NotFound(f"room {room!r} has no thread (yet); `salon rooms list` shows the rooms")
    return _plain(rows)[0]


def messages(reader: Reader, room: str, after: int = 0, limit: int = 100
             ) -> list[dict[str, Any]]:
    """A room's messages after position ``after``, oldest first."""
    return _plain(reader.rows(
        f"SELECT {MESSAGE_COLUMNS} FROM {{s}}.messages WHERE room_id = %s AND position > %s "
        "ORDER BY position LIMIT %s", (room_id(room), after, limit)))


def chain(reader: Reader, room: str, message_id: str) -> list[dict[str, Any]]:
    """The reply chain that leads to ``message_id``: its root first, the message last."""
    rows = reader.rows(
        f"""WITH RECURSIVE up AS (
              SELECT {MESSAGE_COLUMNS}, 0 AS step FROM {{s}}.messages
              WHERE room_id = %(room)s AND message_id = %(id)s
              UNION ALL
              SELECT m.position, m.message_id, m.author_id, m.author_kind, m.text, m.reply_to,
                     m.root_id, m.depth, m.bytes, m.posted_at, m.redacted, m.erased,
                     up.step + 1
              FROM {{s}}.messages AS m JOIN up ON m.room_id = %(room)s
                                              AND m.message_id = up.reply_to)
            SELECT {MESSAGE_COLUMNS} FROM up ORDER BY step DESC""",
        {"room": room_id(room), "id": message_id})
    if not rows:
        raise NotFound(f"message {message_id!r} is not in room {room!r}")
    return _plain(rows)


def replies(reader: Reader, room: str, root_id: str) -> list[dict[str, Any]]:
    """Every message of the reply tree rooted at ``root_id``, in posting order."""
    return _plain(reader.rows(
        f"SELECT {MESSAGE_COLUMNS} FROM {{s}}.messages WHERE room_id = %s AND root_id = %s "
        "ORDER BY position", (room_id(room), root_id)))


def search(reader: Reader, query: str, room: str | None = None, limit: int = 20
           ) -> list[dict[str, Any]]:
    """Messages matching ``query`` (web-search syntax: words, "phrases", -not, or), best first."""
    if not query.strip():
        raise Invalid("a search needs some words")
    where = "AND m.room_id = %(room)s" if room is not None else ""
    return _plain(reader.rows(
        f"""SELECT t.name AS room, m.position, m.message_id, m.author_id, m.text,
                   ts_rank(m.search, q) AS rank,
                   ts_headline('english', m.text, q, 'MaxFragments=2') AS headline
            FROM {{s}}.messages AS m JOIN {{s}}.threads AS t ON t.room_id = m.room_id,
                 websearch_to_tsquery('english', %(q)s) AS q
            WHERE m.search @@ q {where}
            ORDER BY rank DESC, m.posted_at DESC LIMIT %(limit)s""",
        {"q": query, "room": room_id(room) if room is not None else None, "limit": limit}))


def usage(reader: Reader, room: str | None = None, author: str | None = None
          ) -> dict[str, int]:
    """Messages and bytes of a room, of an author (everywhere), or of an author in a room."""
    clauses, params = [], []
    if room is not None:
        clauses.append("room_id = %s")
        params.append(room_id(room))
    if author is not None:
        clauses.append("author_id = %s")
        params.append(author)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    row = reader.rows("SELECT coalesce(sum(messages), 0) AS messages, "
                      f"coalesce(sum(bytes), 0) AS bytes FROM {{s}}.authors {where}", params)[0]
    return {"messages": int(row["messages"]), "bytes": int(row["bytes"])}


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat()
            elif isinstance(value, UUID):
                row[key] = str(value)
    return rows
