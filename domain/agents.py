"""Agent definitions and the Agent aggregate: who an agent is and every turn it took."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from domain.errors import Conflict, Invalid
from domain.ids import agent_id, check_name

Text = Annotated[str, StringConstraints(max_length=4_000)]


class AgentDefinition(BaseModel):
    """What an agent is: its name, character, model and how it opens a conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Text = "a helpful participant in a group chat"
    persona: Text = ""
    provider: str = "scripted"
    model: str = "scripted-echo"
    # Backups tried in order when the primary fails, each "provider:model".
    fallbacks: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=5)
    # For OpenAI-compatible endpoints and self-hosted servers.
    base_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    # A secret reference: the name of the environment variable holding the key, never the key.
    api_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")] | None = None
    opening_line: Text | None = None
    # Replies of the scripted provider, used in turn; {author}, {text} and {agent} are filled in.
    script: list[Text] = Field(default_factory=list, max_length=100)
    context_messages: int = Field(default=20, ge=1, le=500)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            return check_name(name, "agent")
        except Invalid as error:
            raise ValueError(error.message) from None

    def system_prompt(self) -> str:
        """The system prompt this definition compiles to."""
        lines = [f"You are {self.name}, {self.role}."]
        if self.persona:
            lines.append(self.persona)
        lines.append("You are in a chat room with people and other agents; "
                     "answer the message addressed to you, briefly.")
        return "\n".join(lines)


class Agent(Aggregate):
    """An agent's stream: its definition, status and the turns it took in rooms."""

    @staticmethod
    def create_id(definition: dict[str, Any]) -> UUID:
        """Agents are found by name: the stream id is derived from it."""
        return agent_id(str(definition["name"]))

    @event("AgentDefined")
    def __init__(self, definition: dict[str, Any]) -> None:
        self.definition = definition
        self.name = str(definition["name"])
        self.status = "active"
        self.turns: dict[str, dict[str, Any]] = {}
        # Newest room position whose triggers were taken, so redelivery never repeats a turn.
        self.handled: dict[str, int] = {}
        self.turn_count = 0

    @classmethod
    def define(cls, definition: AgentDefinition) -> Agent:
        """Record a new agent from a validated definition."""
        return cls(definition=definition.model_dump())

    @property
    def spec(self) -> AgentDefinition:
        """The current definition as a typed value."""
        return AgentDefinition.model_validate(self.definition)

    def start_turn(self, turn_id: str, room: str, trigger: dict[str, Any]) -> None:
        """Begin a turn in ``room`` because of ``trigger`` (kind, position, by)."""
        if self.status != "active":
            raise Conflict(f"agent {self.name!r} is {self.status}; resume it first")
        self._turn_started(turn_id=turn_id, room_id=room, trigger=trigger)

    @event("TurnStarted")
    def _turn_started(self, turn_id: str, room_id: str, trigger: dict[str, Any]) -> None:
        self.turns[turn_id] = {"room_id": room_id, "state": "started"}
        position = trigger.get("position")
        if isinstance(position, int) and position > self.handled.get(room_id, 0):
            self.handled[room_id] = position
        self.turn_count += 1

    def record_model_call(self, turn_id: str, provider: str, model: str, context: dict[str, Any],
                          output: dict[str, Any], input_tokens: int, output_tokens: int,
                          cost_usd: float, latency_ms: float,
                          fallback_from: str | None = None) -> None:
        """Record what a model saw and said during a turn."""
        self._require_open(turn_id)
        self._model_called(turn_id=turn_id, provider=provider, model=model, context=context,
                           output=output, input_tokens=input_tokens, output_tokens=output_tokens,
                           cost_usd=cost_usd, latency_ms=latency_ms, fallback_from=fallback_from)

    @event("ModelCalled")
    def _model_called(self, turn_id: str, provider: str, model: str, context: dict[str, Any],
                      output: dict[str, Any], input_tokens: int, output_tokens: int,
                      cost_usd: float, latency_ms: float, fallback_from: str | None) -> None:
        self.turns[turn_id]["model_calls"] = self.turns[turn_id].get("model_calls", 0) + 1

    def complete_turn(self, turn_id: str, message_id: str | None) -> None:
        """Close a turn that posted ``message_id`` (or nothing)."""
        self._require_open(turn_id)
        self._turn_completed(turn_id=turn_id, message_id=message_id)

    @event("TurnCompleted")
    def _turn_completed(self, turn_id: str, message_id: str | None) -> None:
        self.turns.pop(turn_id, None)

    def fail_turn(self, turn_id: str, error: str) -> None:
        """Close a turn that went wrong, saying why."""
        self._require_open(turn_id)
        self._turn_failed(turn_id=turn_id, error=error[:2_000])

    @event("TurnFailed")
    def _turn_failed(self, turn_id: str, error: str) -> None:
        self.turns.pop(turn_id, None)

    def open_turns(self) -> list[str]:
        """Turns started and not yet completed or failed."""
        return list(self.turns)

    def _require_open(self, turn_id: str) -> None:
        if turn_id not in self.turns:
            raise Conflict(f"turn {turn_id} of agent {self.name!r} is not open")
