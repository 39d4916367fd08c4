"""The provider interface: a request in, a completion (or a stream of deltas) out.

Every adapter maps our types to its vendor's and back; no vendor type leaves ``infra/llm``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """A model asking to run a tool."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """A tool offered to a model: its name, what it does, and its JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                 "properties": {}})


class ChatMessage(BaseModel):
    """One message the model sees. ``tool`` messages carry a tool's result."""

    role: Literal["user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None


class ModelRequest(BaseModel):
    """Everything a model call needs: prompt, history, tools and sampling parameters."""

    model: str
    system: str = ""
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(default_factory=list)
    temperature: float = 0.7
    max_tokens: int = 1024
    # Structured output: the JSON schema the reply must match (see ``infra.llm.structured``).
    json_schema: dict[str, Any] | None = None
    # Seconds a call may take (and a stream may stall) before it counts as timed out.
    timeout_seconds: float | None = None


class Usage(BaseModel):
    """Tokens a call used; ``estimated`` when the vendor did not report them."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False


class Completion(BaseModel):
    """What a model said, what it cost, and who said it."""

    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    provider: str
    model: str
    # "provider:model" of the provider that failed before this one answered, if any.
    fallback_from: str | None = None
    # Time spent in the provider for this reply, retries and rate-limit waits included.
    latency_ms: float = 0.0
    # How the reply ended: "stop", "tool_calls", "length", … as the vendor said it.
    finish_reason: str | None = None


class Delta(BaseModel):
    """A piece of text as a model streams it."""

    text: str


class Provider(Protocol):
    """Every model, local or remote, behind one async interface."""

    name: str

    async def complete(self, request: ModelRequest) -> Completion:
        """The whole reply at once."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Text deltas as they come, then exactly one Completion (the whole reply, usage)."""
        ...


def estimate_tokens(text: str) -> int:
    """A documented estimate for models without a tokenizer here: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0
