"""The sections of a scenario file, as pydantic models: what each table and field may hold.

``ScenarioFile`` is the whole document; agents stay raw dictionaries here because each is an
ordinary agent definition (``domain.definitions.AgentDefinition``) checked on its own, with
``script_order`` and ``memory`` added for simulations (see ``scenarios.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=16_000)]
Seconds = Annotated[float, Field(ge=0, le=10_000_000)]


class Strict(BaseModel):
    """Unknown fields are errors; values do not change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(Strict):
    """How agents take turns in a room (the room's live policy, as in chat)."""

    mode: Literal["free", "round_robin", "selector"] = "free"
    max_agent_streak: int = Field(default=3, ge=0, le=50)
    selector: Name | None = None


class Consensus(Strict):
    """Stop when the last ``window`` agent messages all score at least ``threshold``."""

    threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    window: int = Field(default=3, ge=1, le=100)


class Stop(Strict):
    """When a room's run ends; the first condition met wins. Unset conditions never fire."""

    max_turns: int | None = Field(default=None, ge=1, le=100_000)
    max_seconds: Seconds | None = None
    keywords: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50)
    consensus: Consensus | None = None

    def over(self, other: Stop | None) -> Stop:
        """These conditions with ``other``'s set fields on top."""
        if other is None:
            return self
        return self.model_copy(update=other.model_dump(exclude_unset=True))


class HumanMessage(Strict):
    """One scripted message: ``text``, or ``choices`` of which the seed picks one."""

    at: Seconds
    room: Name | None = None
    text: Text | None = None
    choices: list[Text] | None = Field(default=None, min_length=1, max_length=100)
    jitter: Seconds = 0.0

    @model_validator(mode="after")
    def _one_text(self) -> HumanMessage:
        if (self.text is None) == (self.choices is None):
            raise ValueError("give either text or choices (exactly one of them)")
        return self


class Human(Strict):
    """A scripted person: the rooms they sit in and the messages they send, in virtual time."""

    rooms: list[Name] = Field(default_factory=list)
    messages: list[HumanMessage] = Field(default_factory=list, max_length=10_000)


class RoomSpec(Strict):
    """A room of the scenario: its members, policy, pace and (optionally) stop conditions."""

    topic: Annotated[str, StringConstraints(max_length=400)] = ""
    visibility: Literal["public", "private"] = "public"
    agents: list[Name] = Field(min_length=1, max_length=1_000)
    humans: list[Name] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    # "seeded": the seed shuffles the joining order (and so the round-robin order).
    order: Literal["seeded", "listed"] = "seeded"
    # Virtual seconds of quiet after which the runner gives an agent the floor (0: never).
    turn_seconds: Seconds = 0.0
    stop: Stop | None = None


class Metrics(Strict):
    """What the report measures besides turns, tokens, cost, latency, tools and memory."""

    measure: Literal["agreement", "sentiment"] = "agreement"
    positive: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=500)
    negative: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=500)
    excerpt: int = Field(default=8, ge=0, le=500)


class RunOptions(Strict):
    """How the runner runs this scenario."""

    parallel: int = Field(default=2, ge=1, le=64)
    settle_seconds: float = Field(default=120.0, gt=0, le=3_600)
    max_steps: int = Field(default=10_000, ge=1, le=1_000_000)


class ScenarioFile(Strict):
    """The TOML document as written (agents still raw: they are checked one by one)."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=4_000)] = ""
    seed: int = 0
    repetitions: int = Field(default=1, ge=1, le=1_000)
    defaults: dict[str, Any] = Field(default_factory=dict)
    agents: dict[Name, dict[str, Any]] = Field(min_length=1)
    humans: dict[Name, Human] = Field(default_factory=dict)
    rooms: dict[Name, RoomSpec] = Field(min_length=1)
    stop: Stop = Field(default_factory=Stop)
    metrics: Metrics = Field(default_factory=Metrics)
    run: RunOptions = Field(default_factory=RunOptions)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)


def home_rooms(human: Human, name: str, rooms: Mapping[str, RoomSpec]) -> list[str]:
    """The rooms a person sits in: listed, seated by a room, or the only room there is."""
    homes = [r for r in human.rooms if r in rooms]
    homes += [r for r, spec in rooms.items() if name in spec.humans and r not in homes]
    if not homes and len(rooms) == 1:
        homes = list(rooms)
    return homes
