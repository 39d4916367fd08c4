"""The event store: eventsourcing 9.5 on PostgreSQL, with snapshots and range reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic, resolve_topic
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from domain.errors import Conflict, Invalid, NotFound
from domain.exports import Record
from domain.rooms import Room
from infra.sealing import KeyRing, SealingMapper, is_sealed

REDACTED_TOPIC = get_topic(Room.MessageRedacted)
FORKED_TOPIC = get_topic(Room.RoomForked)

A = TypeVar("A", bound=Aggregate)


def postgres_env(database_url: str, create_tables: bool = True,
                 pre_ping: bool = False) -> dict[str, str]:
    """eventsourcing's POSTGRES_* settings for a libpq URL (TCP or Unix socket).

    Only the process that starts the platform creates tables: many actors running
    ``CREATE TABLE IF NOT EXISTS`` at once make PostgreSQL fail with "tuple concurrently
    updated", so actors open the store with ``create_tables=False``.

    No pre-ping: checking each pooled connection with a round trip before use cost 14% of
    every save (py-spy over ``bench.append``; bench/README.md), and eventsourcing's recorder
    retries a call that fails on a broken connection (``InterfaceError``/``OperationalError``,
    up to 10 times) on a fresh one anyway; ``pre_ping=True`` is kept for the benchmark.

    Saves go through ``OrderedFunctionRecorder``: one round trip per save instead of a
    pipelined transaction.
    """
    parts = conninfo_to_dict(database_url)
    return {
        "APPLICATION_RECORDER_TOPIC": get_topic(OrderedFunctionRecorder),
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "CREATE_TABLE": "y" if create_tables else "n",
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(parts.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(parts.get("host") or "localhost"),
        "POSTGRES_PORT": str(parts.get("port") or "5432"),
        "POSTGRES_USER": str(parts.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(parts.get("password") or ""),
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_CONN_MAX_AGE": "600",
        "POSTGRES_PRE_PING": "y" if pre_ping else "n",
    }


class OrderedFunctionRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, inserting through one server-side function that keeps the
    table lock.

    eventsourcing can insert events with a PL/pgSQL function in one round trip
    (``POSTGRES_ENABLE_DB_FUNCTIONS``), but its function does not take the ``EXCLUSIVE``
    table lock its pipelined path takes, so two transactions could commit out of
    notification-id order and a projection tailing the log would pass over a gap filled
    later. This recorder's function takes the same lock first, so ids are issued in commit
    order as before; projections and ``since`` keep their gapless guarantee. Measured on
    this machine (2026-12-07, embedded PostgreSQL, ``EventStore.save`` of one event):
    800-1,000 saves/s with the pipelined transaction, about 1,480/s through the function.
    """

    def __init__(self, datastore: PostgresDatastore, *,
                 events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        table = Identifier(self.events_table_name)
        function = Identifier(f"salon_insert_events_ordered_{datastore.originator_id_type}")
        event = Identifier(self.stored_event_type_name)
        self.sql_invoke_pg_function_insert_events = SQL(
            "SELECT * FROM {schema}.{function}((%s))").format(schema=schema, function=function)
        self.pg_function_name_insert_events = \
            f"salon_insert_events_ordered_{datastore.originator_id_type}"
        self.sql_create_pg_function_insert_events = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN "
            "SET LOCAL lock_timeout = '{lock_timeout}s'; "
            "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "RETURN QUERY INSERT INTO {schema}.{table} AS t "
            "(originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
            "RETURNING notification_id; "
            "END; $BODY$").format(
                schema=schema, function=function, event=event, table=table,
                lock_timeout=datastore.lock_timeout, channel=Identifier(self.channel_name))
        self.sql_create_statements[self.create_insert_function_statement_index] = \
            self.sql_create_pg_function_insert_events


class Salon(Application[UUID]):
    """The one eventsourcing application all Salon streams live in.

    With ``keys`` its events' personal fields are sealed at rest (infra/sealing.py); without,
    they are stored as they are (only tools that never hold personal words open it so).
    """

    name = "Salon"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str], keys: KeyRing | None = None) -> None:
        self.keys = keys
        super().__init__(env=env)

    def construct_mapper(self) -> Mapper[UUID]:
        mapper = super().construct_mapper()
        return SealingMapper(mapper, self.keys) if self.keys is not None else mapper


def master_key_path(path: Path | str | None = None) -> Path:
    """The master key file: ``path``, else ``SALON_MASTER_KEY_FILE``, else under
    ``SALON_HOME`` (``.salon`` when unset)."""
    if path is not None:
        return Path(path)
    named = os.environ.get("SALON_MASTER_KEY_FILE")
    if named:
        return Path(named)
    return Path(os.environ.get("SALON_HOME") or ".salon") / "master.key"


def open_app(database_url: str, create_tables: bool = False, pre_ping: bool = False,
             master_key: Path | str | None = None) -> Salon:
    """The sealing application on ``database_url`` (for readers that are not an EventStore)."""
    keys = KeyRing(database_url, master_key_path(master_key))
    if create_tables:
        keys.create_table()
    return Salon(env=postgres_env(database_url, create_tables, pre_ping), keys=keys)


class EventStore:
    """Loads and saves aggregates; reads ranges of a stream. Blocking: call from a thread."""

    def __init__(self, database_url: str, snapshot_interval: int = 100,
                 create_tables: bool = True, pre_ping: bool = False,
                 master_key: Path | str | None = None) -> None:
        self.database_url = database_url
        self.app = open_app(database_url, create_tables, pre_ping, master_key)
        assert self.app.keys is not None
        self.keys: KeyRing = self.app.keys
        self.snapshot_interval = snapshot_interval
        self.table = f"{Salon.name.lower()}_events"
        if create_tables:
            # Redactions are few; this index finds a room's without reading its messages.
            self.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_redactions "
                         f"ON {self.table} (originator_id) WHERE topic = '{REDACTED_TOPIC}'")
            # A redaction looks for the forks that copied the message: forks are few too.
            self.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_forks "
                         f"ON {self.table} (notification_id) WHERE topic = '{FORKED_TOPIC}'")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run one statement on the store's pool; rows as dicts (none for a command)."""
        datastore = self.app.recorder.datastore
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def redacted(self, aggregate_id: UUID) -> dict[str, dict[str, Any]]:
        """The redacted messages of a room: message id -> who redacted it, and at which
        position the redaction was recorded."""
        rows = self.execute(f"SELECT originator_version, state FROM {self.table} "
                            "WHERE originator_id = %s AND topic = %s",
                            (aggregate_id, REDACTED_TOPIC))
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            state = json.loads(bytes(row["state"]))
            found[str(state["message_id"])] = {"by": state.get("by"),
                                               "position": int(row["originator_version"])}
        return found

    def get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        """The aggregate rebuilt from its latest snapshot and later events, or NotFound."""
        try:
            aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(what) from None
        if not isinstance(aggregate, cls):
            raise NotFound(what)
        return aggregate

    def get_at(self, cls: type[A], aggregate_id: UUID, version: int | None, what: str) -> A:
        """The aggregate as it stood at ``version`` (newest when None), from the newest
        snapshot at or before it; NotFound when the stream has no such version."""
        try:
            aggregate = self.app.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(what) from None
        if not isinstance(aggregate, cls):
            raise NotFound(what)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether any event was recorded for ``aggregate_id``."""
        return bool(self.app.recorder.select_events(aggregate_id, desc=True, limit=1))

    def save(self, events: list[Any]) -> None:
        """Append events atomically; a stale version raises Conflict. Snapshots every N events."""
        if not events:
            return
        try:
            self.app.save(*events)
        except IntegrityError as error:
            raise Conflict(f"the stream moved on while saving: {error}") from None
        for aggregate_id, first, last in _spans(events):
            if first // self.snapshot_interval != last // self.snapshot_interval or \
                    last % self.snapshot_interval == 0:
                self.app.take_snapshot(aggregate_id, version=last)

    def snapshot(self, aggregate_id: UUID, version: int) -> bool:
        """Snapshot the stream at ``version`` unless its newest snapshot is there already."""
        newest = list(self.app.snapshots.get(aggregate_id, desc=True, limit=1)) \
            if self.app.snapshots is not None else []
        if newest and int(newest[0].originator_version) >= version:
            return False
        self.app.take_snapshot(aggregate_id, version=version)
        return True

    def events(self, aggregate_id: UUID, after: int = 0, up_to: int | None = None,
               limit: int | None = None, newest: bool = False) -> list[Any]:
        """Domain events of one stream with ``after < version <= up_to``, oldest first."""
        found = self.app.events.get(aggregate_id, gt=after or None, lte=up_to, desc=newest,
                                    limit=limit)
        listed = list(found)
        if newest:
            listed.reverse()
        return self.with_redactions(aggregate_id, listed)

    def with_redactions(self, aggregate_id: UUID, events: list[Any]) -> list[Any]:
        """``events`` with the text of every redacted message blanked and marked redacted.

        A redaction is recorded after the message, so a read of an earlier range looks it up
        (through the partial index). Every reader of a room goes through here: history, a
        join's backlog, replay, forks, exports, agents' context and digests.
        """
        if not any(isinstance(e, Room.MessagePosted) for e in events):
            return events
        redacted = self.redacted(aggregate_id)
        for e in events:
            if isinstance(e, Room.MessagePosted) and e.message_id in redacted:
                e.__dict__["text"] = ""
                e.__dict__["redacted"] = True
        return events

    def records(self, aggregate_id: UUID) -> list[Record]:
        """The stream's events as export records (version, topic, JSON state), opened.

        An export is for its reader: sealed fields are opened (a forgotten person's read as
        erased) and redacted messages are blank, so the file never depends on this
        installation's keys and never carries what was taken back.
        """
        stored = list(self.app.recorder.select_events(aggregate_id))
        mapper = self.app.mapper
        events = self.with_redactions(aggregate_id, [mapper.to_domain_event(e) for e in stored])
        plain = mapper.transcoder
        out = []
        for record, event in zip(stored, events, strict=True):
            state = {k: v for k, v in vars(event).items()
                     if k not in ("originator_id", "originator_version")}
            out.append(Record(record.originator_version, record.topic,
                              plain.encode(state).decode()))
        return out

    def insert_records(self, aggregate_id: UUID, records: list[Record],
                       more: dict[UUID, list[Record]] | None = None) -> None:
        """Append a whole stream (and ``more`` streams) in one transaction: all or none."""
        streams = {aggregate_id: records, **(more or {})}
        stored = [StoredEvent(originator_id=stream, originator_version=r.version,
                              topic=r.topic, state=r.state.encode())
                  for stream, listed in streams.items() for r in listed]
        sealed = []
        for record in stored:
            try:
                resolve_topic(record.topic)
                state = json.loads(record.state)
                if any(is_sealed(v) for v in (state.values() if isinstance(state, dict) else ())):
                    raise Invalid("it holds sealed fields; export it opened from its Salon")
                # Sealed again here, with this installation's keys and this stream's id.
                sealed.append(self.app.mapper.to_stored_event(
                    self.app.mapper.to_domain_event(record)))
            except Exception as error:  # noqa: BLE001 - any undecodable event refuses the file
                raise Invalid(f"event {record.originator_version} cannot be read by this "
                              f"Salon ({type(error).__name__}: {error})") from None
        try:
            self.app.recorder.insert_events(sealed)
        except IntegrityError:
            raise Conflict("that stream exists already in this installation") from None

    def states_of(self, event_class: type[Any]) -> list[tuple[UUID, int, dict[str, Any]]]:
        """(stream id, version, decoded state) of every recorded event of one class."""
        sql = f"SELECT originator_id, originator_version, state FROM {self.table} " \
              "WHERE topic = %s ORDER BY notification_id"
        datastore = self.app.recorder.datastore
        topic = get_topic(event_class)
        with datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, (topic,))
            rows = cursor.fetchall()
        out = []
        for row in rows:
            state = json.loads(bytes(row["state"]))
            if isinstance(self.app.mapper, SealingMapper):
                self.app.mapper.open_state(topic, row["originator_id"], state)
            out.append((row["originator_id"], row["originator_version"], state))
        return out

    def rooms_written_by(self, author: str) -> list[str]:
        """Names of the rooms where ``author`` posted (reads the log: a rare, admin-paced
        call; the author's name is stored in the clear, their words are not)."""
        sql = (f"SELECT DISTINCT convert_from(c.state, 'UTF8')::jsonb ->> 'name' AS name "
               f"FROM {self.table} e JOIN {self.table} c ON c.originator_id = e.originator_id "
               "AND c.originator_version = 1 WHERE e.topic = %s "
               "AND convert_from(e.state, 'UTF8')::jsonb ->> 'author_id' = %s")
        rows = self.execute(sql, (get_topic(Room.MessagePosted), author))
        return sorted(str(r["name"]) for r in rows if r["name"])

    def forget(self, subjects: list[str], wait: bool = True) -> int:
        """Destroy the data keys of ``subjects`` (crypto-shredding); see KeyRing.forget."""
        return self.keys.forget(subjects, wait=wait)

    def close(self) -> None:
        """Release database connections."""
        self.keys.close()
        self.app.close()


def _spans(events: list[Any]) -> list[tuple[UUID, int, int]]:
    spans: dict[UUID, list[int]] = {}
    for e in events:
        version = int(e.originator_version)
        span = spans.setdefault(e.originator_id, [version - 1, version])
        span[1] = max(span[1], version)
    return [(k, v[0], v[1]) for k, v in spans.items()]
