"""Agent definitions and the Agent aggregate: who an agent is and every turn it took."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import policy
from domain.definitions import AgentDefinition, build
from domain.errors import Conflict, Invalid
from domain.ids import agent_id

__all__ = ["Agent", "AgentDefinition", "STATUSES"]
STATUSES = ("active", "paused", "stopped")

class Agent(Aggregate):
    """An agent's stream: its definition, status and the turns it took in rooms."""

    @staticmethod
    def create_id(definition: dict[str, Any], **_: object) -> UUID:
        """Agents are found by name: the stream id is derived from it."""
        return agent_id(str(definition["name"]))

    @event("AgentDefined")
    def __init__(self, definition: dict[str, Any], owner_id: str = "admin") -> None:
        self.definition = definition
        self.definition_version = 1
        self.owner_id = owner_id
        self.name = str(definition["name"])
        self.status = "active"
        self.turns: dict[str, dict[str, Any]] = {}
        # Newest room position whose triggers were taken, so redelivery never repeats a turn.
        self.handled: dict[str, int] = {}
        self.turn_count = 0

    @classmethod
    def define(cls, definition: AgentDefinition, owner_id: str = "admin") -> Agent:
        """Record a new agent from a validated definition."""
        return cls(definition=definition.model_dump(), owner_id=owner_id)

    @property
    def spec(self) -> AgentDefinition:
        """The current definition as a typed value."""
        return build(self.definition)

    def may_command(self, user: str, is_admin: bool) -> bool:
        """Owners and admins control an agent (the policy's rule)."""
        return policy.may_control_agent(policy.Principal.acting(user, is_admin),
                                        policy.AgentFacts(self.name, self.owner_id))

    def redefine(self, definition: AgentDefinition) -> None:
        """Record a new version of the definition (the name cannot change)."""
        if definition.name != self.name:
            raise Invalid(f"a redefinition keeps the name {self.name!r}")
        if definition.model_dump() != self.definition:
            self._redefined(definition=definition.model_dump(),
                            version=self.definition_version + 1)

    @event("AgentRedefined")
    def _redefined(self, definition: dict[str, Any], version: int) -> None:
        self.definition = definition
        self.definition_version = version

    def pause(self, by: str) -> None:
        """Stop taking turns until resumed."""
        if self.status == "stopped":
            raise Conflict(f"agent {self.name!r} is stopped; resume it first")
        if self.status != "paused":
            self._paused(by=by)

    @event("AgentPaused")
    def _paused(self, by: str) -> None:
        self.status = "paused"

    def resume(self, by: str) -> None:
        """Take turns again."""
        if self.status != "active":
            self._resumed(by=by)

    @event("AgentResumed")
    def _resumed(self, by: str) -> None:
        self.status = "active"

    def stop(self, by: str, reason: str = "") -> None:
        """Stop at once (an operator's stop or the emergency stop)."""
        if self.status != "stopped":
            self._stopped(by=by, reason=reason[:500])

    @event("AgentStopped")
    def _stopped(self, by: str, reason: str) -> None:
        self.status = "stopped"

    @property
    def grants(self) -> dict[str, list[str]]:
        """Capabilities an admin granted this agent."""
        return dict(getattr(self, "granted", {}))

    def grant(self, capabilities: dict[str, list[str]], by: str) -> None:
        """Record the capabilities this agent holds now (replacing earlier grants)."""
        if capabilities != self.grants:
            self._capabilities_granted(capabilities=capabilities, by=by)

    @event("CapabilitiesGranted")
    def _capabilities_granted(self, capabilities: dict[str, list[str]], by: str) -> None:
        self.granted = dict(capabilities)

    @property
    def guard(self) -> dict[str, Any] | None:
        """The owner's guardrail override for this agent (None: the rooms' policies alone)."""
        return getattr(self, "guard_override", None)

    def set_guard(self, override: dict[str, Any] | None, by: str) -> None:
        """Record the owner's guardrail override (a validated ``GuardPolicy``; None clears)."""
        if override != self.guard:
            self._guard_override_set(override=override, by=by)

    @event("GuardOverrideSet")
    def _guard_override_set(self, override: dict[str, Any] | None, by: str) -> None:
        self.guard_override = override

    def record_guard_verdict(self, turn_id: str, room: str, direction: str, source: str,
                             check: str, score: float, action: str, mode: str,
                             position: int | None = None, tool: str | None = None,
                             kinds: list[str] | None = None, detail: str = "") -> None:
        """Record what a guardrail found in a turn's input or output and what it did."""
        self._require_open(turn_id)
        self._guardrail_flagged(turn_id=turn_id, room_id=room, direction=direction,
                                source=source, check=check, score=round(float(score), 4),
                                action=action, mode=mode, position=position, tool=tool,
                                kinds=list(kinds or []), detail=detail[:500])

    @event("GuardrailFlagged")
    def _guardrail_flagged(self, turn_id: str, room_id: str, direction: str, source: str,
                           check: str, score: float, action: str, mode: str,
                           position: int | None, tool: str | None, kinds: list[str],
                           detail: str) -> None:
        turn = self.turns.get(turn_id)
        if turn is not None:
            turn["guard_flags"] = turn.get("guard_flags", 0) + 1

    def check_command(self, user: str, is_admin: bool) -> None:
        """Raise Forbidden unless ``user`` may control this agent."""
        policy.require_agent_owner(policy.Principal.acting(user, is_admin),
                                   policy.AgentFacts(self.name, self.owner_id), "do that")

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

    def record_tool_call(self, turn_id: str, tool: str, arguments: dict[str, Any], result: str,
                         status: str, duration_ms: float) -> None:
        """Record a tool call and its outcome (refusals and errors included)."""
        self._require_open(turn_id)
        self._tool_executed(turn_id=turn_id, tool=tool, arguments=arguments, result=result,
                            status=status, duration_ms=duration_ms)

    @event("ToolExecuted")
    def _tool_executed(self, turn_id: str, tool: str, arguments: dict[str, Any], result: str,
                       status: str, duration_ms: float) -> None:
        self.turns[turn_id]["tool_calls"] = self.turns[turn_id].get("tool_calls", 0) + 1

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
