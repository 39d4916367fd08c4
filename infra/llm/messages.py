"""Vendor-neutral pieces every adapter uses to write a request and read a reply."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from infra.llm.base import ChatMessage, ModelRequest
from infra.llm.failures import ProviderError, failure

FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
TRAILING_COMMA = re.compile(r",\s*([}\]])")

JSON_INSTRUCTION = ("Reply with one JSON object only (no prose, no code fence) that matches "
                    "this JSON schema:\n{schema}")


def said(message: ChatMessage) -> str:
    """A user message's text with its author in front, as chat rooms show it."""
    if message.role == "user" and message.name:
        return f"{message.name}: {message.content}"
    return message.content


def system_prompt(request: ModelRequest) -> str:
    """The system prompt, with the JSON instruction when the request asks for structured output."""
    if request.json_schema is None:
        return request.system
    instruction = JSON_INSTRUCTION.format(schema=json.dumps(request.json_schema))
    return f"{request.system}\n\n{instruction}" if request.system else instruction


def tool_arguments(raw: str | dict[str, Any] | None, label: str, tool: str) -> dict[str, Any]:
    """A native tool call's arguments as a dict (tolerating the usual small JSON slips)."""
    if isinstance(raw, dict):
        return raw
    if not raw or not raw.strip():
        return {}
    try:
        value = lenient_json(raw)
    except ValueError:
        raise _bad_arguments(label, tool, raw) from None
    if not isinstance(value, dict):
        raise _bad_arguments(label, tool, raw)
    return value


def _bad_arguments(label: str, tool: str, raw: str) -> ProviderError:
    return failure(label, "malformed",
                   f"the model called tool {tool!r} with arguments that are not a JSON object: "
                   f"{raw[:120]!r}")


def lenient_json(text: str) -> Any:
    """The JSON object in ``text``, forgiving fences, prose around it, trailing commas and
    Python-literal spelling; ValueError when it still cannot be read."""
    text = FENCE.sub("", text.strip()).strip()
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        text = text[start:end + 1]
    for attempt in (text, TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    try:
        # Python-literal style ({'a': 1, 'b': True}) that small models often produce.
        pythonic = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                                      re.sub(r"\bnull\b", "None", text)))
        return ast.literal_eval(TRAILING_COMMA.sub(r"\1", pythonic))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("it is not valid JSON") from None
