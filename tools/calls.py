"""Tool calls written as text, for models without native tool calling.

Such a model is told (``render_tool_instructions``) to write
``<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>``;
``parse_tool_calls`` finds those blocks in its reply. Parsing is forgiving where the intent is
clear (code fences, trailing commas, arguments sent as a JSON string, a missing closing tag
where a stop sequence cut it) and otherwise reports each bad block in words the model can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
EXAMPLE = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'

_OPEN = re.compile(r"<tool_call\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"</tool_call\s*>", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


class ParsedToolCall(BaseModel):
    """A tool call read from text; the same fields as ``infra.llm.ToolCall``."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


def parse_tool_calls(text: str, id_prefix: str = "call",
                     ) -> tuple[str, list[ParsedToolCall], list[str]]:
    """Split a reply into its prose, the tool calls in it, and one message per unreadable block."""
    prose: list[str] = []
    calls: list[ParsedToolCall] = []
    errors: list[str] = []
    position = 0
    block = 0
    while (opening := _OPEN.search(text, position)) is not None:
        prose.append(text[position:opening.start()])
        block += 1
        closing = _CLOSE.search(text, opening.end())
        body = text[opening.end():closing.start() if closing else len(text)]
        position = closing.end() if closing else len(text)
        found, problem = _read_block(body, block)
        if problem is not None:
            if closing is None:
                problem += f"; end each call with {CLOSE_TAG}"
            errors.append(problem)
        for name, arguments in found:
            calls.append(ParsedToolCall(id=f"{id_prefix}-{len(calls) + 1}", name=name,
                                        arguments=arguments))
    prose.append(text[position:])
    remaining = re.sub(r"\n{3,}", "\n\n", "".join(prose)).strip()
    return remaining, calls, errors


def render_tool_instructions(specs: Iterable[Mapping[str, Any] | BaseModel]) -> str:
    """A system-prompt section describing the tools and how to call them in text."""
    described = [_as_mapping(spec) for spec in specs]
    if not described:
        return ""
    lines = [
        "# Tools",
        "You can call the tools below. To call one, write a block with one JSON object naming "
        "the tool and its arguments, for example:",
        EXAMPLE,
        "Write nothing after your tool calls; you may write several blocks in one reply. Each "
        "result comes back to you in the next message; then continue. Never invent a result. "
        "If no tool is needed, answer directly without any block.",
    ]
    for spec in described:
        lines += ["", f"## {spec['name']}"]
        if spec.get("description"):
            lines.append(str(spec["description"]).strip())
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        lines.append("Arguments (JSON Schema): " + json.dumps(parameters, ensure_ascii=False,
                                                              separators=(", ", ": ")))
    return "\n".join(lines)


def _as_mapping(spec: Mapping[str, Any] | BaseModel) -> Mapping[str, Any]:
    return spec.model_dump() if isinstance(spec, BaseModel) else spec


def _read_block(body: str, number: int) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    cleaned = _FENCE.sub("", body.strip()).strip()
    if not cleaned:
        return [], f"tool call {number} is empty; write {EXAMPLE}"
    try:
        value = _loads(cleaned)
    except json.JSONDecodeError as error:
        return [], (f"tool call {number} is not valid JSON ({error.msg} at line {error.lineno} "
                    f"column {error.colno}); write one JSON object such as {EXAMPLE}")
    items = value if isinstance(value, list) else [value]
    found: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        call, problem = _read_call(item, number)
        if problem is not None:
            return found, problem
        assert call is not None
        found.append(call)
    return found, None


def _read_call(item: Any, number: int) -> tuple[tuple[str, dict[str, Any]] | None, str | None]:
    if not isinstance(item, dict):
        return None, (f"tool call {number} must be a JSON object with \"name\" and "
                      f"\"arguments\", not {type(item).__name__}; write {EXAMPLE}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, f"tool call {number} has no \"name\" naming the tool; write {EXAMPLE}"
    arguments: Any = next((item[key] for key in _ARGUMENT_KEYS if key in item), {})
    if isinstance(arguments, str):
        try:
            arguments = _loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None, (f"tool call {number} ({name}): \"arguments\" is a string that is not "
                          "a JSON object; give the arguments as an object")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None, (f"tool call {number} ({name}): \"arguments\" must be a JSON object of "
                      f"named arguments, not {type(arguments).__name__}")
    return (name.strip(), arguments), None


def _loads(text: str) -> Any:
    """JSON, forgiving trailing commas and several objects written one after another."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        original = error
    repaired = _TRAILING_COMMA.sub(r"\1", text)
    attempts: list[Callable[[], Any]] = [lambda: json.loads(repaired), lambda: _sequence(text),
                                         lambda: _sequence(repaired)]
    for attempt in attempts:
        try:
            return attempt()
        except json.JSONDecodeError:
            continue
    raise original


def _sequence(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
    if len(values) < 2:
        raise json.JSONDecodeError("not a sequence of JSON values", text, 0)
    return values
