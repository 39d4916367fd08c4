"""What every tool is: a name, a description, an arguments model and an async ``run``.

A tool reports failure by raising an error from ``domain.errors`` (``Forbidden`` for a refusal,
``Invalid`` for bad input, ``Unavailable`` for a missing service) or ``TimeoutError``; the
executor turns each into a ``ToolOutcome`` the model can read, so nothing here raises past it.
"""

from __future__ import annotations

import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from domain.errors import Invalid

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_OUTPUT_CHARS = 8_000

ToolStatus = Literal["ok", "error", "refused", "timeout"]
MemberLister = Callable[[], Awaitable[list[dict[str, Any]]]]
DirectMessenger = Callable[[str, str], Awaitable[dict[str, Any]]]
KnowledgeSearcher = Callable[[str, int], Awaitable[list[dict[str, Any]]]]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool may know and reach during one call: who calls, where, and room access.

    The agent actor provides the async callables; a tool whose callable is ``None`` reports
    that the service is not available rather than failing.
    """

    agent: str
    room: str
    allowed_hosts: frozenset[str] = frozenset()
    clock: Callable[[], datetime] = utc_now
    list_members: MemberLister | None = None
    send_direct_message: DirectMessenger | None = None
    search_knowledge: KnowledgeSearcher | None = None

    def __post_init__(self) -> None:
        hosts = frozenset(h.strip().lower() for h in self.allowed_hosts if h.strip())
        object.__setattr__(self, "allowed_hosts", hosts)


class ToolOutcome(BaseModel):
    """The result of one tool call as the model sees it and the agent's stream records it."""

    status: ToolStatus
    result: str
    duration_ms: float
    cached: bool = False


A = TypeVar("A", bound=BaseModel)


class Tool(ABC, Generic[A]):
    """A tool declared as a class: set ``name``, ``description`` and ``args_model``, write ``run``.

    ``permissions`` names what the agent must be granted (e.g. ``{"network"}``);
    ``cacheable_for`` lets the executor reuse a result for equal arguments; ``timeout`` bounds
    one call in seconds; ``max_output_chars`` caps the result the model sees.
    """

    name: str
    description: str
    args_model: type[A]
    permissions: frozenset[str] = frozenset()
    cacheable_for: timedelta | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "description" not in cls.__dict__ and cls.__doc__:
            cls.description = reflow(cls.__doc__)

    @abstractmethod
    async def run(self, args: A, ctx: ToolContext) -> Any:
        """Do the work; return a string or anything JSON-able."""

    def authorize(self, args: A, ctx: ToolContext) -> None:
        """Refuse (raise ``Forbidden``) a call this context may not make; runs before the cache."""

    def parse(self, arguments: Any) -> A:
        """Validate the model's arguments, or raise ``Invalid`` saying how to fix them."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise Invalid(f"the arguments of {self.name} must be a JSON object, not "
                          f"{type(arguments).__name__}; {self.parameter_summary()}")
        try:
            return self.args_model.model_validate(arguments)
        except ValidationError as error:
            raise Invalid(describe_validation_error(self, error)) from None

    def spec(self) -> dict[str, Any]:
        """The tool as a model sees it: ``{"name", "description", "parameters"}``."""
        return {"name": self.name, "description": self.description,
                "parameters": tidy_schema(self.args_model.model_json_schema())}

    def parameter_summary(self) -> str:
        """One line naming each parameter, its type and whether it is required."""
        schema = self.spec()["parameters"]
        required = set(schema.get("required", []))
        parts = [f"{name} ({_type_name(sub)}, {'required' if name in required else 'optional'})"
                 for name, sub in schema.get("properties", {}).items()]
        return "parameters: " + (", ".join(parts) if parts else "none")

    def check_declaration(self) -> None:
        """Raise ``Invalid`` if the class is missing what a tool needs."""
        name = getattr(self, "name", None)
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise Invalid(f"tool name {name!r} is not valid; use 1-64 letters, digits, '_' or '-'")
        args_model = getattr(self, "args_model", None)
        if not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
            raise Invalid(f"tool {name!r} needs an args_model that is a pydantic BaseModel class")
        if not getattr(self, "description", "").strip():
            raise Invalid(f"tool {name!r} needs a description; the model chooses tools by it")
        if self.timeout <= 0 or self.max_output_chars <= 0:
            raise Invalid(f"tool {name!r} needs a positive timeout and max_output_chars")


def reflow(doc: str) -> str:
    """A docstring as paragraphs of single lines, which read better in a prompt."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def render_result(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if isinstance(value, str):
        return value
    if value is None:
        return "done"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError:
        return str(value)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters and say so, so the model knows it saw a part."""
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[output truncated: showing the first {limit} of {len(text)} "
            "characters; ask for less to see the rest]")


def tidy_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles, which cost tokens and tell a model nothing."""

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if in_properties:  # keys here are parameter names, even one called "title"
            return {key: walk(value) for key, value in node.items()}
        return {key: walk(value, in_properties=key in ("properties", "$defs"))
                for key, value in node.items()
                if not (key == "title" and isinstance(value, str))}

    tidy: dict[str, Any] = walk(schema)
    tidy.setdefault("type", "object")
    tidy.setdefault("properties", {})
    return tidy


def describe_validation_error(tool: Tool[Any], error: ValidationError) -> str:
    """A pydantic error as one sentence per problem, ending with how to call the tool."""
    problems: list[str] = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        if item["type"] == "missing":
            problems.append(f"'{where}' is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"'{where}' is not a parameter of this tool")
        else:
            given = repr(item.get("input"))
            given = given if len(given) <= 60 else given[:57] + "..."
            problems.append(f"'{where}': {item['msg']} (got {given})")
    return (f"invalid arguments for {tool.name}: " + "; ".join(problems)
            + f". Expected {tool.parameter_summary()}. Call it again with corrected arguments.")


def _type_name(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return str(schema["type"])
    options: Iterable[dict[str, Any]] = schema.get("anyOf", [])
    names = [_type_name(option) for option in options]
    return " or ".join(names) if names else "any"
