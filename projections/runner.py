"""Runs one projection: catches up from its tracking record, then follows the log live.

The application recorder's subscription (eventsourcing's ``PostgresSubscription``) pulls events
after the tracking record in pages and then waits on PostgreSQL LISTEN/NOTIFY for new ones. A
reader thread moves what it yields into a bounded buffer; the runner's thread drains the
buffer into batches of up to ``batch_size`` events, each applied in one transaction with its
tracking record (``View.apply_batch``), so catching up costs one commit per batch rather than
per event, and live bursts are batched the same way. When anything fails the subscription is
dropped and restarted from the tracking record after a backoff; a process killed at any point
resumes from the last committed batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any

import psycopg
from eventsourcing.persistence import Notification, Tracking
from psycopg.rows import tuple_row

from infra.store import open_app
from projections.views import APPLICATION, Projection, Undecodable, open_view

log = logging.getLogger(__name__)
EVENTS_TABLE = "salon_events"


@dataclass(frozen=True)
class Progress:
    """Where a projection stands: its last applied position, the log's head, events pending."""

    name: str
    schema: str
    position: int
    head: int
    pending: int
    running: bool | None = None
    applied: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def progress(database_url: str, projection_class: type[Projection[Any]], schema: str,
             conn: psycopg.Connection[Any] | None = None) -> Progress:
    """How far ``projection_class`` in ``schema`` has got, read from the database alone."""
    tracking = f"{schema}.{projection_class.name.lower()}_tracking"
    topics = list(projection_class.topics)
    own = conn is None
    connection = conn or psycopg.connect(database_url, autocommit=True)
    cursor = connection.cursor(row_factory=tuple_row)
    try:
        head_row = cursor.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}"
                                      ).fetchone()
        head = int(head_row[0] or 0) if head_row else 0
        try:
            # A savepoint inside a caller's transaction (a snapshot), so a missing view does
            # not abort it.
            with connection.transaction():
                row = cursor.execute(f"SELECT notification_id FROM {tracking} "
                                     "WHERE application_name = %s", (APPLICATION,)).fetchone()
            position = int(row[0] or 0) if row else 0
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            position = 0  # never started, or being rebuilt
        if topics:
            count = cursor.execute(
                f"SELECT count(*) FROM {EVENTS_TABLE} WHERE notification_id > %s "
                "AND topic = ANY(%s)", (position, topics)).fetchone()
        else:
            count = cursor.execute(
                f"SELECT count(*) FROM {EVENTS_TABLE} WHERE notification_id > %s",
                (position,)).fetchone()
        pending = int(count[0]) if count else 0
    finally:
        cursor.close()
        if own:
            connection.close()
    return Progress(projection_class.name, schema, position, head, pending)


class Runner:
    """Keeps one projection's view up to date with the log, in a thread of its own."""

    def __init__(self, projection_class: type[Projection[Any]], database_url: str, schema: str,
                 *, batch_size: int = 500, until: int | None = None,
                 master_key: Path | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        self.projection_class = projection_class
        self.database_url = database_url
        self.schema = schema
        self.batch_size = batch_size
        self.until = until  # apply nothing after this position (for rebuilds to a point)
        # The log's tables are the platform's to create (concurrent CREATEs fail in PostgreSQL).
        self.app = open_app(database_url, master_key=master_key)
        # Keyword arguments of the projection's constructor (the memory view's embedder).
        self.options = dict(options or {})
        self.view = open_view(projection_class, database_url, schema)
        self.projection = projection_class(view=self.view, **self.options)
        self.applied = 0
        self.error: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The projection's name."""
        return self.projection_class.name

    def start(self) -> Runner:
        """Start following the log (returns at once)."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"projection-{self.name}")
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; the view keeps what was applied."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop and release every connection."""
        self.stop()
        self.view.datastore.close()
        self.app.close()

    def rebuild(self) -> None:
        """Drop the view and apply the whole log again, from position 0."""
        running = self._thread is not None
        self.stop()
        self.projection.abort()
        self.view.drop()
        self.view.datastore.close()
        self.view = open_view(self.projection_class, self.database_url, self.schema)
        self.projection = self.projection_class(view=self.view, **self.options)
        self.applied = 0
        if running:
            self.start()

    def catch_up(self, up_to: int | None = None) -> int:
        """Apply, in this thread, every event recorded up to ``up_to`` (the head when None)
        that is not applied yet, in batches; returns how many this call applied. For tools
        and tests that want a view up to date now, without a thread following the log."""
        target = self.head() if up_to is None else up_to
        if self.until is not None:
            target = min(target, self.until)
        applied = 0
        while True:
            start = self.position()
            if start >= target:
                break
            found = self.app.recorder.select_notifications(
                start, self.batch_size, stop=target, topics=self.projection.topics,
                inclusive_of_start=False)
            if not found:
                break
            items = [(self._decode(n), Tracking(APPLICATION, n.id)) for n in found]
            applied += self.view.apply_batch(self.projection, items)
        self.applied += applied
        return applied

    def position(self) -> int:
        """The position (notification id) of the last event applied."""
        return int(self.view.max_tracking_id(APPLICATION) or 0)

    def head(self) -> int:
        """The position of the newest event in the log."""
        return int(self.app.recorder.max_notification_id() or 0)

    def status(self) -> Progress:
        """Where this projection stands, and whether this runner is running."""
        with self.view.datastore.get_connection() as conn:
            found = progress(self.database_url, self.projection_class, self.schema,
                             conn=conn)  # type: ignore[arg-type]
        running = self._thread is not None and self._thread.is_alive()
        return Progress(found.name, found.schema, found.position, found.head, found.pending,
                        running, self.applied, self.error)

    def caught_up(self, up_to: int) -> bool:
        """Whether every event this projection reads at or below ``up_to`` has been applied."""
        position = self.position()
        if position >= up_to:
            return True
        topics = list(self.projection_class.topics)
        sql = f"SELECT 1 FROM {EVENTS_TABLE} WHERE notification_id > %s AND notification_id <= %s"
        params: tuple[Any, ...] = (position, up_to)
        if topics:
            sql += " AND topic = ANY(%s)"
            params += (topics,)
        with self.view.datastore.get_connection() as conn:
            return conn.execute(sql + " LIMIT 1", params).fetchone() is None

    def wait_for(self, up_to: int | None = None, timeout: float = 30.0) -> None:
        """Block until caught up with ``up_to`` (the head when None); TimeoutError if not."""
        target = self.head() if up_to is None else up_to
        deadline = time.monotonic() + timeout
        pause = 0.005
        while not self.caught_up(target):
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection {self.name} is at {self.position()}, not yet "
                                   f"at {target} after {timeout:.0f}s (error: {self.error})")
            if self._stopping.wait(pause):
                raise TimeoutError(f"projection {self.name} stopped at {self.position()}")
            pause = min(pause * 2, 0.1)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._follow()
                backoff = 0.5
            except Exception as error:  # noqa: BLE001 - reported in status, then retried
                self.error = f"{type(error).__name__}: {error}"
                log.exception("projection %s failed; retrying in %.1fs", self.name, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _follow(self) -> None:
        if self.error is not None:
            self.view.create_table()  # in case the view was dropped under this runner
        start = self.position()
        subscription = self.app.recorder.subscribe(gt=start, topics=self.projection.topics)
        buffer: Queue[Notification] = Queue(maxsize=self.batch_size * 4)
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for notification in subscription:
                    while not self._stopping.is_set():
                        try:
                            buffer.put(notification, timeout=0.2)
                            break
                        except Full:
                            continue
                    if self._stopping.is_set():
                        return
            except BaseException as error:  # noqa: BLE001 - handed to the runner's thread
                failure.append(error)

        with subscription:
            reader = threading.Thread(target=read, daemon=True, name=f"read-{self.name}")
            reader.start()
            try:
                while not self._stopping.is_set():
                    try:
                        batch = [buffer.get(timeout=0.2)]
                    except Empty:
                        if failure:
                            raise failure[0] from None
                        if not reader.is_alive():
                            raise RuntimeError("the log subscription ended") from None
                        continue
                    while len(batch) < self.batch_size:
                        try:
                            batch.append(buffer.get_nowait())
                        except Empty:
                            break
                    if self.until is not None:
                        batch = [n for n in batch if n.id <= self.until]
                    items = [(self._decode(n), Tracking(APPLICATION, n.id)) for n in batch]
                    self.applied += self.view.apply_batch(self.projection, items)
                    self.error = None
            finally:
                subscription.stop()
                reader.join(timeout=5)

    def _decode(self, notification: Notification) -> object:
        try:
            return self.app.mapper.to_domain_event(notification)
        except Exception as error:  # noqa: BLE001 - an event this code cannot rebuild
            try:
                state = self.app.mapper.transcoder.decode(notification.state)
            except Exception:  # noqa: BLE001
                state = {}
            return Undecodable(notification.originator_id, notification.originator_version,
                               notification.topic, state if isinstance(state, dict) else {},
                               f"{type(error).__name__}: {error}")
