"""Replaying what agents did: recorded model outputs and tool results, returned in order.

A re-run room names its source room. The k-th model call an agent makes in the re-run gets
the k-th ``ModelCalled`` output the agent recorded in the source room, and likewise for tool
calls and ``ToolExecuted``: no model and no tool is called, so a re-run needs no network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from domain.agents import Agent
from domain.errors import Unavailable
from domain.ids import agent_id
from infra.llm import Completion, Delta, ModelRequest, ToolCall, Usage
from infra.store import EventStore


class Recording:
    """One agent's recorded model calls and tool results in one source room."""

    def __init__(self, store: EventStore, agent: str, source: str, target: str) -> None:
        self.agent, self.source, self.target = agent, source, target
        events = store.events(agent_id(agent))
        rooms = {e.turn_id: e.room_id for e in events if isinstance(e, Agent.TurnStarted)}
        # Memory work after a turn (ratings, facts, reflection) is not part of the transcript.
        calls = [e for e in events if isinstance(e, Agent.ModelCalled)
                 and (e.context or {}).get("purpose", "turn") == "turn"]
        self.calls = [e for e in calls if rooms.get(e.turn_id) == source]
        self.tools = [e for e in events if isinstance(e, Agent.ToolExecuted)
                      and rooms.get(e.turn_id) == source]
        self.calls_done = sum(1 for e in calls if rooms.get(e.turn_id) == target)
        self.tools_done = sum(1 for e in events if isinstance(e, Agent.ToolExecuted)
                              and rooms.get(e.turn_id) == target)

    def next_completion(self) -> Completion:
        """The next recorded model output, as a completion."""
        if self.calls_done >= len(self.calls):
            raise Unavailable(f"the recording of {self.agent!r} in room {self.source!r} has only "
                              f"{len(self.calls)} model calls; the re-run asked for more")
        recorded = self.calls[self.calls_done]
        self.calls_done += 1
        output: dict[str, Any] = recorded.output
        return Completion(
            text=str(output.get("text", "")),
            tool_calls=[ToolCall.model_validate(c) for c in output.get("tool_calls", [])],
            usage=Usage(input_tokens=recorded.input_tokens, output_tokens=recorded.output_tokens),
            cost_usd=0.0, provider="replay", model=recorded.model)

    def next_tool(self, tool: str) -> dict[str, Any]:
        """The next recorded tool outcome ({status, result, duration_ms})."""
        if self.tools_done >= len(self.tools):
            raise Unavailable(f"the recording of {self.agent!r} in room {self.source!r} has only "
                              f"{len(self.tools)} tool calls; the re-run asked for more")
        recorded = self.tools[self.tools_done]
        self.tools_done += 1
        if recorded.tool != tool:
            return {"status": "error", "duration_ms": 0.0,
                    "result": f"the re-run diverged: the recording called {recorded.tool!r} "
                              f"here, not {tool!r}"}
        return {"status": recorded.status, "result": recorded.result,
                "duration_ms": recorded.duration_ms}


class ReplayProvider:
    """A provider that answers from a recording (and says so: its name is ``replay``)."""

    name = "replay"

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    async def complete(self, request: ModelRequest) -> Completion:
        return self.recording.next_completion()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        completion = self.recording.next_completion()
        if completion.text:
            yield Delta(text=completion.text)
        yield completion
