"""When an agent takes a turn: the pure decision, given what happened in a room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Agents stop answering agents once this many agent messages came in a row: chains always end.
MAX_AGENT_STREAK = 3


@dataclass(frozen=True)
class Trigger:
    """Why an agent speaks: addressed in a message, asked to, or opening a conversation."""

    kind: str  # "mention" | "invoke" | "joined"
    room: str
    position: int | None
    by: str | None
    text: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The JSON form recorded in ``TurnStarted.trigger``."""
        return {"kind": self.kind, "position": self.position, "by": self.by}


def triggers_for(agent: str, opening_line: str | None, room: str, frames: list[dict[str, Any]],
                 handled_up_to: int, max_agent_streak: int = MAX_AGENT_STREAK) -> list[Trigger]:
    """The turns ``agent`` should take for new room events, oldest first.

    Frames at or before ``handled_up_to`` were handled already (redelivery is harmless). An agent
    never answers itself; agents converse only when one addresses another by name, and stop once
    ``max_agent_streak`` agent messages came in a row.
    """
    found: list[Trigger] = []
    for frame in frames:
        position = int(frame["position"])
        if position <= handled_up_to:
            continue
        body = frame["event"]
        kind = body.get("kind")
        if kind == "message_posted" and body.get("author_id") != agent \
                and agent in body.get("mentions", []) \
                and int(body.get("agent_streak", 0)) < max_agent_streak:
            found.append(Trigger("mention", room, position, body.get("author_id"),
                                 body.get("text")))
        elif kind == "member_joined" and body.get("member_id") == agent and opening_line:
            found.append(Trigger("joined", room, position, None))
    return found
