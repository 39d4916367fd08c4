"""The tools one agent may use in one room, wired to the room and the platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.definitions import AgentDefinition
from infra.llm import ToolSpec

if TYPE_CHECKING:
    from actors.agents import AgentCore


class Toolbox:
    """Offers an agent its allowed tools and runs their calls; outcomes never raise."""

    def __init__(self, actor: AgentCore, spec: AgentDefinition, room: str) -> None:
        self.actor = actor
        self.spec = spec
        self.room = room

    def specs(self) -> list[ToolSpec]:
        """Tool definitions for the model: only those on the agent's allow list."""
        return []

    async def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run one call: {status, result, duration_ms}."""
        return {"status": "refused", "result": f"tool {name!r} is not available",
                "duration_ms": 0.0}
