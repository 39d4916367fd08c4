"""Which provider serves an agent's definition."""

from __future__ import annotations

from domain.agents import AgentDefinition
from domain.errors import Unavailable
from infra.llm.base import Provider
from infra.llm.scripted import ScriptedProvider


def provider_for(definition: AgentDefinition) -> Provider:
    """The provider an agent's definition names; unbuilt vendors say so plainly."""
    if definition.provider == "scripted":
        return ScriptedProvider(definition.name, definition.script)
    raise Unavailable(
        f"provider {definition.provider!r} is not available in this build; "
        "only 'scripted' is (real vendors arrive with the providers issue)"
    )
