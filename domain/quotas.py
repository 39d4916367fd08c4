"""The size rules of rooms and of what one person posts: pure, no I/O.

``check_thread`` is checked by a room's actor against the room it holds; ``check_user`` by the
gateway against the usage it keeps (``projections/quotas.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import Conflict, RateLimited


class Limits(BaseModel):
    """Size limits of threads and users (None: no limit)."""

    model_config = ConfigDict(frozen=True)

    thread_messages: int | None = Field(default=100_000, ge=1)
    thread_bytes: int | None = Field(default=64 * 1024 * 1024, ge=1)
    user_messages: int | None = Field(default=None, ge=1)
    user_bytes: int | None = Field(default=256 * 1024 * 1024, ge=1)


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
