"""Quotas: how large a thread, and everything one user has posted, may grow.

``check_post`` is the rule, pure (no I/O; it could live in ``domain/``): given the limits, the
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
from dataclasses import dataclass

import psycopg
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.errors import Conflict, RateLimited
from projections import threads
from projections.views import Reader

log = logging.getLogger(__name__)


class Limits(BaseModel):
    """Size limits of threads and users (None: no limit)."""

    model_config = ConfigDict(frozen=True)

    thread_messages: int | None = Field(default=100_000, ge=1)
    thread_bytes: int | None = Field(default=64 * 1024 * 1024, ge=1)
    user_messages: int | None = Field(default=None, ge=1)
    user_bytes: int | None = Field(default=256 * 1024 * 1024, ge=1)


class QuotaSettings(Limits, BaseSettings):
    """Limits from ``SALON_QUOTA_*`` variables, e.g. ``SALON_QUOTA_THREAD_BYTES=1000000``."""

    model_config = SettingsConfigDict(env_prefix="SALON_QUOTA_", extra="ignore", frozen=True)


@dataclass(frozen=True)
class Usage:
    """Messages and bytes (UTF-8) posted so far."""

    messages: int = 0
    bytes: int = 0


def check_thread(limits: Limits, room: str, thread: Usage, text: str) -> None:
    """Raise Conflict when posting ``text`` would pass the room's size limits."""
    size = len(text.encode())
    if limits.thread_messages is not None and thread.messages + 1 > limits.thread_messages:
        raise Conflict(f"room {room!r} is full: it holds {thread.messages:,} messages, its "
                       f"limit is {limits.thread_messages:,}; archive it and go on in a new "
                       "room (a fork keeps the history)")
    if limits.thread_bytes is not None and thread.bytes + size > limits.thread_bytes:
        raise Conflict(f"room {room!r} is full: its messages take {thread.bytes:,} bytes and "
                       f"this one {size:,}, past its limit of {limits.thread_bytes:,}; archive "
                       "it and go on in a new room (a fork keeps the history)")


def check_user(limits: Limits, author: str, user: Usage, text: str) -> None:
    """Raise RateLimited when posting ``text`` would pass the author's quota."""
    size = len(text.encode())
    if limits.user_messages is not None and user.messages + 1 > limits.user_messages:
        raise RateLimited(f"{author} has posted {user.messages:,} messages, their quota is "
                          f"{limits.user_messages:,}; an admin can raise "
                          "SALON_QUOTA_USER_MESSAGES")
    if limits.user_bytes is not None and user.bytes + size > limits.user_bytes:
        raise RateLimited(f"{author} has posted {user.bytes:,} bytes and this message is "
                          f"{size:,}, past their quota of {limits.user_bytes:,}; an admin can "
                          "raise SALON_QUOTA_USER_BYTES")


def check_post(limits: Limits, room: str, thread: Usage, author: str, user: Usage,
               text: str) -> None:
    """Raise why posting ``text`` would pass a limit; return quietly when it fits."""
    check_thread(limits, room, thread, text)
    check_user(limits, author, user, text)


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

    def check(self, room: str, author: str, text: str, pending: Usage = Usage()) -> None:
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
