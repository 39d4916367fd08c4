"""When an agent takes a turn: pure decisions, given what happened in a room and the time."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Agents stop answering agents once this many agent messages came in a row: chains always end.
MAX_AGENT_STREAK = 3
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Trigger:
    """Why an agent speaks.

    ``mention`` (addressed by @name or by name), ``relevant`` (unaddressed, on its interests),
    ``turn`` (the room's round-robin named it), ``select`` (it moderates and picks who speaks),
    ``invoke`` (asked to), ``joined`` (opening line), ``idle`` (the room went quiet),
    ``schedule`` (its timetable).
    """

    kind: str
    room: str
    position: int | None
    by: str | None
    text: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The JSON form recorded in ``TurnStarted.trigger``."""
        return {"kind": self.kind, "position": self.position, "by": self.by}


@dataclass(frozen=True)
class Manners:
    """The parts of a definition that decide when an agent speaks."""

    name: str
    opening_line: str | None = None
    interests: tuple[str, ...] = ()
    chattiness: float = 0.0
    cooldown_seconds: float = 30.0
    idle_after_seconds: float | None = None
    every_seconds: float | None = None


@dataclass
class RoomView:
    """What an agent remembers of a room between deliveries (kept by its actor)."""

    handled_up_to: int = 0
    last_event_at: float | None = None
    last_position: int = 0
    last_spoke_at: float | None = None
    last_author: str | None = None
    idle_fired_at: int = -1
    last_scheduled_at: float | None = None
    policy: dict[str, Any] = field(default_factory=dict)


def relevance(text: str, interests: tuple[str, ...]) -> float:
    """Share of ``interests`` whose words all appear in ``text`` (0..1)."""
    if not interests:
        return 0.0
    words = set(_WORD.findall(text.lower()))
    hits = sum(1 for interest in interests
               if (parts := _WORD.findall(interest.lower())) and all(p in words for p in parts))
    return hits / len(interests)


def addressed(agent: str, body: dict[str, Any]) -> bool:
    """Whether a message names ``agent``: an @mention or its name as a word."""
    if agent in body.get("mentions", []):
        return True
    return re.search(rf"(?<![\w@-]){re.escape(agent)}(?![\w-])", str(body.get("text", "")),
                     re.IGNORECASE) is not None


def triggers_for(manners: Manners, room: str, frames: list[dict[str, Any]], view: RoomView,
                 now: float) -> list[Trigger]:
    """The turns an agent should take for new room events, oldest first; updates ``view``.

    Frames at or before ``view.handled_up_to`` were handled already, so redelivery is harmless.
    An agent never answers itself, and nobody answers once ``max_agent_streak`` agent messages
    came in a row, so agent-to-agent chains always end.
    """
    agent = manners.name
    cap = int(view.policy.get("max_agent_streak", MAX_AGENT_STREAK))
    found: list[Trigger] = []
    for frame in sorted(frames, key=lambda f: int(f["position"])):
        position = int(frame["position"])
        if position <= view.handled_up_to:
            continue
        view.handled_up_to = position
        view.last_position = max(view.last_position, position)
        body = frame["event"]
        at = _seconds(body.get("at"))
        if at is not None:
            view.last_event_at = max(view.last_event_at or at, at)
        kind = body.get("kind")
        if kind == "room_policy_changed":
            view.policy = {**view.policy,
                           **{k: body.get(k) for k in ("mode", "max_agent_streak", "selector")}}
            cap = int(view.policy.get("max_agent_streak") or MAX_AGENT_STREAK)
        elif kind == "member_joined" and body.get("member_id") == agent and manners.opening_line:
            found.append(Trigger("joined", room, position, None))
        elif kind == "message_posted":
            author = body.get("author_id")
            view.last_author = author
            if author == agent:
                view.last_spoke_at = at if at is not None else now
                continue
            if int(body.get("agent_streak", 0)) >= cap:
                continue
            text = str(body.get("text", ""))
            if addressed(agent, body):
                found.append(Trigger("mention", room, position, author, text))
            elif body.get("next_speaker") == agent:
                mode = view.policy.get("mode")
                found.append(Trigger("select" if mode == "selector" else "turn", room, position,
                                     author, text))
            elif _chatty(manners, view, text, now) and not body.get("next_speaker") \
                    and view.policy.get("mode", "free") == "free":
                found.append(Trigger("relevant", room, position, author, text))
                view.last_spoke_at = now
    return found


def timed_triggers(manners: Manners, room: str, view: RoomView, now: float) -> list[Trigger]:
    """Speaking first: after the room idled ``idle_after_seconds``, or every ``every_seconds``."""
    found: list[Trigger] = []
    if manners.idle_after_seconds is not None and view.last_event_at is not None \
            and now - view.last_event_at >= manners.idle_after_seconds \
            and view.idle_fired_at < view.last_position and view.last_author != manners.name:
        view.idle_fired_at = view.last_position
        found.append(Trigger("idle", room, None, None))
    if manners.every_seconds is not None:
        if view.last_scheduled_at is None:
            view.last_scheduled_at = now
        elif now - view.last_scheduled_at >= manners.every_seconds:
            view.last_scheduled_at = now
            found.append(Trigger("schedule", room, None, None))
    return found


TIMER_FIELDS = ("last_event_at", "last_position", "last_author", "idle_fired_at",
                "last_scheduled_at")


def timers_of(view: RoomView) -> dict[str, Any]:
    """What ``timed_triggers`` reads from a view: the part a durable reminder keeps."""
    return {name: getattr(view, name) for name in TIMER_FIELDS}


def restore_timers(view: RoomView, timers: dict[str, Any]) -> None:
    """Put kept timer state back into a fresh view (newer state in ``view`` wins)."""
    at, position = timers.get("last_event_at"), timers.get("last_position")
    if isinstance(position, int) and position > view.last_position:
        view.last_position = position
        view.last_author = timers.get("last_author") if isinstance(
            timers.get("last_author"), str) else None
        if isinstance(at, (int, float)):
            view.last_event_at = float(at)
    fired = timers.get("idle_fired_at")
    if isinstance(fired, int) and fired > view.idle_fired_at:
        view.idle_fired_at = fired
    scheduled = timers.get("last_scheduled_at")
    if isinstance(scheduled, (int, float)) and view.last_scheduled_at is None:
        view.last_scheduled_at = float(scheduled)


def next_due(manners: Manners, view: RoomView, now: float) -> float | None:
    """When ``timed_triggers`` will next find something in this view (None: never, until a
    new room event)."""
    due: list[float] = []
    if manners.idle_after_seconds is not None and view.last_event_at is not None \
            and view.idle_fired_at < view.last_position and view.last_author != manners.name:
        due.append(view.last_event_at + manners.idle_after_seconds)
    if manners.every_seconds is not None:
        due.append(now if view.last_scheduled_at is None
                   else view.last_scheduled_at + manners.every_seconds)
    return min(due) if due else None


def _chatty(manners: Manners, view: RoomView, text: str, now: float) -> bool:
    if manners.chattiness <= 0:
        return False
    if view.last_spoke_at is not None and now - view.last_spoke_at < manners.cooldown_seconds:
        return False
    score = relevance(text, manners.interests)
    return score > 0 and score >= 1 - manners.chattiness


def _seconds(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None
