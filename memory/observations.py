"""Room events an agent could see, turned into its episodic and social memories.

An agent recalls only what it could see: a room's messages from before it joined (or while it
was away) never become its memories, and a redacted message is forgotten. The memory
projection keeps each room's agent members in log order and asks these functions what to write.
"""

from __future__ import annotations

import uuid

from memory.importance import heuristic_importance

_NAMESPACE = uuid.UUID("8c1f4b0e-2f5d-4a57-9d0e-6f1d2a9b7c31")


def observation_id(agent: str, source: str) -> str:
    """The stable id of the memory ``agent`` forms of ``source`` (a message id, say)."""
    return str(uuid.uuid5(_NAMESPACE, f"{agent}\x1f{source}"))


def said(agent: str, room: str, author: str, text: str) -> str:
    """An episodic memory of a message, told from ``agent``'s point of view."""
    who = "I" if author == agent else author
    return f"In #{room}, {who} said: {text}"


def said_importance(agent: str, author: str, text: str, mentions: list[str]) -> int:
    """The heuristic rating of a message; being addressed makes it matter more."""
    return heuristic_importance(text, addressed=author != agent and agent in mentions)


def joined(room: str, member: str, kind: str) -> str:
    """A social memory of someone joining a room the agent is in."""
    what = "an agent" if kind == "agent" else "a person"
    return f"In #{room}, {member} ({what}) joined the room."


def feedback(room: str, member: str, rating: int, comment: str | None, text: str) -> str:
    """A social memory of someone rating one of the agent's messages."""
    verdict = "liked" if rating > 0 else "disliked"
    note = f' and said "{comment}"' if comment else ""
    return f'In #{room}, {member} {verdict} my message "{text[:200]}"{note}.'
