"""Scenario files: a multi-agent situation in TOML, validated into plans the runner can run.

A scenario names its agents (ordinary agent definitions, long-term ``memory`` included, plus
``script_order``), scripted people with timed messages, rooms with their turn-taking policy, stop
conditions, the measure to report, a seed, repetitions and a sweep. The tables and fields are
the models of ``sections.py``; ``simulations/README.md`` describes each, and the bundled
scenarios in ``simulations/scenarios/`` show them in use.

Every problem names the file, the line, the field and what is wrong, all of them at once
(``problems.py``)::

    debate.toml:14: agents.pro.chattiness: input should be less than or equal to 1 (got 3)

A ``[sweep]`` expands into variants (``sweeps.py``), each validated on its own.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from domain.definitions import AgentDefinition, build
from domain.errors import Invalid
from domain.memories import MemoryConfig
from simulations.locations import Path as KeyPath
from simulations.locations import key_lines
from simulations.problems import Problems, describe, short, toml_position, toml_problem
from simulations.sections import (
    Human,
    HumanMessage,
    Metrics,
    RoomSpec,
    RunOptions,
    ScenarioFile,
    Stop,
    Strict,
    home_rooms,
)
from simulations.sweeps import assign, label, sweep_points

BUNDLED = Path(__file__).resolve().parent / "scenarios"
# Agent-definition fields a scenario adds for simulations; the rest go to AgentDefinition.
SIMULATION_FIELDS = ("script_order",)
MAX_RUNS = 9_999
STREAK_HINT = 10


@dataclass(frozen=True)
class AgentPlan:
    """One agent of a scenario: its definition and how a simulation treats it."""

    definition: AgentDefinition
    script_order: Literal["listed", "shuffled"] = "listed"

    @property
    def memory(self) -> MemoryConfig:
        """Its long-term memory settings (part of its definition)."""
        return self.definition.memory

    @property
    def timed(self) -> bool:
        """Whether it speaks first on its own (idle room or schedule)."""
        spec = self.definition
        return spec.idle_after_seconds is not None or spec.every_seconds is not None


@dataclass(frozen=True)
class Plan:
    """A validated scenario, one variant of it: everything the runner needs."""

    name: str
    description: str
    seed: int
    repetitions: int
    agents: dict[str, AgentPlan]
    humans: dict[str, Human]
    rooms: dict[str, RoomSpec]
    stop: Stop
    metrics: Metrics
    run: RunOptions

    def stop_for(self, room: str) -> Stop:
        """The stop conditions of ``room``: the scenario's, with the room's on top."""
        return self.stop.over(self.rooms[room].stop)

    def members(self, room: str) -> list[str]:
        """The humans of ``room``: listed there, sitting there, or sending messages there."""
        found = list(self.rooms[room].humans)
        for name, human in self.humans.items():
            if name in found:
                continue
            if room in human.rooms or any(self.room_of(m, name) == room for m in human.messages):
                found.append(name)
        return found

    def room_of(self, message: HumanMessage, human: str) -> str:
        """The room a scripted message goes to (validated to be unambiguous)."""
        if message.room is not None:
            return message.room
        return home_rooms(self.humans[human], human, self.rooms)[0]


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: its label, what it sets, and the plan it gives."""

    index: int
    label: str
    assignments: dict[str, Any]
    plan: Plan


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario file: its variants (one when there is no sweep) and any warnings."""

    source: str
    text: str | None
    document: dict[str, Any]
    variants: list[Variant]
    warnings: list[str] = field(default_factory=list)

    @property
    def plan(self) -> Plan:
        """The first variant's plan (the scenario itself when there is no sweep)."""
        return self.variants[0].plan

    @property
    def name(self) -> str:
        return self.plan.name


# -- loading ---------------------------------------------------------------------------------

def bundled() -> dict[str, Path]:
    """The scenarios shipped with Salon, by name (the file name without ``.toml``)."""
    return {p.stem: p for p in sorted(BUNDLED.glob("*.toml"))}


def locate(name_or_path: str | Path) -> Path:
    """A scenario file: an existing path, or the name of a bundled scenario."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    found = bundled().get(str(name_or_path).removesuffix(".toml"))
    if found is not None:
        return found
    names = ", ".join(bundled()) or "none"
    raise Invalid(f"scenario file {str(name_or_path)!r} does not exist; give a path to a .toml "
                  f"file or a bundled scenario ({names}); `salon simulate list` shows them")


def load_scenario(name_or_path: str | Path,
                  overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file (or a bundled scenario by name)."""
    path = locate(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Invalid(f"cannot read scenario file {path}: {error}") from None
    return parse_scenario(text, str(path), overrides)


def parse_scenario(text: str, source: str = "<scenario>",
                   overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Validate scenario ``text``; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise Invalid(f"{short(source)}:{toml_position(error, text)}: not valid TOML: "
                      f"{toml_problem(error)}; fix the syntax (see https://toml.io)") from None
    return scenario_from_document(document, source, text, overrides)


def scenario_from_document(document: dict[str, Any], source: str = "<scenario>",
                           text: str | None = None,
                           overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Validate an already parsed scenario (e.g. one a program built) into its variants."""
    lines = key_lines(text) if text else {}
    report = Problems(source, lines)
    document = copy.deepcopy(document)
    for path, value in (overrides or {}).items():
        try:
            assign(document, path, value)
        except (KeyError, IndexError, TypeError) as error:
            report.add(("--set",), f"cannot set {path}: {error}")
    report.raise_if_any()
    sweep = document.get("sweep", {})
    points = sweep_points(sweep, report)
    report.raise_if_any()
    variants: list[Variant] = []
    warnings: list[str] = []
    for index, assignments in enumerate(points):
        variant_doc = copy.deepcopy(document)
        for path, value in assignments.items():
            try:
                assign(variant_doc, path, value)
            except (KeyError, IndexError, TypeError) as error:
                report.add(("sweep", path), f"cannot set {path}: {error}")
        checked = Problems(source, lines, swept=assignments, label=label(assignments))
        plan = _plan(variant_doc, checked, warnings)
        report.extend(checked)
        if plan is not None:
            variants.append(Variant(index, label(assignments), assignments, plan))
    report.raise_if_any()
    runs = len(variants) * variants[0].plan.repetitions
    if runs > MAX_RUNS:
        raise Invalid(f"{short(source)}: the sweep and repetitions make {runs} runs; at most "
                      f"{MAX_RUNS}: sweep fewer values or lower repetitions")
    return Scenario(source, text, document, variants, list(dict.fromkeys(warnings)))


# -- validation ------------------------------------------------------------------------------

def _plan(document: dict[str, Any], report: Problems, warnings: list[str]) -> Plan | None:
    try:
        raw = ScenarioFile.model_validate(document)
    except ValidationError as error:
        report.pydantic(error, model=ScenarioFile)
        raw = None
    agents = _agents(document, report, warnings)
    if raw is None:
        _lenient_references(document, report)
    if raw is None or agents is None:
        return None
    _check_references(raw, agents, report, warnings)
    if report.items:
        return None
    return Plan(name=raw.name, description=raw.description, seed=raw.seed,
                repetitions=raw.repetitions, agents=agents, humans=dict(raw.humans),
                rooms=dict(raw.rooms), stop=raw.stop, metrics=raw.metrics, run=raw.run)


def _lenient_references(document: dict[str, Any], report: Problems) -> None:
    """Name missing agents even when other parts of the file are broken."""
    agents, rooms = document.get("agents"), document.get("rooms")
    if not isinstance(agents, dict) or not isinstance(rooms, dict):
        return
    for room_name, room in rooms.items():
        listed = room.get("agents") if isinstance(room, dict) else None
        for index, agent in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(agent, str) and agent not in agents:
                report.add(("rooms", room_name, "agents", index),
                           f"there is no agent {agent!r}; define it as [agents.{agent}] or "
                           f"remove it from the room (agents: {', '.join(agents)})")


class _AgentExtras(Strict):
    script_order: Literal["listed", "shuffled"] = "listed"


def _agents(document: dict[str, Any], report: Problems,
            warnings: list[str]) -> dict[str, AgentPlan] | None:
    defaults = document.get("defaults", {})
    agents = document.get("agents", {})
    if not isinstance(defaults, dict) or not isinstance(agents, dict):
        return None  # ScenarioFile reported the wrong type
    known = set(AgentDefinition.model_fields) | set(SIMULATION_FIELDS)
    for key in defaults:
        if key == "name" or key not in known:
            report.add(("defaults", key), f"unknown field {key!r}; defaults take the fields of "
                       f"an agent except its name: {', '.join(sorted(known - {'name'}))}")
    plans: dict[str, AgentPlan] = {}
    for name, table in agents.items():
        if not isinstance(table, dict):
            continue  # reported by ScenarioFile
        merged = {**{k: v for k, v in defaults.items() if k in known and k != "name"}, **table}
        if "name" in table:
            report.add(("agents", name, "name"), "an agent is named by its table, "
                       f"[agents.{name}]; remove the name field")
            continue
        extras = {k: merged.pop(k) for k in SIMULATION_FIELDS if k in merged}
        ok = True
        try:
            extra = _AgentExtras.model_validate(extras)
        except ValidationError as error:
            _agent_errors(report, error, name, table, _AgentExtras)
            ok = False
        try:
            definition = build({**merged, "name": name})
        except ValidationError as error:
            _agent_errors(report, error, name, table, AgentDefinition)
            ok = False
        if not ok:
            continue
        plans[name] = AgentPlan(definition, extra.script_order)
    return plans if len(plans) == len([t for t in agents.values() if isinstance(t, dict)]) \
        else None


def _agent_errors(report: Problems, error: ValidationError, name: str,
                  table: dict[str, Any], model: type[BaseModel]) -> None:
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        root = "agents" if not loc or loc[0] in table else "defaults"
        path: KeyPath = ("agents", name, *loc) if root == "agents" else ("defaults", *loc)
        if item.get("type") == "extra_forbidden" and len(loc) == 1:
            fields = [f for f in AgentDefinition.model_fields if f != "name"]
            problem = (f"unknown field {loc[0]!r}; an agent's fields are: "
                       f"{', '.join([*fields, *SIMULATION_FIELDS])}")
        else:
            problem = describe(item, model, loc)
        if root == "defaults":
            problem += f" (in agent {name!r}, from [defaults])"
        report.add(path, problem)


def _check_references(raw: ScenarioFile, agents: dict[str, AgentPlan], report: Problems,
                      warnings: list[str]) -> None:
    agent_names = ", ".join(agents)
    rooms_of_agent: dict[str, list[str]] = {}
    for room_name, room in raw.rooms.items():
        for index, agent in enumerate(room.agents):
            if agent not in agents:
                report.add(("rooms", room_name, "agents", index),
                           f"there is no agent {agent!r}; define it as [agents.{agent}] or "
                           f"remove it from the room (agents: {agent_names})")
            rooms_of_agent.setdefault(agent, []).append(room_name)
        if len(set(room.agents)) != len(room.agents):
            report.add(("rooms", room_name, "agents"), "an agent is listed twice")
        for index, person in enumerate(room.humans):
            if person not in raw.humans:
                report.add(("rooms", room_name, "humans", index),
                           f"there is no human {person!r}; define it as [humans.{person}]")
        policy = room.policy
        if policy.mode == "selector" and policy.selector is None:
            report.add(("rooms", room_name, "policy", "selector"),
                       "selector mode needs a selector: the agent that picks who speaks")
        if policy.selector is not None and policy.selector not in room.agents:
            report.add(("rooms", room_name, "policy", "selector"),
                       f"the selector {policy.selector!r} must be one of the room's agents "
                       f"({', '.join(room.agents)})")
        self_starting = room.turn_seconds > 0 or any(
            a in agents and agents[a].timed for a in room.agents)
        if self_starting and policy.max_agent_streak < STREAK_HINT:
            warnings.append(f"in room {room_name!r} agents speak without a person (turn_seconds "
                            "or timers), and agent messages in a row count towards "
                            f"policy.max_agent_streak ({policy.max_agent_streak}): past it "
                            "nobody answers a mention until a person speaks; raise it if "
                            "agents should go on answering each other")
        stop = raw.stop.over(room.stop)
        timed = [a for a in room.agents if a in agents and agents[a].timed]
        if (room.turn_seconds > 0 or timed) and stop.max_turns is None \
                and stop.max_seconds is None:
            why = "turn_seconds is set" if room.turn_seconds > 0 else \
                f"agent {timed[0]!r} speaks on a timer"
            report.add(("rooms", room_name), f"this room could run forever ({why}); set "
                       "stop.max_turns or stop.max_seconds, for the scenario or the room")
    for human_name, human in raw.humans.items():
        if human_name in agents:
            report.add(("humans", human_name), f"{human_name!r} is also an agent; give the "
                       "person and the agent different names")
        for index, room_name in enumerate(human.rooms):
            if room_name not in raw.rooms:
                report.add(("humans", human_name, "rooms", index),
                           f"there is no room {room_name!r}; define it as [rooms.{room_name}]")
        homes = home_rooms(human, human_name, raw.rooms)
        for index, message in enumerate(human.messages):
            where: KeyPath = ("humans", human_name, "messages", index)
            if message.room is not None and message.room not in raw.rooms:
                report.add((*where, "room"), f"there is no room {message.room!r}; one of "
                           f"{', '.join(raw.rooms)}")
            elif message.room is None and len(homes) != 1:
                report.add((*where, "room"), "say which room this message goes to: "
                           f"{human_name!r} is in {len(homes)} rooms "
                           f"({', '.join(homes) or 'none'})")
    for agent, rooms in rooms_of_agent.items():
        plan = agents.get(agent)
        if plan is None:
            continue
        if plan.timed and len(rooms) > 1:
            report.add(("agents", agent), f"agent {agent!r} speaks on a timer and is in rooms "
                       f"{', '.join(rooms)}; a timed agent may be in one room only (its timers "
                       "run on that room's virtual clock)")
        spec = plan.definition
        if spec.chattiness > 0 and spec.cooldown_seconds > 0:
            warnings.append(f"agent {agent!r}: chattiness with cooldown_seconds > 0 is timed "
                            "on the wall clock by the agent, so runs may differ; set "
                            "cooldown_seconds = 0 for reproducible runs")
        if spec.provider == "scripted" and spec.memory.recall > 0 and \
                spec.memory.weights.recency > 0:
            warnings.append(f"agent {agent!r} ranks what it recalls by recency, measured on "
                            "the events' wall-clock times: what it recalls and reflects on may "
                            "differ between runs (its script does not, unless it uses "
                            "{system}); set memory.weights.recency = 0 for runs that repeat "
                            "exactly")
        if spec.provider != "scripted":
            warnings.append(f"agent {agent!r} uses provider {spec.provider!r}: runs call a "
                            "real model, cost money and are not reproducible")
    for agent in agents:
        if agent not in rooms_of_agent:
            warnings.append(f"agent {agent!r} is in no room; it is defined but never speaks")
