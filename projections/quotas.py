"""Quotas: how large a thread, and everything one user has posted, may grow.

``check_post`` is the rule, pure (no I/O; it could live in ``domain/``): given the limits, the
usage so far and the text about to be posted, it raises ``Conflict`` when the thread is full
and ``RateLimited`` when the author's quota is spent, each saying what to do. ``Quotas`` feeds
it the usage from the threads view (per room, and per author over every room).

The threads view is a projection, so usage lags the log by the view's pending events: a burst
may pass a limit by that much. Callers that see every post of a room (its room actor) can add
what they recorded since (``pending``) to close that gap for the thread limit.

``guard(database_url)`` is what the gateway calls before a person's post: one ``Quotas`` per
process over the running threads view. Agents' posts are not checked (their cost is bounded by
turn-taking and the model's own limits); until the view exists nothing is known, and posts pass.
"""

from __future__ import annotations

import logging
import threading
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


def check_post(limits: Limits, room: str, thread: Usage, author: str, user: Usage,
               text: str) -> None:
    """Raise why posting ``text`` would pass a limit; return quietly when it fits."""
    size = len(text.encode())
    if limits.thread_messages is not None and thread.messages + 1 > limits.thread_messages:
        raise Conflict(f"room {room!r} is full: it holds {thread.messages:,} messages, its "
                       f"limit is {limits.thread_messages:,}; archive it and go on in a new "
                       "room (a fork keeps the history)")
    if limits.thread_bytes is not None and thread.bytes + size > limits.thread_bytes:
        raise Conflict(f"room {room!r} is full: its messages take {thread.bytes:,} bytes and "
                       f"this one {size:,}, past its limit of {limits.thread_bytes:,}; archive "
                       "it and go on in a new room (a fork keeps the history)")
    if limits.user_messages is not None and user.messages + 1 > limits.user_messages:
        raise RateLimited(f"{author} has posted {user.messages:,} messages, their quota is "
                          f"{limits.user_messages:,}; an admin can raise "
                          "SALON_QUOTA_USER_MESSAGES")
    if limits.user_bytes is not None and user.bytes + size > limits.user_bytes:
        raise RateLimited(f"{author} has posted {user.bytes:,} bytes and this message is "
                          f"{size:,}, past their quota of {limits.user_bytes:,}; an admin can "
                          "raise SALON_QUOTA_USER_BYTES")


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
    """The gateway's quota check: a ``Quotas`` over the threads view of a running Salon."""

    def __init__(self, database_url: str, schema: str, limits: Limits | None = None) -> None:
        self.quotas = Quotas(Reader(database_url, schema, max_size=2), limits)

    def check(self, room: str, author: str, text: str) -> None:
        """Raise Conflict or RateLimited if ``author`` may not post ``text`` in ``room``."""
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
