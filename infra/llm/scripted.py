"""The ``scripted`` provider: deterministic replies for demos, tests and simulations.

It is named for what it is and never stands in silently for a real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from infra.llm.base import Completion, ModelRequest, Usage, estimate_tokens

DEFAULT_SCRIPT = ["{agent} here. You said: \u201c{text}\u201d"]


class ScriptedProvider:
    """Replies from a script, cycling through its lines; each reply depends only on the request."""

    name = "scripted"

    def __init__(self, agent: str, script: list[str] | None = None) -> None:
        self.agent = agent
        self.script = list(script) if script else list(DEFAULT_SCRIPT)

    def reply_for(self, request: ModelRequest) -> str:
        """The scripted reply to ``request``: line k for the k-th reply in the conversation."""
        said = sum(1 for m in request.messages if m.role == "assistant")
        last = next((m for m in reversed(request.messages) if m.role == "user"), None)
        line = self.script[said % len(self.script)]
        return line.format(agent=self.agent, author=last.name if last and last.name else "someone",
                           text=last.content if last else "")

    async def complete(self, request: ModelRequest) -> Completion:
        """Answer at once with the scripted reply."""
        text = self.reply_for(request)
        prompt = request.system + "".join(m.content for m in request.messages)
        return Completion(text=text, provider=self.name, model=request.model,
                          usage=Usage(input_tokens=estimate_tokens(prompt),
                                      output_tokens=estimate_tokens(text)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[str]:
        """Yield the scripted reply word by word, as a real model streams tokens."""
        text = self.reply_for(request)
        words = text.split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(0)
            yield word if index == len(words) - 1 else word + " "
