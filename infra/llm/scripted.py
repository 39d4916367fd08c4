"""The ``scripted`` provider: deterministic replies for demos, tests and simulations.

It is named for what it is and never stands in silently for a real model. Each script entry is
one turn: a reply template (``{author}``, ``{text}``, ``{agent}``, ``{system}`` and, after a
tool call, ``{result}`` are filled in), a JSON object ``{"tool": NAME, "arguments": {...}}``
that calls a tool, a JSON object ``{"when": {"word|other": reply, ...}, "else": reply}``
whose reply depends on the words of the last message (how a scripted guardrail judge tells
texts apart), or a JSON array of such steps (say, a tool call, then a reply quoting its
result). The k-th turn of a conversation (k replies of the agent before the last message
addressed to it) uses entry k, cycling, so a reply depends only on the request.

Reflection's two prompts (``memory/reflection.py``) are not answered from the script but from
the prompt itself: three fixed questions, then one insight citing the first two numbered
memories. So scripted agents reflect, deterministically, as the paper's agents do.

Model ``scripted-paced-S`` streams one word every S seconds (for demos of streaming and for
exercising pause during a turn); any other model name streams at once. Model
``scripted-priced-C`` reports a cost of C USD per call (for exercising spend limits); any
other scripted call costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from domain.definitions import script_steps
from infra.llm.base import (
    Completion,
    Delta,
    ModelRequest,
    ToolCall,
    Usage,
    estimate_tokens,
)
from memory import reflection

DEFAULT_SCRIPT = ["{agent} here. You said: \u201c{text}\u201d"]
PACED = re.compile(r"^scripted-paced-(\d+(?:\.\d+)?)$")
PRICED = re.compile(r"^scripted-priced-(\d+(?:\.\d+)?)$")


def price_per_call(model: str) -> float:
    """What one call of scripted ``model`` is said to cost (USD): only ``scripted-priced-C``."""
    priced = PRICED.match(model)
    return float(priced.group(1)) if priced else 0.0


class ScriptedProvider:
    """Replies from a script, cycling through its lines."""

    name = "scripted"

    def __init__(self, agent: str, script: list[str] | None = None) -> None:
        self.agent = agent
        self.script = list(script) if script else list(DEFAULT_SCRIPT)

    def _line(self, request: ModelRequest) -> tuple[str, list[ToolCall]]:
        messages = request.messages
        reflected = _reflection_answer(messages[-1].content) \
            if len(messages) == 1 and messages[0].role == "user" else None
        if reflected is not None:
            return reflected, []
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        turn = sum(1 for m in messages[:last_user] if m.role == "assistant")
        step = sum(1 for m in messages[last_user + 1:] if m.role == "assistant")
        steps = _steps(self.script[turn % len(self.script)])
        line = steps[min(step, len(steps) - 1)]
        last = messages[last_user] if last_user >= 0 else None
        line = _conditional(line, last.content if last else "")
        tool = _tool_request(line)
        if tool is not None:
            name, arguments = tool
            return "", [ToolCall(id=f"call-{turn}-{step}", name=name, arguments=arguments)]
        tool_result = messages[-1] if messages and messages[-1].role == "tool" else None
        # Values are filled in as they are: braces in a tool's result or a message stay text.
        return line.format_map(_Defaults(
            agent=self.agent, system=request.system,
            author=last.name if last and last.name else "someone",
            text=last.content if last else "",
            result=tool_result.content if tool_result else "")), []

    async def complete(self, request: ModelRequest) -> Completion:
        """Answer at once with the scripted reply."""
        text, calls = self._line(request)
        prompt = request.system + "".join(m.content for m in request.messages)
        return Completion(text=text, tool_calls=calls, provider=self.name, model=request.model,
                          usage=Usage(input_tokens=estimate_tokens(prompt),
                                      output_tokens=estimate_tokens(text)),
                          cost_usd=price_per_call(request.model))

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Yield the scripted reply word by word, as a real model streams tokens, then it whole."""
        completion = await self.complete(request)
        words = completion.text.split(" ") if completion.text else []
        paced = PACED.match(request.model)
        pause = min(float(paced.group(1)), 10.0) if paced else 0.0
        for index, word in enumerate(words):
            await asyncio.sleep(pause)
            yield Delta(text=word if index == len(words) - 1 else word + " ")
        yield completion


# What stands after "{n}" in reflection's prompts marks them (a changed prompt breaks a test).
_QUESTIONS = reflection.QUESTIONS_PROMPT.split("{n}")[1][:40]
_INSIGHTS = reflection.INSIGHTS_PROMPT.split("{n}")[1][:30]
REFLECTION_QUESTIONS = ("What have I been hearing about lately?",
                        "Who have I been talking with?", "What are people planning?")
_NUMBERED = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)


def _reflection_answer(prompt: str) -> str | None:
    if _QUESTIONS in prompt:
        return "\n".join(REFLECTION_QUESTIONS)
    if _INSIGHTS in prompt:
        statements = _NUMBERED.findall(prompt)[:2]
        if not statements:
            return ""
        said = "; ".join(text.strip() for _, text in statements)
        cites = ", ".join(number for number, _ in statements)
        return f"What stays with me: {said} (because of {cites})"
    return None


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _steps(entry: str) -> list[str]:
    # A script entry is one reply, or a JSON array of the steps of one turn (tool calls first).
    return script_steps(entry)


def _conditional(line: str, text: str) -> str:
    """A step ``{"when": {"a|b": reply, ...}, "else": reply}`` picks the reply of the first
    key one of whose ``|``-separated words is in the last message (case-insensitive); any
    other step stays as it is. Plain words, not regular expressions: a script may come from
    someone other than the agent's owner (a room's judge), and must not cost it much."""
    if not line.lstrip().startswith("{"):
        return line
    try:
        value = json.loads(line)
    except ValueError:
        return line
    if not isinstance(value, dict) or not isinstance(value.get("when"), dict):
        return line
    lowered = text[:20_000].lower()
    for words, reply in value["when"].items():
        if any(w and w in lowered for w in str(words).lower().split("|")):
            return str(reply)
    return str(value.get("else", ""))


def _tool_request(line: str) -> tuple[str, dict[str, Any]] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("tool"), str):
        arguments = value.get("arguments", {})
        return value["tool"], arguments if isinstance(arguments, dict) else {}
    return None
