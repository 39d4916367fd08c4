"""Structured output: a reply that is JSON matching a pydantic model, or a clear failure.

The request carries the model's JSON schema (``ModelRequest.json_schema``): every adapter
adds an instruction to the system prompt, and vendors with a JSON mode get it switched on.
A reply that is not valid JSON for the schema is sent back once with the validation error;
a second invalid reply fails with ``Invalid`` saying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from domain.errors import Invalid
from infra.llm.base import ChatMessage, Completion, ModelRequest, Provider
from infra.llm.messages import FENCE, lenient_json

M = TypeVar("M", bound=BaseModel)
MAX_ERROR = 600


@dataclass
class Structured(Generic[M]):
    """The validated value, and every completion it took (record each as a model call)."""

    value: M
    completions: list[Completion] = field(default_factory=list)


def read(text: str, schema: type[M]) -> M:
    """``text`` as an instance of ``schema``; ValueError saying what is wrong otherwise."""
    body = FENCE.sub("", text.strip()).strip()
    try:
        return schema.model_validate_json(body)
    except ValidationError as strict_error:
        try:
            data = lenient_json(body)
        except ValueError:
            raise ValueError(_short(strict_error)) from None
        try:
            return schema.model_validate(data)
        except ValidationError as error:
            raise ValueError(_short(error)) from None


async def complete_json(provider: Provider, request: ModelRequest,
                        schema: type[M]) -> Structured[M]:
    """Ask for JSON matching ``schema``; one retry with the validation error, then Invalid."""
    asked = request.model_copy(update={"json_schema": schema.model_json_schema(), "tools": []})
    first = await provider.complete(asked)
    try:
        return Structured(read(first.text, schema), [first])
    except ValueError as error:
        problem = str(error)
    retry = asked.model_copy(update={"messages": [
        *asked.messages, ChatMessage(role="assistant", content=first.text),
        ChatMessage(role="user", name="salon", content=(
            f"That reply is not valid: {problem}. Reply again with only a JSON object that "
            "matches the schema."))]})
    second = await provider.complete(retry)
    try:
        return Structured(read(second.text, schema), [first, second])
    except ValueError as error:
        raise Invalid(f"model {request.model!r} did not reply with JSON matching "
                      f"{schema.__name__}, even after being told what was wrong: {error}. "
                      "Use a model with JSON output, or simplify the schema") from None


def _short(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}"
             for e in error.errors()[:5]]
    return "; ".join(parts)[:MAX_ERROR]
