"""Who may do what to which room or agent: the one home of Salon's permission rules.

``SECURITY.md`` is this module's prose. Handlers ask it (``require_*``) and raise what it
raises; nothing else in the code decides on its own whether a principal is an admin, an owner
or a member. Every frame type of the protocol has its rule in ``FRAME_RULES``; the security
tests run each frame as each kind of principal against that table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from domain.errors import Forbidden

Role = Literal["admin", "member"]

# Names no person may give a room: direct-message rooms are opened by Salon only.
RESERVED_ROOM_PREFIXES = ("dm-",)

ADMIN_GRANTS = "an admin can grant it with `salon grant` or the `grant` frame"


@dataclass(frozen=True)
class Principal:
    """An authenticated user (person or program holding a token)."""

    name: str
    role: str = "member"
    # When the token this principal signed in with expires (seconds since the epoch).
    expires_at: float | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def acting(cls, name: str, is_admin: bool = False) -> Principal:
        """The principal a lower layer was handed as (name, is_admin) by the gateway."""
        return cls(name, "admin" if is_admin else "member")


@dataclass(frozen=True)
class RoomFacts:
    """What the rules need to know of a room."""

    name: str
    owner_id: str
    visibility: str
    members: Mapping[str, Any]
    direct: bool = False

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> RoomFacts:
        """From a room actor's ``info()``."""
        return cls(str(info["name"]), str(info["owner_id"]), str(info["visibility"]),
                   dict(info["members"]), bool(info.get("direct", False)))

    @classmethod
    def named(cls, name: str, owner_id: str, visibility: str,
              members: Mapping[str, Any]) -> RoomFacts:
        """From a room's fields; whether it is a direct room follows from its name."""
        return cls(name, owner_id, visibility, members, name.startswith(RESERVED_ROOM_PREFIXES))


@dataclass(frozen=True)
class AgentFacts:
    """What the rules need to know of an agent."""

    name: str
    owner_id: str
    joinable: bool = False


# The rule each frame is checked against, by frame type. ``anyone``: no token needed;
# ``user``: any authenticated principal (what they reach is filtered to what they may see);
# ``room_reader``: may read the target room (public, a member, or admin); ``room_owner``;
# ``agent_owner``: owner of the target agent or admin; ``agent_user``: ``agent_owner``, or the
# agent is joinable; ``self_or_admin``: about oneself, or an admin about anyone; ``self``:
# about oneself only, admins included (consent is the person's own); ``admin``.
FRAME_RULES: dict[str, str] = {
    "hello": "anyone",
    "whoami": "user",
    "list_rooms": "user",
    "create_room": "user",
    "list_agents": "user",
    "create_agent": "user",
    "join": "room_reader",
    "leave": "user",
    "say": "room_reader",
    "history": "room_reader",
    "feedback": "room_reader",
    "invoke": "room_reader",
    "fork": "room_reader",
    "replay": "room_reader",
    "diff": "room_reader",
    "export": "room_reader",          # kind=room; kind=agent: agent_owner
    "set_policy": "room_owner",
    "add_member": "room_owner",
    "add_agent": "agent_user",        # and the room: its members
    "override": "agent_owner",        # and the room: its members
    "redefine_agent": "agent_owner",
    "command": "agent_owner",
    "show_agent": "user",             # others see only the public parts
    "agent_state": "user",            # others see only the public parts
    "memories": "agent_owner",
    "add_memory": "agent_owner",
    "delete_memory": "agent_owner",
    "memory_upkeep": "agent_owner",
    "facts": "self_or_admin",
    "forget_fact": "self_or_admin",
    "knowledge": "knowledge_reader",
    "add_document": "admin",
    "share_knowledge": "admin",
    "create_token": "admin",
    "revoke_token": "admin",
    "grant": "admin",
    "grants": "self_or_admin",
    "emergency_stop": "admin",
    "rerun": "admin",
    "import": "admin",
    "set_guard": "room_owner",        # the room's guardrail policy
    "set_agent_guard": "agent_owner", # the agent's guardrail override
    "redact": "room_reader",          # and the message: its author, the room's owner, admins
    "keep_redacted": "room_owner",    # a fork's owner keeps copies its parent redacts later
    "forget_me": "user",
    "forget_user": "admin",
    "rotate_keys": "admin",
    # Consent (SECURITY.md): a person sets only their own, and sees and deletes only what
    # agents remember about them.
    "set_consent": "self",
    "consent": "self_or_admin",
    "my_memories": "user",            # only memories and facts about the caller
    "forget_memory": "user",          # only a memory about the caller
}


def require_admin(user: Principal, doing: str) -> None:
    """Only admins may ``doing``."""
    if not user.is_admin:
        raise Forbidden(f"only an admin may {doing}")


def has_quotas(user: Principal) -> bool:
    """Members are bound by the per-principal quotas (rooms, agents, invokes, spend); admins
    are not."""
    return not user.is_admin


def may_grant(user: Principal) -> bool:
    """Only admins grant capabilities: an admin's definition is its own grant."""
    return user.is_admin


EVERYONE = "*"


def may_read_collection(user: Principal, owner: str, readers: list[str]) -> bool:
    """Admins, a knowledge collection's owner, and the readers named ('*': everyone)."""
    return user.is_admin or user.name == owner or user.name in readers or EVERYONE in readers


def may_read_room(user: Principal, room: RoomFacts) -> bool:
    """Public rooms are open to every user; private ones to their members (and admins)."""
    if room.direct:
        return user.name in room.members
    if user.is_admin:
        return True
    return room.visibility == "public" or user.name in room.members


def require_room_reader(user: Principal, room: RoomFacts) -> None:
    """Refuse a user who may not read ``room``."""
    if not may_read_room(user, room):
        what = "a direct-message room of other people" if room.direct else "private"
        raise Forbidden(f"room {room.name!r} is {what}; ask its owner to add you")


def require_room_member(user: Principal, room: RoomFacts, doing: str) -> None:
    """Refuse a user who is not a member of ``room`` (admins may act in any room)."""
    require_room_reader(user, room)
    if not user.is_admin and user.name not in room.members:
        raise Forbidden(f"only members of room {room.name!r} may {doing}; join it first")


def require_room_owner(user: Principal, room: RoomFacts, doing: str) -> None:
    """Refuse anyone but the room's owner and admins."""
    if not user.is_admin and user.name != room.owner_id:
        raise Forbidden(f"only the owner of room {room.name!r} ({room.owner_id}) or an admin "
                        f"may {doing}")


def may_control_agent(user: Principal, agent: AgentFacts) -> bool:
    """Owners and admins redefine, override, pause, stop and export an agent."""
    return user.is_admin or user.name == agent.owner_id


def require_agent_owner(user: Principal, agent: AgentFacts, doing: str) -> None:
    """Refuse anyone but the agent's owner and admins."""
    if not may_control_agent(user, agent):
        raise Forbidden(f"only the owner of agent {agent.name!r} ({agent.owner_id}) or an "
                        f"admin may {doing}")


def may_use_agent(user: Principal, agent: AgentFacts) -> bool:
    """Owners, admins, and anyone when the owner marked the agent joinable."""
    return agent.joinable or may_control_agent(user, agent)


def require_agent_user(user: Principal, agent: AgentFacts, doing: str) -> None:
    """Owners, admins, and anyone when the owner marked the agent joinable."""
    if not may_use_agent(user, agent):
        require_agent_owner(user, agent, doing + " (its owner has not marked it joinable)")


def require_may_redact(user: Principal, room: RoomFacts, author: str) -> None:
    """A message is taken back by its author, the room's owner, or an admin."""
    require_room_reader(user, room)
    if not user.is_admin and user.name not in (author, room.owner_id):
        raise Forbidden(f"only the author of a message ({author}), the owner of room "
                        f"{room.name!r} ({room.owner_id}) or an admin may redact it")


def require_self_or_admin(user: Principal, about: str | None, doing: str) -> None:
    """People manage what is about themselves; admins about anyone."""
    if about is not None and about != user.name and not user.is_admin:
        raise Forbidden(f"only {about} or an admin may {doing}")


def check_room_name(user: Principal, name: str) -> None:
    """Refuse names reserved for rooms Salon opens itself (direct messages)."""
    if name.startswith(RESERVED_ROOM_PREFIXES):
        raise Forbidden(f"room names starting with {', '.join(RESERVED_ROOM_PREFIXES)} are "
                        "reserved for direct messages, which Salon opens itself; pick another "
                        "name")


# What others see of an agent they do not control: who it is, never how it is wired.
PUBLIC_AGENT_FIELDS = ("name", "template", "role", "goal", "persona", "personality",
                       "interests", "expertise", "joinable")


def public_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a definition anyone may see: no endpoints, key names, tools or scripts."""
    return {k: definition[k] for k in PUBLIC_AGENT_FIELDS if k in definition}


def agent_view(user: Principal, info: Mapping[str, Any]) -> dict[str, Any]:
    """An agent's ``info`` as ``user`` may see it."""
    agent = AgentFacts(str(info["name"]), str(info["owner_id"]))
    if may_control_agent(user, agent):
        return dict(info)
    return {"name": info["name"], "status": info.get("status"), "owner_id": info["owner_id"],
            "definition": public_definition(info.get("definition") or {}),
            "public_only": True}


@dataclass(frozen=True)
class Authority:
    """Who a turn acts for: the principal behind its trigger, and what they hold."""

    name: str
    is_admin: bool
    permissions: frozenset[str]


def deputy_refusal(tool: str, needs: frozenset[str], owner: str, authority: Authority,
                   safe_here: bool) -> str | None:
    """Why a privileged tool call in a turn must be refused, or None when it may run.

    A turn acts with its owner's authority limited by whoever triggered it: a privileged tool
    runs only if the triggering principal is the owner, an admin, holds the permissions
    themselves, or the owner marked the tool safe for everyone in this room.
    """
    if not needs or safe_here or authority.is_admin or authority.name == owner:
        return None
    missing = sorted(needs - authority.permissions)
    if not missing:
        return None
    return (f"tool {tool!r} needs {', '.join(missing)}, which {authority.name} (who asked for "
            f"this turn) does not hold; the agent's owner ({owner}) can mark the tool safe for "
            "everyone in this room with `tools_for_everyone`, or an admin can grant "
            f"{authority.name} the permission")


def require_judge_allowed(user: Principal, provider: str, free: frozenset[str],
                          granted_providers: frozenset[str]) -> None:
    """A guardrail judge spends like an agent's model: a paid provider needs an admin or a
    grant of that provider to whoever names the judge."""
    if provider in free or user.is_admin or provider in granted_providers:
        return
    raise Forbidden(f"a judge on provider {provider!r} spends the operator's money; "
                    f"{ADMIN_GRANTS}, or use a free one ({', '.join(sorted(free))})")
def require_self(user: Principal, about: str | None, doing: str) -> None:
    """What only the person themselves may do, whoever asks (an admin too): their consent."""
    if about is not None and about != user.name:
        raise Forbidden(f"only {about} may {doing}; a person's consent is their own")
