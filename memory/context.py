"""Short-term context: which room messages an agent sees when it takes a turn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContextMessage:
    """One room message as context: where it sits, who wrote it, what it says."""

    position: int
    author: str
    text: str


def last_n(messages: list[ContextMessage], n: int) -> list[ContextMessage]:
    """The newest ``n`` messages, oldest first."""
    if n <= 0:
        return []
    ordered = sorted(messages, key=lambda m: m.position)
    return ordered[-n:]
