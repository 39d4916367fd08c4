"""Durable reminders: an agent's timers (``idle_after_seconds``, ``every_seconds``) outlive it.

A timed agent keeps, per room, what its timers need (when the room last spoke, who spoke, when
the schedule last fired) in ``salon_reminders``, with the moment its next timer is due. Its own
ticker writes a row when it changes (at most once a tick) and when the agent is passivated; a
paused or stopped agent's rows are due never. The platform's ``Reminders`` loop wakes every
agent whose row is due (the wake is a ``tick`` call, which activates a passive agent from its
log and its reminder rows), so the timers fire after a restart of the whole installation or
after the agent was passivated, not only once someone posts again.

The rows are operational state, not facts: the event log still records every turn a timer
started. Losing the table costs the timers of agents nobody calls (they are armed again on
the next room event), never an event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import ray

from actors import directory
from domain.errors import NotFound
from infra.settings import Settings

TABLE = "salon_reminders"
POLL_SECONDS = 1.0
WAKE_AT_ONCE = 8
DUE_BATCH = 500
log = logging.getLogger(__name__)

DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (agent text NOT NULL, room text NOT NULL, "
       "namespace text NOT NULL, due_at double precision, timers jsonb NOT NULL, "
       "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent, room))",
       f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (due_at) WHERE due_at IS NOT NULL")


class ReminderBook:
    """Reads and writes the reminder rows over one connection (blocking; thread-safe).

    Rows carry the Ray namespace of the installation that wrote them, and only that
    installation wakes them (its agents live there).
    """

    def __init__(self, database_url: str, namespace: str) -> None:
        self.database_url = database_url
        self.namespace = namespace
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.database_url, autocommit=True)
                        for statement in DDL:
                            self._conn.execute(statement)
                    with self._conn.transaction():
                        return work(self._conn)
                except psycopg.OperationalError:
                    self.close_unlocked()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def load(self, agent: str) -> dict[str, dict[str, Any]]:
        """The agent's timer state per room."""
        rows = self._run(lambda c: c.execute(f"SELECT room, timers FROM {TABLE} WHERE agent "
                                             "= %s", (agent,)).fetchall())
        return {str(room): dict(timers) for room, timers in rows}

    def write(self, agent: str, rows: dict[str, tuple[float | None, dict[str, Any]]]) -> None:
        """Replace the rows of these rooms: room -> (due_at or None, timers)."""
        if not rows:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {TABLE} (agent, room, namespace, due_at, timers) VALUES "
                    "(%s, %s, %s, %s, %s) ON CONFLICT (agent, room) DO UPDATE SET "
                    "namespace = excluded.namespace, due_at = excluded.due_at, "
                    "timers = excluded.timers, updated_at = now()",
                    [(agent, room, self.namespace, due, json.dumps(timers))
                     for room, (due, timers) in sorted(rows.items())])

        self._run(work)

    def clear(self, agent: str) -> None:
        """Forget the agent's rows (it no longer exists)."""
        self._run(lambda c: c.execute(f"DELETE FROM {TABLE} WHERE agent = %s", (agent,)))

    def due(self, now: float, limit: int = DUE_BATCH) -> list[str]:
        """Agents with a timer due at ``now``, most overdue first."""
        rows = self._run(lambda c: c.execute(
            f"SELECT agent FROM {TABLE} WHERE due_at <= %s AND namespace = %s GROUP BY agent "
            "ORDER BY min(due_at) LIMIT %s", (now, self.namespace, limit)).fetchall())
        return [str(agent) for (agent,) in rows]

    def close_unlocked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.close_unlocked()


_books: dict[tuple[str, str], ReminderBook] = {}
_books_lock = threading.Lock()


def reminder_book(settings: Settings) -> ReminderBook:
    """This process's reminder book of an installation (shared by the agents of a host)."""
    assert settings.database_url, "reminders need a resolved database URL"
    key = (settings.database_url, settings.namespace)
    with _books_lock:
        if key not in _books:
            _books[key] = ReminderBook(*key)
        return _books[key]


class Reminders:
    """Wakes agents whose timers are due; runs in the platform's process, in a thread."""

    def __init__(self, settings: Settings, poll: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        assert settings.database_url, "reminders need a resolved database URL"
        self.settings = settings
        self.book = ReminderBook(settings.database_url, settings.namespace)
        self.poll = poll
        self.clock = clock
        self.woken = 0

    def wake_due(self) -> list[str]:
        """Wake every agent due now (a few at a time); returns their names."""
        names = self.book.due(self.clock())
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=WAKE_AT_ONCE) as pool:
            list(pool.map(self._wake, names))
        self.woken += len(names)
        return names

    def _wake(self, name: str) -> None:
        try:
            ray.get(directory.agent(name, self.settings).tick.remote())
        except Exception as error:  # noqa: BLE001 - one agent never stops the others' timers
            cause = getattr(error, "cause", None) or error
            if isinstance(cause, NotFound):
                self.book.clear(name)  # the agent does not exist (any more)
            else:
                log.warning("waking agent %s for its timers failed: %s", name, error)

    def run(self, stop: threading.Event) -> None:
        """Wake due agents every ``poll`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.wake_due()
            except Exception:  # noqa: BLE001 - the loop keeps going; the rows are durable
                log.exception("the reminders loop failed a round; retrying")
                self.book.close()
            stop.wait(self.poll)
        self.book.close()

    def start(self) -> Callable[[], None]:
        """Run in a daemon thread; returns a function that stops it and waits for it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="salon-reminders",
                                  daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=30)

        return halt
