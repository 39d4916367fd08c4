"""What every read model shares: a view (its tables and its tracking record, in one PostgreSQL
schema) and a projection that applies events to it exactly once.

A view is an eventsourcing ``PostgresTrackingRecorder``: its tracking table holds the position
(notification id) of the last event applied. A batch of events is applied in one transaction
that first locks the tracking row, skips every event at or below it, and moves it to the last
event applied, so an event is never applied twice, whoever runs the batch and however often.
Projections are ``eventsourcing.projection.Projection`` subclasses, so eventsourcing's own
``ProjectionRunner`` can run them too; ``projections.runner.Runner`` adds batching and lag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import singledispatchmethod
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as EventsourcingProjection
from eventsourcing.utils import get_topic
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier, Literal
from psycopg_pool import ConnectionPool

from domain.errors import Invalid
from infra.store import Salon, postgres_env

APPLICATION = Salon.name
SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
# Bookkeeping of the event store, left out of a read model's copy of an event's fields.
BOOKKEEPING = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def check_schema(schema: str) -> str:
    """Return ``schema`` if it is a plain lowercase identifier, else raise Invalid."""
    if not SCHEMA.match(schema):
        raise Invalid(f"schema name {schema!r} is not valid: use up to 48 lowercase letters, "
                      "digits or '_', not starting with a digit")
    return schema


@dataclass(frozen=True)
class Undecodable:
    """A stored event this code cannot rebuild (say, its class moved): its topic and raw state."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: dict[str, Any]
    error: str

    @property
    def timestamp(self) -> datetime:
        """When it was recorded (from its state), or the epoch when the state does not say."""
        value = self.state.get("timestamp")
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                pass
        return datetime.fromtimestamp(0, UTC)


def topic_of(event: object) -> str:
    """The stored topic of an event (``module:Class.Event``)."""
    return event.topic if isinstance(event, Undecodable) else get_topic(type(event))


def fields_of(event: object) -> dict[str, Any]:
    """An event's own fields, without the store's bookkeeping."""
    raw = event.state if isinstance(event, Undecodable) else vars(event)
    return {k: v for k, v in raw.items() if k not in BOOKKEEPING}


class Tx:
    """One transaction of a view: its cursor, and the log position of the event being applied.

    SQL given to ``execute`` names the view's schema as ``{s}``.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], view: View) -> None:
        self.cursor = cursor
        self.view = view
        self.position = 0

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """Run one statement (pipelined: its result is not read)."""
        self.cursor.execute(self.view.sql(sql), params)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run one query and return its rows (this waits for the pipeline)."""
        self.cursor.execute(self.view.sql(sql), params)
        return list(self.cursor.fetchall())


def _lock_key(schema: str) -> int:
    """A stable 63-bit advisory-lock key for one view's schema."""
    digest = hashlib.sha256(f"salon-view:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class View(PostgresTrackingRecorder):
    """The tables of one read model and its tracking record, together in one schema.

    ``ddl`` lists the statements creating the tables (``{s}`` stands for the schema); they run
    in one transaction with the tracking table's, after ``CREATE SCHEMA IF NOT EXISTS``.
    """

    ddl: ClassVar[tuple[str, ...]] = ()

    def __init__(self, datastore: PostgresDatastore, *,
                 tracking_table_name: str = "tracking", **kwargs: Any) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        self.schema = check_schema(datastore.schema)
        self._sql: dict[str, str] = {}
        self.sql_create_statements.insert(
            0, SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(self.schema)))
        # Creating tables and applying a batch exclude each other (a runner starting while
        # another applies would otherwise deadlock on DDL locks): the DDL takes this view's
        # advisory lock exclusively, every batch takes it shared, both before anything else.
        self.sql_create_statements.insert(0, SQL("SELECT pg_advisory_xact_lock({0})").format(
            Literal(_lock_key(self.schema))))
        self._share_view = f"SELECT pg_advisory_xact_lock_shared({_lock_key(self.schema)})"
        self.sql_create_statements.extend(SQL(self.sql(statement))  # type: ignore[arg-type]
                                          for statement in self.ddl)
        tracking = f"{{s}}.{tracking_table_name}"
        # A first tracking row, so the batch transaction always has a row to lock.
        self.sql_create_statements.append(SQL(self.sql(  # type: ignore[arg-type]
            f"INSERT INTO {tracking} VALUES ('{APPLICATION}', 0) ON CONFLICT DO NOTHING")))
        self._lock_tracking = self.sql(
            f"SELECT notification_id FROM {tracking} WHERE application_name = %s FOR UPDATE")

    def sql(self, template: str) -> str:
        """``template`` with ``{s}`` replaced by this view's schema (cached)."""
        found = self._sql.get(template)
        if found is None:
            found = self._sql[template] = template.replace("{s}", self.schema)
        return found

    def apply_batch(self, projection: Projection[Any], items: Sequence[tuple[object, Tracking]]
                    ) -> int:
        """Apply events in one transaction, skipping those applied before; returns how many."""
        if not items:
            return 0
        try:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(self._share_view)
                cursor.execute(self._lock_tracking, (APPLICATION,))
                row = cursor.fetchone()
                done = int(row["notification_id"] or 0) if row else 0
                fresh = [(e, t) for e, t in items if t.notification_id > done]
                if not fresh:
                    return 0
                tx = Tx(cursor, self)
                tx.position = done  # in ``begin``: the last position applied before this batch
                projection.begin(tx)
                with cursor.connection.pipeline():
                    for event, tracking in fresh:
                        tx.position = tracking.notification_id
                        projection.apply(event, tx)
                    projection.finish(tx)
                    self._insert_tracking(cursor, fresh[-1][1])
                return len(fresh)
        except BaseException:
            projection.abort()
            raise

    def drop(self) -> None:
        """Drop the whole schema: every table of the view and its tracking record."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(
                Identifier(self.schema)))


V = TypeVar("V", bound=View)


class Projection(EventsourcingProjection[V], Generic[V]):
    """A read model fed from the log: one small ``apply`` handler per event type it reads.

    Handlers only write through ``tx``; they never read the clock or call out, so the view is
    a function of the log. ``begin`` may read state the batch needs; ``abort`` forgets any
    state cached from a batch that was rolled back.
    """

    name: ClassVar[str] = ""
    view_class: ClassVar[type[View]] = View
    # Topics read besides those of the registered handlers (say, events of a stream whose
    # class this code may not have); () with ``every_event`` set means: every event.
    extra_topics: ClassVar[tuple[str, ...]] = ()
    every_event: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        apply = cls.__dict__.get("apply")
        if isinstance(apply, singledispatchmethod) and not cls.every_event:
            handled = [get_topic(k) for k in apply.dispatcher.registry
                       if k not in (object, Undecodable)]
            cls.topics = tuple(sorted(set(handled) | set(cls.extra_topics)))
        elif cls.every_event:
            cls.topics = ()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """eventsourcing's entry point: apply one event and track it, in one transaction."""
        self.view.apply_batch(self, [(domain_event, tracking)])

    @singledispatchmethod
    def apply(self, event: object, tx: Tx) -> None:
        """Events this view ignores."""

    def begin(self, tx: Tx) -> None:
        """Read what a batch needs before its events are applied (nothing by default).

        ``tx.position`` is then the position the view had reached: state cached from a batch
        ending elsewhere is stale (another runner moved the view on) and must be read again.
        """

    def finish(self, tx: Tx) -> None:
        """Write what the batch's handlers left pending, before it commits (nothing by
        default; the memory view embeds a batch's new memories together here)."""

    def abort(self) -> None:
        """Forget state cached during a batch that did not commit."""


def datastore_env(database_url: str, schema: str) -> dict[str, str]:
    """eventsourcing settings for a view's infrastructure factory, in ``schema``."""
    env = postgres_env(database_url)
    env["POSTGRES_SCHEMA"] = check_schema(schema)
    return env


def open_view(projection_class: type[Projection[Any]], database_url: str, schema: str) -> View:
    """The view of ``projection_class`` in ``schema``, its tables created if missing."""
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    env = Environment(projection_class.name, datastore_env(database_url, schema))
    factory = InfrastructureFactory.construct(env=env)
    return factory.tracking_recorder(projection_class.view_class)  # type: ignore[attr-defined]


class Queries(Protocol):
    """Anything that runs a query of a view and returns its rows (a Reader, a Snapshot)."""

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
             ) -> list[dict[str, Any]]: ...


class Reader:
    """Read-only queries of one view, over a small pool of its own connections."""

    def __init__(self, database_url: str, schema: str, max_size: int = 4) -> None:
        self.schema = check_schema(schema)
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            database_url, min_size=0, max_size=max_size, open=True,
            kwargs={"row_factory": dict_row, "autocommit": True})

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """The rows of one query; ``{s}`` in ``sql`` stands for the view's schema."""
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql.replace("{s}", self.schema), params)
            return list(cursor.fetchall())

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """One read-only REPEATABLE READ transaction: every query in it sees the same moment."""
        with self.pool.connection() as conn:
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                with conn.transaction():
                    yield Snapshot(conn, self.schema)
            finally:
                conn.read_only = False
                conn.isolation_level = None
                conn.autocommit = True

    def stream(self, sql: str, params: Sequence[Any] | dict[str, Any] = (),
               size: int = 2_000) -> Any:
        """The rows of one query, fetched ``size`` at a time (for exports and checks)."""
        with self.pool.connection() as conn, conn.transaction(), \
                conn.cursor(name="salon_stream") as cursor:
            cursor.itersize = size
            cursor.execute(sql.replace("{s}", self.schema), params)
            yield from cursor

    def close(self) -> None:
        """Release the connections."""
        self.pool.close()


class Snapshot:
    """Queries of one view inside one transaction (``Reader.snapshot``); reads like a Reader."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """The rows of one query; ``{s}`` in ``sql`` stands for the view's schema."""
        with self.conn.cursor() as cursor:
            cursor.execute(sql.replace("{s}", self.schema), params)
            return list(cursor.fetchall())

    def stream(self, sql: str, params: Sequence[Any] | dict[str, Any] = (), name: str = "rows",
               size: int = 2_000) -> Iterator[dict[str, Any]]:
        """The rows of one query, fetched ``size`` at a time by a server-side cursor ``name``
        (several may be read side by side in the same snapshot)."""
        with self.conn.cursor(name=name) as cursor:
            cursor.itersize = size
            cursor.execute(sql.replace("{s}", self.schema), params)
            yield from cursor
