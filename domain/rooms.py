"""The Room aggregate: membership and the ordered message log of one conversation."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import policy
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.ids import agent_id, check_name, new_id, room_id, user_id

MAX_TEXT = 16_000
MAX_TOPIC = 500
MAX_REASON = 500
# Idempotency keys remembered per room; older keys fall out first (deterministic, so replay agrees).
REQUEST_MEMORY = 10_000
MENTION = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9_-]{0,63})")

MODES = ("free", "round_robin", "selector")
Visibility = Literal["public", "private"]
MemberKind = Literal["human", "agent"]


def parse_mentions(text: str) -> list[str]:
    """Handles addressed with ``@name`` in ``text``, lowercased, in order, without repeats."""
    seen: list[str] = []
    for match in MENTION.finditer(text.lower()):
        if match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


class Room(Aggregate):
    """A conversation. Its version is the room's position: gapless, strictly increasing."""

    @staticmethod
    def create_id(name: str, **_: object) -> UUID:
        """Rooms are found by name: the stream id is derived from it."""
        return room_id(name)

    @event("RoomCreated")
    def __init__(self, name: str, topic: str, visibility: str, owner_id: str) -> None:
        self.name = name
        self.topic = topic
        self.visibility = visibility
        self.owner_id = owner_id
        self.members: dict[str, dict[str, str]] = {}
        self.requests: dict[str, list[Any]] = {}
        self.message_ids: dict[str, int] = {}
        self.message_bytes = 0  # UTF-8 bytes of every message text: the thread quota's usage
        self.archived = False
        self.agent_streak = 0
        self.policy: dict[str, Any] = {"mode": "free", "max_agent_streak": 3, "selector": None}
        self.round_robin = 0
        self.forked_from: dict[str, Any] | None = None
        self.rerun_of: str | None = None
        self.overrides: dict[str, dict[str, Any]] = {}

    @classmethod
    def create(cls, name: str, owner_id: str, topic: str = "",
               visibility: str = "public", owner_kind: str = "human") -> Room:
        """Validate and open a new room owned by ``owner_id``."""
        check_name(name, "room")
        if visibility not in ("public", "private"):
            raise Invalid(f"visibility must be 'public' or 'private', not {visibility!r}")
        if len(topic) > MAX_TOPIC:
            raise Invalid(f"a room topic has at most {MAX_TOPIC} characters, got {len(topic)}")
        room = cls(name=name, topic=topic, visibility=visibility, owner_id=owner_id)
        room.join(owner_id, owner_kind, "owner")
        return room

    class RoomForked(Aggregate.Created):
        """A room that begins as a copy of another room's first ``at_position`` events."""

        name: str
        topic: str
        visibility: str
        owner_id: str
        parent_room_id: str
        at_position: int

        def apply(self, aggregate: Any) -> None:
            aggregate.forked_from = {"room": self.parent_room_id, "at": self.at_position}

    @classmethod
    def fork(cls, name: str, parent_events: list[Any], owner_id: str) -> Room:
        """A new room ``name`` whose stream opens with ``RoomForked`` and the parent's prefix.

        ``parent_events`` are the parent's events 1..P; the fork's positions continue from P.
        """
        check_name(name, "room")
        if not parent_events:
            raise Invalid("a fork needs at least the parent's first event")
        parent: Room | None = None
        for e in parent_events:
            parent = e.mutate(parent)
        assert parent is not None
        room = cls._create(cls.RoomForked, id=room_id(name), name=name, topic=parent.topic,
                           visibility=parent.visibility, owner_id=parent.owner_id,
                           parent_room_id=parent.name, at_position=parent.position)
        for e in parent_events[1:]:
            fields = {k: v for k, v in vars(e).items()
                      if k not in ("originator_id", "originator_version", "timestamp", "erased")}
            if isinstance(e, Room.MessagePosted):
                fields.setdefault("redacted", False)  # recorded before messages could be
            room.trigger_event(type(e), timestamp=e.timestamp, **fields)
        if owner_id not in room.members:
            room.join(owner_id, "human")
        return room

    def start_rerun(self, source: str) -> None:
        """Mark this room as a deterministic re-run of ``source`` (agents replay recordings)."""
        if self.rerun_of is not None:
            raise Conflict(f"room {self.name!r} already re-runs {self.rerun_of!r}")
        self._rerun_started(source_room=source)

    @event("RerunStarted")
    def _rerun_started(self, source_room: str) -> None:
        self.rerun_of = source_room

    def override_agent(self, agent: str, changes: dict[str, Any]) -> None:
        """In this room only, run ``agent`` with some definition fields changed (what-ifs)."""
        if self.members.get(agent, {}).get("kind") != "agent":
            raise NotFound(f"agent {agent!r} is not in room {self.name!r}")
        if "name" in changes:
            raise Invalid("an override cannot rename the agent")
        self._agent_overridden(agent=agent, changes=dict(changes))

    @event("AgentOverridden")
    def _agent_overridden(self, agent: str, changes: dict[str, Any]) -> None:
        self.overrides[agent] = {**self.overrides.get(agent, {}), **changes}

    def rules(self) -> dict[str, Any]:
        """What agents need to know of this room to decide and act: policy, re-run, overrides."""
        return {**self.policy, "rerun_of": self.rerun_of, "overrides": dict(self.overrides),
                "forked_from": self.forked_from, "guard": self.guard}

    def describe(self) -> dict[str, Any]:
        """The room's state as plain data (for replay and inspection)."""
        return {"name": self.name, "topic": self.topic, "visibility": self.visibility,
                "owner_id": self.owner_id, "members": dict(self.members),
                "policy": dict(self.policy), "position": self.position,
                "archived": self.archived, "forked_from": self.forked_from,
                "rerun_of": self.rerun_of, "overrides": dict(self.overrides),
                "messages": len(self.message_ids)}

    @property
    def position(self) -> int:
        """The position of the newest event in this room."""
        return int(self.version)

    def agents(self) -> list[str]:
        """Member ids of the agents in this room."""
        return [m for m, info in self.members.items() if info["kind"] == "agent"]

    def may_see(self, member_id: str, is_admin: bool = False) -> bool:
        """Whether ``member_id`` may read this room (direct rooms: only their two members)."""
        return policy.may_read_room(policy.Principal.acting(member_id, is_admin), self.facts())

    def facts(self) -> policy.RoomFacts:
        """What the permission rules need to know of this room."""
        return policy.RoomFacts.named(self.name, self.owner_id, self.visibility, self.members)

    def join(self, member_id: str, kind: str, role: str = "member") -> bool:
        """Add a member; returns False when already a member (nothing is recorded)."""
        if kind not in ("human", "agent"):
            raise Invalid(f"a member is 'human' or 'agent', not {kind!r}")
        if member_id in self.members:
            return False
        self._member_joined(member_id=member_id, member_kind=kind, role=role)
        return True

    # ``member_kind`` rather than the catalogue's ``kind``: every wire event's ``kind`` names
    # the event itself, and a field of the same name would hide it.
    @event("MemberJoined")
    def _member_joined(self, member_id: str, member_kind: str, role: str) -> None:
        self.members[member_id] = {"kind": member_kind, "role": role}

    def leave(self, member_id: str) -> None:
        """Remove a member."""
        if member_id not in self.members:
            raise NotFound(f"{member_id} is not a member of room {self.name!r}")
        self._member_left(member_id=member_id)

    @event("MemberLeft")
    def _member_left(self, member_id: str) -> None:
        self.members.pop(member_id, None)

    def earlier(self, author_id: str, client_msg_id: str | None, request_id: str | None,
                ) -> tuple[str, int] | None:
        """(message_id, position) of the post this request repeats, if it was made already."""
        key = client_msg_id if client_msg_id is not None else request_id
        if key is None:
            return None
        found = self.requests.get(f"{author_id}\x1f{key}")
        return None if found is None else (str(found[0]), int(found[1]))

    def post(self, author_id: str, text: str, reply_to: str | None = None,
             client_msg_id: str | None = None, request_id: str | None = None) -> tuple[str, int]:
        """Post a message; returns (message_id, position). A repeated request posts once."""
        if author_id not in self.members:
            raise Forbidden(f"{author_id} is not a member of room {self.name!r}; join it first")
        self.check_post(text, reply_to)
        earlier = self.earlier(author_id, client_msg_id, request_id)
        if earlier is not None:
            return earlier
        message_id = new_id()
        author_kind = self.members[author_id]["kind"]
        streak = self.agent_streak + 1 if author_kind == "agent" else 0
        self._message_posted(message_id=message_id, author_id=author_id, text=text,
                             reply_to=reply_to, mentions=parse_mentions(text),
                             client_msg_id=client_msg_id, request_id=request_id,
                             author_kind=author_kind, agent_streak=streak,
                             next_speaker=self._next_speaker(author_kind))
        return message_id, self.position

    def check_post(self, text: str, reply_to: str | None = None) -> None:
        """Raise why a message could not be posted here, whoever the author."""
        if self.archived:
            raise Conflict(f"room {self.name!r} is archived; nothing more can be posted")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("a message needs text")
        if len(text) > MAX_TEXT:
            raise Invalid(f"a message has at most {MAX_TEXT} characters, got {len(text)}")
        if reply_to is not None and reply_to not in self.message_ids:
            raise NotFound(f"message {reply_to!r} is not in room {self.name!r}")

    # ``redacted`` is only ever true in a fork's copy of a message redacted before the fork.
    @event("MessagePosted")
    def _message_posted(self, message_id: str, author_id: str, text: str, reply_to: str | None,
                        mentions: list[str], client_msg_id: str | None,
                        request_id: str | None, author_kind: str = "human",
                        agent_streak: int = 0, next_speaker: str | None = None,
                        redacted: bool = False) -> None:
        self.agent_streak = agent_streak
        if next_speaker is not None and self.policy["mode"] == "round_robin":
            self.round_robin += 1
        # Handlers run before the version moves on: this event's position is version + 1.
        position = self.version + 1
        self.message_ids[message_id] = position
        self.message_bytes = getattr(self, "message_bytes", 0) + len(text.encode())
        key = client_msg_id if client_msg_id is not None else request_id
        if key is not None:
            self.requests[f"{author_id}\x1f{key}"] = [message_id, position]
            while len(self.requests) > REQUEST_MEMORY:
                del self.requests[next(iter(self.requests))]

    def _next_speaker(self, author_kind: str) -> str | None:
        """Who the room's policy asks to speak after a person's message (free mode: nobody)."""
        mode = self.policy["mode"]
        if author_kind != "human" or mode == "free":
            return None
        if mode == "selector":
            selector = self.policy.get("selector")
            return str(selector) if selector in self.members else None
        agents = self.agents()
        return agents[self.round_robin % len(agents)] if agents else None

    def set_policy(self, mode: str, max_agent_streak: int = 3,
                   selector: str | None = None) -> None:
        """Choose how agents take turns here: free, round_robin, or selector (a moderator)."""
        if mode not in MODES:
            raise Invalid(f"turn-taking mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not 0 <= max_agent_streak <= 50:
            raise Invalid("max_agent_streak must be between 0 and 50")
        if mode == "selector" and (selector is None or
                                   self.members.get(selector, {}).get("kind") != "agent"):
            raise Invalid("selector mode needs a selector agent that is a member of the room")
        self._policy_changed(mode=mode, max_agent_streak=max_agent_streak, selector=selector)

    @event("RoomPolicyChanged")
    def _policy_changed(self, mode: str, max_agent_streak: int, selector: str | None) -> None:
        self.policy = {"mode": mode, "max_agent_streak": max_agent_streak, "selector": selector}

    def give_feedback(self, message_id: str, member_id: str, rating: int,
                      comment: str | None = None) -> None:
        """Record a member's rating (-1 or 1) of a message."""
        if member_id not in self.members:
            raise Forbidden(f"{member_id} is not a member of room {self.name!r}")
        if message_id not in self.message_ids:
            raise NotFound(f"message {message_id!r} is not in room {self.name!r}")
        if rating not in (-1, 1):
            raise Invalid("a rating is -1 or 1")
        self._feedback_given(message_id=message_id, member_id=member_id, rating=rating,
                             comment=(comment or "")[:2_000] or None)

    @event("FeedbackGiven")
    def _feedback_given(self, message_id: str, member_id: str, rating: int,
                        comment: str | None) -> None:
        self.feedback_count = getattr(self, "feedback_count", 0) + 1

    def redact(self, message_id: str, by: str, reason: str | None = None) -> int:
        """Take back a message: its text is shown to no one again. Returns its position.

        Who may redact (the author, the room's owner, an admin) is the policy's to say
        (``policy.require_may_redact``); the room checks what is its own: the message is
        here and not redacted already.
        """
        position = self.message_ids.get(message_id)
        if position is None:
            raise NotFound(f"message {message_id!r} is not in room {self.name!r}")
        if message_id in self.redactions:
            raise Conflict(f"message {message_id!r} is redacted already")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            raise Invalid(f"a redaction's reason is text of at most {MAX_REASON} characters")
        self._message_redacted(message_id=message_id, by=by, reason=reason or None,
                               message_position=position)
        return position

    @property
    def redactions(self) -> dict[str, int]:
        """The messages redacted here: id -> position of the message."""
        return vars(self).get("redacted_ids", {})

    @event("MessageRedacted")
    def _message_redacted(self, message_id: str, by: str, reason: str | None,
                          message_position: int) -> None:
        self.redacted_ids = {**vars(self).get("redacted_ids", {}), message_id: message_position}

    def keep_redacted(self, by: str) -> None:
        """This fork keeps its copies of messages its parent redacts later (its owner's
        choice, recorded once)."""
        if self.forked_from is None:
            raise Invalid(f"room {self.name!r} is not a fork")
        if not self.forked_from.get("keep_redacted"):
            self._redactions_kept(by=by)

    @event("RedactionsKept")
    def _redactions_kept(self, by: str) -> None:
        self.forked_from = {**(self.forked_from or {}), "keep_redacted": True}

    def archive(self) -> None:
        """Close the room to new messages."""
        if not self.archived:
            self._archived()

    @event("RoomArchived")
    def _archived(self) -> None:
        self.archived = True

    @property
    def guard(self) -> dict[str, Any] | None:
        """The room's guardrail policy as plain data (None: never set, i.e. off)."""
        return getattr(self, "guard_policy", None)

    def set_guard(self, guard_policy: dict[str, Any], by: str) -> None:
        """Record the guardrail policy of this room (the owner's or an admin's; checked by the
        caller through ``domain.policy``). ``guard_policy`` is a validated ``GuardPolicy``."""
        if guard_policy != self.guard:
            self._guard_policy_set(policy=dict(guard_policy), by=by)

    @event("GuardPolicySet")
    def _guard_policy_set(self, policy: dict[str, Any], by: str) -> None:
        self.guard_policy = policy


def direct_room_name(a: tuple[str, str], b: tuple[str, str]) -> str:
    """The private room where members ``a`` and ``b`` write to each other (both ways alike).

    Each member is ``(kind, name)``; the room is keyed by their stream ids, so a person and an
    agent can never share one. Names starting ``dm-`` are reserved: only Salon opens them.
    """
    ids = sorted(str(member_stream_id(kind, name)) for kind, name in (a, b))
    return "dm-" + hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:20]


def member_stream_id(kind: str, name: str) -> UUID:
    """The stream id of a member: a user's for people, an agent's for agents."""
    return agent_id(name) if kind == "agent" else user_id(name)


def check_room_name(name: str) -> str:
    """Validate a room name (re-exported for edges that only need the check)."""
    return check_name(name, "room")
