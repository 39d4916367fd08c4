"""Protocol v1 frames: parse a text frame into a typed request, or say precisely what is wrong."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from domain.errors import Invalid, SalonError
from domain.ids import NAME_PATTERN
from domain.rooms import MAX_REASON, MAX_TEXT, MAX_TOPIC
from domain.wire import encode

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN.pattern)]
RequestId = str | int | None
Short = Annotated[str, StringConstraints(max_length=4_000)]


class Frame(BaseModel, extra="forbid"):
    id: RequestId = None


class Hello(Frame):
    type: Literal["hello"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Join(Frame):
    type: Literal["join"]
    room: Name
    since: Annotated[int, Field(ge=0, strict=True)] | None = None


class Leave(Frame):
    type: Literal["leave"]
    room: Name


class Say(Frame):
    type: Literal["say"]
    room: Name
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    reply_to: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    client_msg_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class Invoke(Frame):
    type: Literal["invoke"]
    room: Name
    agent: Name
    prompt: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None


class Feedback(Frame):
    type: Literal["feedback"]
    room: Name
    message_id: str
    rating: Literal[-1, 1]
    comment: Short | None = None


class Command(Frame):
    type: Literal["command"]
    agent: Name
    command: Literal["pause", "resume", "stop"]


class History(Frame):
    type: Literal["history"]
    room: Name
    before: Annotated[int, Field(ge=1, strict=True)] | None = None
    limit: Annotated[int, Field(ge=1, le=500, strict=True)] | None = None


class Fork(Frame):
    type: Literal["fork"]
    room: Name
    # v1 requires ``at``; ``message_id`` (fork just after that message) is an optional extension.
    at: Annotated[int, Field(ge=1, strict=True)] | None = None
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    name: Name | None = None
    # Optional extension: keep copies of messages the parent redacts later (the fork's rule).
    keep_redacted: bool = False

    @model_validator(mode="after")
    def _one_point(self) -> Fork:
        if (self.at is None) == (self.message_id is None):
            raise ValueError("give the fork point as either at (a position) or message_id")
        return self


class Replay(Frame):
    type: Literal["replay"]
    room: Name
    at: Annotated[int, Field(ge=1, strict=True)]


class AgentState(Frame):
    type: Literal["agent_state"]
    agent: Name
    version: Annotated[int, Field(ge=1, strict=True)] | None = None


class Export(Frame):
    type: Literal["export"]
    kind: Literal["room", "agent"]
    name: Name


class Diff(Frame):
    type: Literal["diff"]
    room: Name
    other: Name


class Rerun(Frame):
    type: Literal["rerun"]
    room: Name
    name: Name | None = None


class Override(Frame):
    type: Literal["override"]
    room: Name
    agent: Name
    changes: dict[str, Any]


class Import(Frame):
    type: Literal["import"]
    data: Annotated[str, StringConstraints(min_length=1)]


# Extensions of v1 (new frame types only): what the CLI and the web page need to manage things.
class ListRooms(Frame):
    type: Literal["list_rooms"]


class CreateRoom(Frame):
    type: Literal["create_room"]
    name: Name
    topic: Annotated[str, StringConstraints(max_length=MAX_TOPIC)] = ""
    visibility: Literal["public", "private"] = "public"


class ListAgents(Frame):
    type: Literal["list_agents"]


class CreateAgent(Frame):
    type: Literal["create_agent"]
    definition: dict[str, Any]


class AddAgent(Frame):
    type: Literal["add_agent"]
    room: Name
    agent: Name


class CreateToken(Frame):
    type: Literal["create_token"]
    user: Name
    role: Literal["admin", "member"] = "member"
    # The token stops working after this many days (default: SALON_TOKEN_DAYS, else never).
    days: Annotated[float, Field(gt=0, le=3650)] | None = None


class RevokeToken(Frame):
    """Stop every token of ``user``; their open connections close with 4401 (admins)."""

    type: Literal["revoke_token"]
    user: Name


class Grant(Frame):
    """Set the capabilities a user may hand to their agents, or that one agent holds (admins).

    ``capabilities`` is ``{"permissions": [...], "hosts": [...], "providers": [...],
    "endpoints": [...]}``; it replaces what was granted before.
    """

    type: Literal["grant"]
    user: Name | None = None
    agent: Name | None = None
    capabilities: dict[str, list[Annotated[str, StringConstraints(max_length=200)]]]

    @model_validator(mode="after")
    def _one_grantee(self) -> Grant:
        if (self.user is None) == (self.agent is None):
            raise ValueError("grant to either a user or an agent")
        return self


class Grants(Frame):
    """What a user was granted (yourself, or anyone for admins)."""

    type: Literal["grants"]
    user: Name | None = None


class Whoami(Frame):
    type: Literal["whoami"]


class ShowAgent(Frame):
    type: Literal["show_agent"]
    agent: Name


class RedefineAgent(Frame):
    type: Literal["redefine_agent"]
    definition: dict[str, Any]


class EmergencyStop(Frame):
    type: Literal["emergency_stop"]
    reason: Short = ""


class SetPolicy(Frame):
    type: Literal["set_policy"]
    room: Name
    mode: Literal["free", "round_robin", "selector"]
    max_agent_streak: Annotated[int, Field(ge=0, le=50, strict=True)] = 3
    selector: Name | None = None


class Memories(Frame):
    """List an agent's memories, or search them (scores in parts) when ``query`` is given."""

    type: Literal["memories"]
    agent: Name
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)] | None = None
    kind: Literal["episodic", "semantic", "procedural", "social"] | None = None
    limit: Annotated[int, Field(ge=1, le=200, strict=True)] = 20


class AddMemory(Frame):
    type: Literal["add_memory"]
    agent: Name
    content: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    kind: Literal["episodic", "semantic", "procedural", "social"] = "semantic"
    importance: Annotated[int, Field(ge=1, le=10, strict=True)] | None = None


class DeleteMemory(Frame):
    type: Literal["delete_memory"]
    agent: Name
    memory_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MemoryUpkeep(Frame):
    """Run an agent's memory upkeep now: merge near-duplicates, forget, apply retention."""

    type: Literal["memory_upkeep"]
    agent: Name


class Facts(Frame):
    """Facts an agent holds about the caller (admins: about ``about``)."""

    type: Literal["facts"]
    agent: Name
    about: Name | None = None


class ForgetFact(Frame):
    type: Literal["forget_fact"]
    agent: Name
    fact_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    about: Name | None = None


MAX_DOCUMENT_CHARS = 1_000_000
Collection = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


class AddDocument(Frame):
    """Chunk, embed and store a document in a knowledge-base collection (admins)."""

    type: Literal["add_document"]
    collection: Collection
    title: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    # At most 4 bytes a character, so the frame stays under the 4 MiB frame limit.
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)]


class Knowledge(Frame):
    """A collection's documents, or its passages nearest ``query``."""

    type: Literal["knowledge"]
    collection: Collection
    query: Annotated[str, StringConstraints(min_length=1, max_length=1_000)] | None = None
    k: Annotated[int, Field(ge=1, le=50, strict=True)] = 5


class AddMember(Frame):
    """Add a person to a room (its owner or an admin): how private rooms get members."""

    type: Literal["add_member"]
    room: Name
    user: Name


class ShareKnowledge(Frame):
    """Name who may search a collection besides its owner and admins ('*': everyone)."""

    type: Literal["share_knowledge"]
    collection: Collection
    readers: list[Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$")]] \
        = Field(max_length=1_000)


class SetGuard(Frame):
    """The room's guardrail policy (its owner or an admin): see ``domain/guardrails.py``."""

    type: Literal["set_guard"]
    room: Name
    policy: dict[str, Any]


class SetAgentGuard(Frame):
    """The agent's guardrail override (its owner or an admin); ``null`` clears it."""

    type: Literal["set_agent_guard"]
    agent: Name
    policy: dict[str, Any] | None


class Redact(Frame):
    """Take back a message: its author, the room's owner or an admin."""

    type: Literal["redact"]
    room: Name
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    reason: Annotated[str, StringConstraints(max_length=MAX_REASON)] | None = None


class KeepRedacted(Frame):
    """A fork's owner keeps its copies of messages its parent redacts later."""

    type: Literal["keep_redacted"]
    room: Name


class ForgetMe(Frame):
    """Erase everything one has said; ``confirm`` repeats one's own name."""

    type: Literal["forget_me"]
    confirm: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ForgetUser(Frame):
    """An admin erases a person's words."""

    type: Literal["forget_user"]
    user: Name


class RotateKeys(Frame):
    """An admin re-wraps every data key under a new master key."""

    type: Literal["rotate_keys"]


# Consent: whether agents may remember the caller, and what they remember about them.
class SetConsent(Frame):
    """The caller's consent to agents forming memories and facts about them (in ``room``, or
    by default); naming another ``user`` is refused: a person sets only their own."""

    type: Literal["set_consent"]
    memory: Literal["on", "off"]
    room: Name | None = None
    user: Name | None = None


class Consent(Frame):
    """The caller's consent settings (admins: ``user``'s)."""

    type: Literal["consent"]
    user: Name | None = None


class MyMemories(Frame):
    """What agents (or ``agent``) remember about the caller: memories and facts."""

    type: Literal["my_memories"]
    agent: Name | None = None
    limit: Annotated[int, Field(ge=1, le=1_000, strict=True)] = 200


class ForgetMemory(Frame):
    """Delete one memory an agent holds about the caller (its source is theirs)."""

    type: Literal["forget_memory"]
    agent: Name
    memory_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


Request = Annotated[
    Hello | Join | Leave | Say | Invoke | Feedback | Command | History | Fork | ListRooms
    | CreateRoom | ListAgents | CreateAgent | AddAgent | CreateToken | Whoami | ShowAgent
    | RedefineAgent | EmergencyStop | SetPolicy | Replay | AgentState | Export | Import
    | Diff | Rerun | Override | Memories | AddMemory | DeleteMemory | MemoryUpkeep | Facts
    | ForgetFact
    | AddDocument | Knowledge | RevokeToken | Grant | Grants | ShareKnowledge
    | AddMember | SetGuard | SetAgentGuard
    | Redact | KeepRedacted | ForgetMe | ForgetUser | RotateKeys
    | SetConsent | Consent | MyMemories | ForgetMemory,
    Field(discriminator="type"),
]
_REQUEST: TypeAdapter[Any] = TypeAdapter(Request)
TYPES = ("hello", "join", "leave", "say", "invoke", "feedback", "command", "history", "fork",
         "list_rooms", "create_room", "list_agents", "create_agent", "add_agent", "create_token",
         "whoami", "show_agent", "redefine_agent", "emergency_stop", "set_policy", "replay",
         "agent_state", "export", "import", "diff", "rerun", "override", "memories",
         "add_memory", "delete_memory", "memory_upkeep", "facts", "forget_fact",
         "add_document", "knowledge", "revoke_token", "grant", "grants", "share_knowledge",
         "add_member", "set_guard", "set_agent_guard",
         "redact", "keep_redacted", "forget_me", "forget_user", "rotate_keys",
         "set_consent", "consent", "my_memories", "forget_memory")
MAX_DEPTH = 32


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON ``value`` nests deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def request_id_of(raw: Any) -> RequestId:
    """The ``id`` of a frame, if it carries a usable one, so even errors can be correlated."""
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) <= 128:
            return value
    return None


def parse(text: str | bytes) -> tuple[Any, RequestId]:
    """(typed request, its id) from one frame, or raise Invalid with the frame's id."""
    if isinstance(text, bytes):
        raise Invalid("frames are JSON text frames, not binary")
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise Invalid(f"a frame must be JSON: {error}") from None
    except RecursionError:
        raise Invalid(f"a frame may nest at most {MAX_DEPTH} levels deep") from None
    if not isinstance(raw, dict):
        raise Invalid("a frame must be a JSON object")
    if _too_deep(raw):
        raise FrameInvalid(f"a frame may nest at most {MAX_DEPTH} levels deep",
                           request_id_of(raw))
    kind = raw.get("type")
    if kind not in TYPES:
        raise FrameInvalid(f"unknown frame type {kind!r}; expected one of {', '.join(TYPES)}",
                           request_id_of(raw))
    try:
        return _REQUEST.validate_python(raw), request_id_of(raw)
    except ValidationError as error:
        raise FrameInvalid(describe(error), request_id_of(raw)) from None


class FrameInvalid(Invalid):
    """An invalid frame whose ``id`` is known."""

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.request_id = request_id

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.request_id))


def describe(error: ValidationError) -> str:
    """One line per problem: where it is and what is wrong."""
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"][1:]) or "frame"
        message = item["msg"]
        if item["type"] == "string_too_long":
            limit = (item.get("ctx") or {}).get("max_length")
            message = f"too long (at most {limit} characters)"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def describe_plain(error: ValidationError) -> str:
    """Like ``describe`` for a model validated on its own (no union tag in the path)."""
    return "; ".join(f"{'.'.join(str(x) for x in item['loc']) or 'value'}: {item['msg']}"
                     for item in error.errors()[:5])


def ok(request_id: RequestId, result: dict[str, Any]) -> str:
    return encode({"type": "ok", "id": request_id, "result": result})


def error(request_id: RequestId, failure: SalonError) -> str:
    return encode({"type": "error", "id": request_id, "code": failure.code,
                   "message": failure.message})
