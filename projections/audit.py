"""The audit log: one row per event of the log, each row's hash covering the row before it.

A row says who did what to what, and when: ``actor`` (``user:NAME``, ``agent:NAME`` or
``system``), ``action`` (the event's kind, e.g. ``model_called``), ``target`` (``room:NAME``,
``agent:NAME``, ``model:PROVIDER/MODEL``, ``tool:NAME``, …), ``at`` (the event's time) and
``details`` (every field of the event as canonical JSON, except people's words: a personal
field (``domain/personal.py``: message text, what a model saw and said, a tool's arguments
and result, facts) is held as ``{"$personal": FIELD}``, and the audit's pages read it back
from the log when they are shown (``store_opener``). So the audit never holds a copy of
words that could outlive their redaction or their author's erasure, and its hash chain
stays whole when they go). ``agent``, ``room`` and
``user`` name who and where an event concerns, for filtering: an agent's turns, model calls,
tool calls, memories and messages all carry its name.

``hash`` is SHA-256 over the previous row's hash and this row's content, so altering, removing
or adding a row breaks the chain where it happened (``projections.verification``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from domain import personal
from domain.errors import Invalid
from domain.memories import memory_stream_id
from domain.threads import thread_id
from projections.views import Projection, Reader, Tx, View, fields_of, topic_of

GENESIS = "0" * 64
COLUMNS = ("position", "stream_id", "version", "at", "actor", "action", "target", "agent",
           "room", "user_name", "details", "prev_hash", "hash")
# The stream classes whose name fills the ``agent`` or ``room`` column of their rows.
STREAM_KINDS = {"Room": "room", "Agent": "agent", "User": "user", "MemoryStream": "agent",
                "Thread": "room"}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")

INSERT_ENTRY = f"""INSERT INTO {{s}}.entries ({", ".join(COLUMNS)})
VALUES ({", ".join(["%s"] * len(COLUMNS))})"""


class AuditView(View):
    """Tables of the audit log: its entries, names of streams, and turns still open."""

    ddl = (
        """CREATE TABLE IF NOT EXISTS {s}.entries (
            position bigint PRIMARY KEY,
            stream_id uuid NOT NULL,
            version integer NOT NULL,
            at timestamptz NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            target text NOT NULL,
            agent text,
            room text,
            user_name text,
            details text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS entries_agent ON {s}.entries (agent, position)",
        "CREATE INDEX IF NOT EXISTS entries_room ON {s}.entries (room, position)",
        "CREATE INDEX IF NOT EXISTS entries_user ON {s}.entries (user_name, position)",
        "CREATE INDEX IF NOT EXISTS entries_action ON {s}.entries (action, position)",
        "CREATE INDEX IF NOT EXISTS entries_at ON {s}.entries (at)",
        """CREATE TABLE IF NOT EXISTS {s}.streams (
            stream_id uuid PRIMARY KEY, kind text NOT NULL, name text NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {s}.turns (
            stream_id uuid NOT NULL, turn_id text NOT NULL, room text, user_name text,
            PRIMARY KEY (stream_id, turn_id))""",
    )


def canonical(value: Any) -> str:
    """The one JSON text of ``value`` that hashes are computed over."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (UUID, datetime)):
        return str(value) if isinstance(value, UUID) else value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 of the previous row's hash and this row's content (every column but hashes)."""
    content = [row["position"], str(row["stream_id"]), row["version"],
               _plain(row["at"]), row["actor"], row["action"], row["target"], row["agent"],
               row["room"], row["user_name"], row["details"]]
    text = prev_hash + "\n" + json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


PERSONAL = "$personal"


def without_personal(topic: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with every personal field replaced by a reference to it, and without the
    read-time marks (``erased``, ``redacted``) that a later read may add."""
    rule = personal.rule_for(topic)
    out = {k: v for k, v in fields.items() if k not in ("erased", "redacted")}
    for field in rule.fields if rule is not None else ():
        if out.get(field) is not None:
            out[field] = {PERSONAL: field}
    return out


Opener = Any  # (stream_id, version) -> the event's fields as the log reads them now, or None


def store_opener(store: Any) -> Opener:
    """Reads an audit row's personal fields back from the event store (redactions and
    erasures applied: what was taken back reads as taken back)."""
    def open_fields(stream_id: Any, version: int) -> dict[str, Any] | None:
        found = store.events(UUID(str(stream_id)), after=version - 1, up_to=version)
        return fields_of(found[0]) if found else None
    return open_fields


def _opened(details: dict[str, Any], row: dict[str, Any], opener: Opener | None
            ) -> dict[str, Any]:
    refs = [k for k, v in details.items() if isinstance(v, dict) and set(v) == {PERSONAL}]
    if not refs or opener is None:
        return details
    fields = opener(row["stream_id"], int(row["version"])) or {}
    out = dict(details)
    for key in refs:
        out[key] = fields.get(key, "")
    for mark in ("erased", "redacted"):
        if fields.get(mark):
            out[mark] = True
    return out


def kind_of_event(name: str) -> str:
    """``ModelCalled`` -> ``model_called``."""
    return _SNAKE.sub("_", name).lower()


class Audit(Projection[AuditView]):
    """Every event of the log as a row of the hash-chained audit log."""

    name = "audit"
    view_class = AuditView
    every_event = True

    def __init__(self, view: AuditView) -> None:
        super().__init__(view)
        self.last_hash = GENESIS
        self.names: dict[UUID, tuple[str, str]] | None = None
        self.turns: dict[tuple[UUID, str], tuple[str | None, str | None]] | None = None
        self.cached_at = -1  # the position up to which ``names`` and ``turns`` are known

    def begin(self, tx: Tx) -> None:
        if tx.position != self.cached_at:
            self.abort()  # another runner applied events since: what this one knows is stale
        found = tx.rows("SELECT hash FROM {s}.entries ORDER BY position DESC LIMIT 1")
        self.last_hash = found[0]["hash"] if found else GENESIS
        if self.names is None:
            self.names = {r["stream_id"]: (r["kind"], r["name"])
                          for r in tx.rows("SELECT stream_id, kind, name FROM {s}.streams")}
        if self.turns is None:
            self.turns = {(r["stream_id"], r["turn_id"]): (r["room"], r["user_name"])
                          for r in tx.rows("SELECT * FROM {s}.turns")}

    def abort(self) -> None:
        self.names = None
        self.turns = None

    @singledispatchmethod
    def apply(self, event: object, tx: Tx) -> None:
        assert self.names is not None and self.turns is not None, "begin() reads them first"
        topic = topic_of(event)
        _, _, qualname = topic.partition(":")
        stream_class, _, event_name = qualname.rpartition(".")
        fields = fields_of(event)
        stream: UUID = event.originator_id  # type: ignore[attr-defined]
        version = int(event.originator_version)  # type: ignore[attr-defined]
        if version == 1:
            self._name_stream(stream, stream_class, fields, tx)
        who = self._describe(stream, stream_class, event_name, fields, tx)
        row = {"position": tx.position, "stream_id": stream, "version": version,
               "at": event.timestamp, "actor": who[0],  # type: ignore[attr-defined]
               "action": kind_of_event(event_name), "target": who[1], "agent": who[2],
               "room": who[3], "user_name": who[4],
               "details": canonical(without_personal(topic, fields))}
        row["prev_hash"] = self.last_hash
        row["hash"] = self.last_hash = row_hash(self.last_hash, row)
        tx.execute(INSERT_ENTRY, [row[c] for c in COLUMNS])
        self.cached_at = tx.position

    def _name_stream(self, stream: UUID, stream_class: str, fields: dict[str, Any],
                     tx: Tx) -> None:
        assert self.names is not None
        kind = STREAM_KINDS.get(stream_class, stream_class.lower())
        definition = fields.get("definition")
        name = fields.get("name") or fields.get("agent") or fields.get("room") or \
            (definition.get("name") if isinstance(definition, dict) else None)
        if not isinstance(name, str):
            return
        named = [(stream, kind, name)]
        try:  # streams whose ids derive from this one's name
            if stream_class == "Agent":
                named.append((memory_stream_id(name), "agent", name))
            elif stream_class == "Room":
                named.append((thread_id(name), "room", name))
        except Invalid:
            pass
        for key, kind_, name_ in named:
            if key not in self.names:
                self.names[key] = (kind_, name_)
                tx.execute("INSERT INTO {s}.streams VALUES (%s, %s, %s) "
                           "ON CONFLICT DO NOTHING", (key, kind_, name_))

    def _describe(self, stream: UUID, stream_class: str, event_name: str,
                  fields: dict[str, Any], tx: Tx
                  ) -> tuple[str, str, str | None, str | None, str | None]:
        """(actor, target, agent, room, user) of one event."""
        assert self.names is not None and self.turns is not None
        kind, name = self.names.get(stream, (STREAM_KINDS.get(stream_class, "stream"), None))
        agent = name if kind == "agent" else None
        room = name if kind == "room" else None
        user = name if kind == "user" else None
        target = f"{kind}:{name}" if name else f"stream:{stream}"
        actor = "system"
        if stream_class == "Room":
            actor, agent, user = self._room_actor(event_name, fields, agent, user)
        elif stream_class == "Agent":
            actor = f"agent:{name}"
            turn_id = str(fields.get("turn_id", ""))
            if event_name == "TurnStarted":
                trigger = fields.get("trigger") if isinstance(fields.get("trigger"), dict) else {}
                room = str(fields.get("room_id") or "") or None
                by = trigger.get("by") if isinstance(trigger, dict) else None
                user = str(by) if by else None
                self.turns[(stream, turn_id)] = (room, user)
                tx.execute("INSERT INTO {s}.turns VALUES (%s, %s, %s, %s) "
                           "ON CONFLICT DO NOTHING", (stream, turn_id, room, user))
                target = f"room:{room}"
            elif turn_id and (stream, turn_id) in self.turns:
                room, user = self.turns[(stream, turn_id)]
                if event_name in ("TurnCompleted", "TurnFailed"):
                    del self.turns[(stream, turn_id)]
                    tx.execute("DELETE FROM {s}.turns WHERE stream_id = %s AND turn_id = %s",
                               (stream, turn_id))
            if event_name == "ModelCalled":
                target = f"model:{fields.get('provider')}/{fields.get('model')}"
            elif event_name == "ToolExecuted":
                target = f"tool:{fields.get('tool')}"
            elif event_name == "GuardrailFlagged":
                target = f"guard:{fields.get('check')}"
            elif event_name == "GuardOverrideSet":
                actor = f"user:{fields.get('by')}"
                user = str(fields.get("by") or "") or None
            elif event_name in ("TurnCompleted", "TurnFailed") and room:
                target = f"room:{room}"
            elif event_name in ("AgentDefined",):
                actor = f"user:{fields.get('owner_id', 'admin')}"
                user = str(fields.get("owner_id") or "") or None
            elif event_name in ("AgentPaused", "AgentResumed", "AgentStopped"):
                actor = f"user:{fields.get('by')}"
                user = str(fields.get("by") or "") or None
        elif stream_class == "User" and event_name == "UserForgotten":
            actor = f"user:{fields.get('by')}"
        elif stream_class == "MemoryStream":
            actor = f"agent:{name}" if name else "system"
            user = str(fields.get("user_id") or "") or None
        elif stream_class == "Thread":
            by = fields.get("by")
            actor = f"user:{by}" if by else "jobs"
            user = str(by) if by else None
        return actor, target, agent, room, user

    @staticmethod
    def _room_actor(event_name: str, fields: dict[str, Any], agent: str | None,
                    user: str | None) -> tuple[str, str | None, str | None]:
        if event_name in ("RoomCreated", "RoomForked"):
            owner = str(fields.get("owner_id"))
            return f"user:{owner}", agent, owner
        if event_name == "MemberJoined":
            member = str(fields.get("member_id"))
            if fields.get("member_kind") == "agent":
                return f"agent:{member}", member, user
            return f"user:{member}", agent, member
        if event_name == "MemberLeft":
            member = str(fields.get("member_id"))
            return f"member:{member}", agent, member
        if event_name == "MessagePosted":
            author = str(fields.get("author_id"))
            if fields.get("author_kind") == "agent":
                return f"agent:{author}", author, user
            return f"user:{author}", agent, author
        if event_name == "FeedbackGiven":
            member = str(fields.get("member_id"))
            return f"user:{member}", agent, member
        if event_name == "GuardPolicySet":
            by = str(fields.get("by") or "")
            return (f"user:{by}" if by else "system"), agent, by or user
        if event_name in ("MessageRedacted", "RedactionsKept"):
            by = str(fields.get("by"))
            return f"user:{by}", agent, by
        if event_name == "AgentOverridden":
            return "system", str(fields.get("agent") or "") or None, user
        return "system", agent, user


# -- queries and exports ---------------------------------------------------------------------

FILTERS = ("agent", "room", "user", "action", "since", "until")


def _where(filters: dict[str, Any], after: int = 0) -> tuple[str, list[Any]]:
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise Invalid(f"unknown audit filter {sorted(unknown)[0]!r}; use {', '.join(FILTERS)}")
    clauses, params = ["position > %s"], [after]
    for key in ("agent", "room", "action"):
        if filters.get(key):
            clauses.append(f"{key} = %s")
            params.append(filters[key])
    if filters.get("user"):
        clauses.append("user_name = %s")
        params.append(filters["user"])
    for key, op in (("since", ">="), ("until", "<")):
        if filters.get(key):
            clauses.append(f"at {op} %s")
            params.append(parse_time(str(filters[key])))
    return " AND ".join(clauses), params


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time (UTC when no zone is given), or Invalid."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{text!r} is not a date or time; use ISO 8601, e.g. 2025-01-31 or "
                      "2025-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def entries(reader: Reader, after: int = 0, limit: int = 100, opener: Opener | None = None,
            **filters: Any) -> list[dict[str, Any]]:
    """Rows of the audit log after position ``after``, oldest first, filtered; with an
    ``opener``, personal fields are read back from the log."""
    where, params = _where(filters, after)
    rows = reader.rows(f"SELECT * FROM {{s}}.entries WHERE {where} ORDER BY position LIMIT %s",
                       [*params, limit])
    return [plain_row(r, opener) for r in rows]


def plain_row(row: dict[str, Any], opener: Opener | None = None) -> dict[str, Any]:
    """A row as plain JSON-able data (``details`` parsed, personal fields opened when an
    ``opener`` is given)."""
    out = dict(row)
    out["stream_id"] = str(row["stream_id"])
    out["at"] = _plain(row["at"])
    out["user"] = out.pop("user_name")
    out["details"] = _opened(json.loads(row["details"]), row, opener)
    return out


def export(reader: Reader, fmt: str, opener: Opener | None = None,
           **filters: Any) -> Iterator[str]:
    """The filtered audit log as JSONL lines or CSV text, chunk by chunk."""
    if fmt not in ("jsonl", "csv"):
        raise Invalid(f"export format is 'jsonl' or 'csv', not {fmt!r}")
    where, params = _where(filters)
    rows = reader.stream(f"SELECT * FROM {{s}}.entries WHERE {where} ORDER BY position", params)
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(plain_row(row, opener), ensure_ascii=False, sort_keys=True) + "\n"
        return
    header = [c if c != "user_name" else "user" for c in COLUMNS]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_plain(row[c]) for c in COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
