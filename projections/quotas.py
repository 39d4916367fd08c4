"""Quotas: how large a thread, and everything one user has posted, may grow.

``check_post`` (``domain/quotas.py``) is the rule, pure: given the limits, the
usage so far and the text about to be posted, it raises ``Conflict`` when the thread is full
and ``RateLimited`` when the author's quota is spent, each saying what to do. ``Quotas`` feeds
it the usage from the threads view (per room, and per author over every room).

The threads view is a projection, so usage read from it lags the log by the view's pending
events; ``Guard`` closes that gap for the author's own posts through this gateway by counting
them itself.

``guard(database_url)`` is what the gateway calls before a person's post: one ``Guard`` per
process over the running threads view, which checks the author's quota from usage it keeps
itself and hands the room's limits to the room actor (``check_thread`` against the room in
its memory). Agents' posts are not checked (their cost is bounded by
turn-taking and the model's own limits); until the view exists nothing is known, and posts pass.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.quotas import Limits, Usage, check_post, check_thread, check_user
from projections import threads
from projections.views import Reader

log = logging.getLogger(__name__)
NOTHING = Usage()
__all__ = ["Guard", "Limits", "QuotaSettings", "Quotas", "Usage", "check_post", "check_thread",
           "check_user", "guard"]


class QuotaSettings(Limits, BaseSettings):
    """Limits from ``SALON_QUOTA_*`` variables, e.g. ``SALON_QUOTA_THREAD_BYTES=1000000``."""

    model_config = SettingsConfigDict(env_prefix="SALON_QUOTA_", extra="ignore", frozen=True)


class Quotas:
    """Checks posts against the limits, with usage read from the threads view."""

    def __init__(self, reader: Reader, limits: Limits | None = None) -> None:
        self.reader = reader
        self.limits = limits or QuotaSettings()

    def usage(self, room: str, author: str) -> tuple[Usage, Usage]:
        """(the room's usage, the author's usage over every room), from the threads view."""
        in_room = threads.usage(self.reader, room=room)
        by_author = threads.usage(self.reader, author=author)
        return Usage(**in_room), Usage(**by_author)

    def check(self, room: str, author: str, text: str, pending: Usage = NOTHING) -> None:
        """Raise if ``author`` may not post ``text`` in ``room``; ``pending`` is usage the
        view has not seen yet (say, the room actor's posts since the view's position)."""
        thread, user = self.usage(room, author)
        thread = Usage(thread.messages + pending.messages, thread.bytes + pending.bytes)
        check_post(self.limits, room, thread, author, user, text)


class Guard:
    """The gateway's quota checks for a person's post, with no query on the hot path.

    The room's own limits are checked by its room actor against the room it holds in memory
    (exact); the gateway hands it ``limits``. The author's usage over every room is read from
    the threads view once, then kept here: each post this gateway lets through is counted at
    once (and uncounted if it fails), and the view is read again after ``refresh_seconds`` to
    take in posts made through other gateways, keeping the larger figure (usage only grows).
    """

    def __init__(self, database_url: str, schema: str, limits: Limits | None = None,
                 refresh_seconds: float = 30.0, max_authors: int = 100_000) -> None:
        self.quotas = Quotas(Reader(database_url, schema, max_size=2), limits)
        self.refresh_seconds = refresh_seconds
        self.max_authors = max_authors
        self.authors: dict[str, tuple[Usage, float]] = {}
        self.lock = threading.Lock()

    @property
    def limits(self) -> Limits:
        return self.quotas.limits

    def needs_read(self, author: str) -> bool:
        """Whether ``check_author`` would query the view (call it in a thread then)."""
        found = self.authors.get(author)
        return found is None or time.monotonic() - found[1] > self.refresh_seconds

    def _read(self, author: str) -> Usage:
        try:
            return Usage(**threads.usage(self.quotas.reader, author=author))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            log.info("the threads view is not built yet; usage starts at 0")
            return Usage()

    def check_author(self, author: str, text: str) -> None:
        """Raise RateLimited if ``text`` passes ``author``'s quota; else count it as posted."""
        fresh = self._read(author) if self.needs_read(author) else None
        with self.lock:
            usage, read_at = self.authors.get(author, (Usage(), 0.0))
            if fresh is not None:
                usage = Usage(max(usage.messages, fresh.messages), max(usage.bytes, fresh.bytes))
                read_at = time.monotonic()
            check_user(self.quotas.limits, author, usage, text)
            self.authors[author] = (Usage(usage.messages + 1,
                                          usage.bytes + len(text.encode())), read_at)
            while len(self.authors) > self.max_authors:
                del self.authors[next(iter(self.authors))]

    def uncount(self, author: str, text: str) -> None:
        """A post counted by ``check_author`` failed: take it back."""
        with self.lock:
            found = self.authors.get(author)
            if found is not None:
                usage, read_at = found
                self.authors[author] = (Usage(max(0, usage.messages - 1),
                                              max(0, usage.bytes - len(text.encode()))), read_at)

    def check(self, room: str, author: str, text: str) -> None:
        """Both checks from the view alone (for callers without the room in memory)."""
        try:
            self.quotas.check(room, author, text)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            log.info("the threads view is not built yet; quotas are not checked")


_guards: dict[str, Guard] = {}
_lock = threading.Lock()


def guard(database_url: str) -> Guard:
    """The process's guard over the threads view of ``database_url`` (made on first use)."""
    with _lock:
        found = _guards.get(database_url)
        if found is None:
            from projections.service import ProjectionSettings

            schema = ProjectionSettings().schema("threads")
            found = _guards[database_url] = Guard(database_url, schema)
        return found
