"""Tool calling for models without it: tools described in the prompt, ``<tool_call>`` parsed.

The format and its forgiving parser are the tool framework's (``tools.calls``): the system
prompt gains ``render_tool_instructions`` and the reply's blocks are read by
``parse_tool_calls``. This module fits them to a provider call: history is rewritten to the
same convention (earlier calls as blocks, results as ``<tool_result>`` user messages), calls
of tools the request did not offer become errors too, the answer is the text before the
first block (exactly what ``BlockFilter`` lets a stream show), and what could not be read
becomes one message for the model, so it can try again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from infra.llm.base import ChatMessage, ModelRequest, ToolCall, ToolSpec
from tools.calls import parse_tool_calls, render_tool_instructions

OPEN = "<tool_call"
BLOCK_START = re.compile(r"<tool_call\s*>", re.IGNORECASE)    # as tools.calls reads blocks
UNFINISHED_TAG = re.compile(r"<tool_call\s*$", re.IGNORECASE)


def inject(request: ModelRequest) -> ModelRequest:
    """``request`` with its tools moved into the system prompt and history in block form."""
    instructions = render_tool_instructions(request.tools)
    system = f"{request.system}\n\n{instructions}" if request.system else instructions
    messages: list[ChatMessage] = []
    for message in request.messages:
        if message.role == "assistant" and message.tool_calls:
            blocks = "".join(
                f"<tool_call>{json.dumps({'name': c.name, 'arguments': c.arguments})}"
                "</tool_call>" for c in message.tool_calls)
            text = f"{message.content}\n{blocks}" if message.content else blocks
            messages.append(ChatMessage(role="assistant", content=text, name=message.name))
        elif message.role == "tool":
            messages.append(ChatMessage(
                role="user", name=message.name,
                content=f'<tool_result name="{message.name or "tool"}">{message.content}'
                        "</tool_result>"))
        else:
            messages.append(message)
    return request.model_copy(update={"system": system, "messages": messages, "tools": []})


def answer_of(reply: str) -> str:
    """The part of a reply before its first ``<tool_call>`` block (all of it if none)."""
    found = BLOCK_START.search(reply)
    return reply[:found.start()] if found else reply


@dataclass
class Parsed:
    """A reply read for tool calls: its answer text, the calls, and what could not be read."""

    text: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse(reply: str, tools: list[ToolSpec], first_id: int = 0) -> Parsed:
    """Read the ``<tool_call>`` blocks of ``reply``, offering only ``tools``."""
    _, found, errors = parse_tool_calls(reply)
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    for call in found:
        if names and call.name not in names:
            errors.append(f"there is no tool named {call.name!r}; the tools are: "
                          f"{', '.join(sorted(names))}")
            continue
        calls.append(ToolCall(id=f"call-{first_id + len(calls)}", name=call.name,
                              arguments=call.arguments))
    return Parsed(text=answer_of(reply), calls=calls, errors=errors)


def repair_message(errors: list[str]) -> ChatMessage:
    """The message that tells the model what was wrong with its tool calls."""
    return ChatMessage(role="user", name="salon", content=(
        "Your tool call was not understood: " + "; ".join(errors) + ". Reply again: either "
        'a valid <tool_call>{"name": ..., "arguments": {...}}</tool_call> block or a plain '
        "answer."))


class BlockFilter:
    """Passes streamed text through until a ``<tool_call>`` begins; holds back the rest.

    A chunk ending in a possible start of the tag (``"<to"``) is held until the next chunk
    shows whether it is one, so no part of a tool call reaches the people watching.
    """

    def __init__(self) -> None:
        self.pending = ""
        self.blocked = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that is safe to show now."""
        if self.blocked:
            return ""
        self.pending += text
        found = BLOCK_START.search(self.pending)
        if found:
            shown, self.pending, self.blocked = self.pending[:found.start()], "", True
            return shown
        keep = _partial_tag(self.pending)
        shown = self.pending[:len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return shown

    def flush(self) -> str:
        """What was held back at the end, if it never became a tag."""
        shown, self.pending = ("" if self.blocked else self.pending), ""
        return shown


def _partial_tag(text: str) -> int:
    unfinished = UNFINISHED_TAG.search(text)
    if unfinished:
        return len(text) - unfinished.start()
    lowered = text[-len(OPEN):].lower()
    for size in range(min(len(OPEN) - 1, len(lowered)), 0, -1):
        if OPEN.startswith(lowered[-size:]):
            return size
    return 0
