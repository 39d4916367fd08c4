"""The provider interface: a request in, a completion (or a stream of deltas) out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    """One message the model sees."""

    role: Literal["user", "assistant"]
    content: str
    name: str | None = None


class ModelRequest(BaseModel):
    """Everything a model call needs: prompt, history, tools and sampling parameters."""

    model: str
    system: str = ""
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    temperature: float = 0.7
    max_tokens: int = 1024


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class Completion(BaseModel):
    """What a model said, what it cost, and who said it."""

    text: str
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    provider: str
    model: str


class Provider(Protocol):
    """Every model, local or remote, behind one async interface."""

    name: str

    async def complete(self, request: ModelRequest) -> Completion: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[str]: ...


def estimate_tokens(text: str) -> int:
    """A documented estimate for models without a tokenizer here: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0
