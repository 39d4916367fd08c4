"""The runner: every run of a scenario on the live room and agent actors, many at once.

``run_scenario(settings, store, scenario, out=...)`` expands the scenario into runs (each
sweep point times each repetition; repetition ``k`` uses seed ``seed + k``), runs up to
``parallel`` of them at once, and in each run sets up and plays all rooms concurrently (see
``driver.py``). A run's rooms and agents are ordinary rooms and agents named
``{run}-{name}`` (``naming.py``), with the run id in every room's topic, so replay, fork,
re-run, export and audit work on them as on any other.

On disk, under ``out/{simulation id}/``: ``scenario.toml`` (the file as run),
``manifest.json`` (the runs, their seeds, rooms, agents, outcomes; rewritten as runs finish),
``metrics.json`` (``metrics.py``) and ``report.html`` (``reports.py``).

When a run ends its actors are let go: the room actors (and, with one process per agent,
the agent actors) are stopped so hundreds of idle processes do not linger; they come back by
themselves on next use, state rebuilt from the log. Agents with timers that share a host
process are paused instead (``salon agents resume`` wakes them), because their own
wall-clock timers would otherwise speak into the finished room later.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray

from actors import directory
from actors.hosts import Hosted
from domain.errors import Invalid, SalonError
from domain.ids import agent_id
from domain.memories import memory_stream_id
from domain.wire import event_body
from infra.llm import provider_for
from infra.settings import Settings
from infra.store import EventStore
from simulations.driver import OWNER, RoomDriver, RunContext, activated
from simulations.measures import Lexicon
from simulations.memories import MemoryTables
from simulations.metrics import run_metrics, summarize
from simulations.naming import Naming, run_id, simulation_id
from simulations.progress import Progress, Silent, Tally
from simulations.scenarios import Scenario, Variant

DEFINE_AT_ONCE = 16
READS_AT_ONCE = 4
MANIFEST = "manifest.json"
METRICS = "metrics.json"
REPORT = "report.html"


@dataclass(frozen=True)
class Simulation:
    """What a finished ``run_scenario`` left: its id, folder, manifest and metrics."""

    id: str
    directory: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def report(self) -> Path:
        """The HTML report (written unless ``report=False``)."""
        return self.directory / REPORT

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The runs that did not finish, with their errors."""
        return [r for r in self.manifest["runs"] if r["status"] != "finished"]


def _reason(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, SalonError):
        return cause.message
    return f"{type(cause).__name__}: {cause}"


async def _all(calls: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await every call even if some fail; then raise the first failure."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)


class Run:
    """One run: one sweep point, one repetition, one seed."""

    def __init__(self, simulation: str, number: int, variant: Variant, repetition: int,
                 seed: int, settings: Settings, store: EventStore, tally: Tally,
                 progress: Progress, reads: asyncio.Semaphore) -> None:
        self.id = run_id(simulation, number)
        self.number = number
        self.variant = variant
        self.plan = variant.plan
        self.repetition = repetition
        self.seed = seed
        self.settings = settings
        self.tally = tally
        self.progress = progress
        self.names = Naming(self.id, self.plan.agents)
        metrics = self.plan.metrics
        tables = MemoryTables(settings.database_url, store) \
            if settings.memory_projection and settings.database_url else None
        self.context = RunContext(self.id, settings, store, self.plan, seed, self.names,
                                  Lexicon.named(metrics.measure, metrics.positive,
                                                metrics.negative),
                                  reads, on_turns=self._counted, memory=tables)
        self.wall: dict[str, float] = {}
        self.drivers: list[RoomDriver] = []

    def _counted(self, turns: int) -> None:
        self.tally.agent_turns += turns
        self.progress.update(self.tally)

    def record(self) -> dict[str, Any]:
        """This run's entry in the manifest."""
        return {"run": self.id, "number": self.number, "variant": self.variant.index,
                "label": self.variant.label, "repetition": self.repetition, "seed": self.seed,
                "rooms": {n: self.names.room(n) for n in self.plan.rooms},
                "agents": {n: self.names.agent(n) for n in self.plan.agents},
                "status": "pending", "error": None, "outcomes": {}, "wall_seconds": {},
                "warnings": []}

    async def execute(self, release: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Define, set up, play, measure, let go; returns (manifest entry, metrics)."""
        record = self.record()
        metrics: dict[str, Any] = {}
        started = time.monotonic()
        try:
            await self._define()
            self.wall["define"] = time.monotonic() - started
            self.drivers = [RoomDriver(self.context, name) for name in self.plan.rooms]
            mark = time.monotonic()
            await _all(d.setup() for d in self.drivers)
            self.wall["setup"] = time.monotonic() - mark
            mark = time.monotonic()
            await _all(self._play(d) for d in self.drivers)
            self.wall["play"] = time.monotonic() - mark
            mark = time.monotonic()
            metrics = await self._collect()
            self.wall["collect"] = time.monotonic() - mark
            record["status"] = "finished"
        except Exception as error:  # noqa: BLE001 - a failed run is recorded, others go on
            record["status"] = "failed"
            record["error"] = _reason(error)
        finally:
            if release:
                await self._release()
        self.wall["total"] = time.monotonic() - started
        record["wall_seconds"] = {k: round(v, 3) for k, v in self.wall.items()}
        record["outcomes"] = {d.name: {"stop": d.outcome or "error", "detail": d.detail,
                                       "virtual_seconds": d.clock.now, "steps": d.steps,
                                       "agent_turns": d.agent_messages}
                              for d in self.drivers}
        record["warnings"] = list(dict.fromkeys(self.context.warnings +
                                                metrics.get("warnings", [])))
        metrics = {"run": self.id, "variant": self.variant.index, "label": self.variant.label,
                   "repetition": self.repetition, "seed": self.seed,
                   "status": record["status"], **metrics,
                   "warnings": record["warnings"]}
        if metrics.get("totals"):
            play = self.wall.get("play", 0.0)
            metrics["totals"]["agent_turns_per_second"] = \
                metrics["totals"]["agent_turns"] / play if play else 0.0
        return record, metrics

    async def _define(self) -> None:
        gate = asyncio.Semaphore(DEFINE_AT_ONCE)

        async def define(name: str) -> None:
            async with gate:
                real = self.names.agent(name)
                handle = await activated(lambda: directory.agent(real, self.settings))
                await handle.define.remote(self._definition(name), OWNER)

        await _all(define(name) for name in self.plan.agents)

    def _definition(self, name: str) -> dict[str, Any]:
        plan = self.plan.agents[name]
        data = plan.definition.model_dump()
        rewrite = self.names.rewrite
        script = list(plan.definition.script)
        if plan.script_order == "shuffled":
            self.context.rng("script", name).shuffle(script)
        data.update(name=self.names.agent(name), script=[rewrite(line) for line in script],
                    role=rewrite(data["role"]), goal=rewrite(data["goal"]),
                    persona=rewrite(data["persona"]),
                    constraints=[rewrite(c) for c in data["constraints"]])
        if data.get("opening_line"):
            data["opening_line"] = rewrite(data["opening_line"])
        return data

    async def _play(self, driver: RoomDriver) -> None:
        try:
            await driver.play()
        finally:
            self.tally.rooms_done += 1
            self.progress.update(self.tally)

    async def _collect(self) -> dict[str, Any]:
        async def streams(name: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
            real = self.names.agent(name)
            events = await self.context.read(agent_id(real))
            memory = await self.context.read(memory_stream_id(real))
            return name, [event_body(e) for e in events], [event_body(e) for e in memory]

        found = await _all(streams(name) for name in self.plan.agents)
        agents = {name: events for name, events, _ in found}
        memories = {name: memory for name, _, memory in found}
        rooms = [d.summary() for d in self.drivers]
        held = await self._held()
        return run_metrics(rooms, agents, memories,
                           {self.names.room(n): n for n in self.plan.rooms},
                           self.context.lexicon, held)

    async def _held(self) -> dict[str, dict[str, int]] | None:
        """Each agent's memories by kind at the end (None: the memory tables cannot say)."""
        tables = self.context.memory
        if tables is None:
            return None
        if not await tables.caught_up(self.plan.run.settle_seconds):
            self.context.warn("the memory projection stopped catching up with the run for "
                              f"{self.plan.run.settle_seconds:g} s: memory growth counts only "
                              "what the agents' memory streams recorded")
            return None
        real = {self.names.agent(n): n for n in self.plan.agents}
        found = await asyncio.to_thread(tables.holdings, list(real))
        return {real[agent]: kinds for agent, kinds in found.items()}

    async def _release(self) -> None:
        # Timed agents are paused: a hosted one would keep ticking, and any would be woken by
        # its durable reminder (actors/reminders.py) after the run.
        for name, plan in self.plan.agents.items():
            if plan.timed:
                try:
                    await directory.agent(self.names.agent(name), self.settings) \
                        .pause.remote(OWNER, True)
                except Exception as error:  # noqa: BLE001 - best effort on the way out
                    self.context.warnings.append(f"could not pause timed agent {name!r} "
                                                 f"after the run: {_reason(error)}")
        kinds = [("room", self.names.room(n)) for n in self.plan.rooms]
        kinds += [("agent", self.names.agent(n)) for n in self.plan.agents]
        for kind, name in kinds:
            handle = directory.running(kind, name, self.settings)
            if isinstance(handle, Hosted):
                # On a shared host: the core is passivated, the host stays for others.
                try:
                    await handle.host.passivate.remote(name)
                except Exception as error:  # noqa: BLE001 - best effort on the way out
                    self.context.warnings.append(f"could not passivate {kind} {name!r} "
                                                 f"after the run: {_reason(error)}")
            elif handle is not None:
                ray.kill(handle, no_restart=True)


def check_providers(scenario: Scenario) -> None:
    """Refuse before anything runs when an agent names a provider this build cannot serve."""
    problems = []
    for variant in scenario.variants:
        for name, plan in variant.plan.agents.items():
            try:
                provider_for(plan.definition)
            except SalonError as error:
                problems.append(f"agent {name!r}: {error.message}")
    if problems:
        raise Invalid("cannot run this scenario:\n  " + "\n  ".join(dict.fromkeys(problems)))


async def run_scenario(settings: Settings, store: EventStore, scenario: Scenario, *, out: Path,
                       seed: int | None = None, repetitions: int | None = None,
                       parallel: int | None = None, progress: Progress | None = None,
                       release: bool = True, report: bool = True) -> Simulation:
    """Run every run of ``scenario`` on the platform behind ``settings`` and ``store``.

    ``seed`` and ``repetitions`` override the scenario's; ``parallel`` is how many runs go
    at once (the scenario's ``[run] parallel`` by default). Writes the simulation's folder
    under ``out`` and returns what it holds.
    """
    check_providers(scenario)
    progress = progress or Silent()
    Path(out).mkdir(parents=True, exist_ok=True)
    while True:
        simulation = simulation_id(scenario.name)
        folder = Path(out) / simulation
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue  # six random hex digits met an earlier simulation's: draw again
    if scenario.text is not None:
        (folder / "scenario.toml").write_text(scenario.text, encoding="utf-8")
    else:
        (folder / "scenario.json").write_text(json.dumps(scenario.document, indent=2))
    count = repetitions if repetitions is not None else scenario.plan.repetitions
    if count < 1:
        raise Invalid("repetitions must be at least 1")
    reads = asyncio.Semaphore(READS_AT_ONCE)
    tally = Tally(started=time.monotonic())
    runs: list[Run] = []
    for variant in scenario.variants:
        base = seed if seed is not None else variant.plan.seed
        for repetition in range(count):
            runs.append(Run(simulation, len(runs) + 1, variant, repetition, base + repetition,
                            settings, store, tally, progress, reads))
    tally.runs_total = len(runs)
    tally.rooms_total = sum(len(r.plan.rooms) for r in runs)
    limits = [r.plan.stop_for(room).max_turns for r in runs for room in r.plan.rooms]
    tally.turns_expected = sum(x for x in limits if x) if all(limits) else None
    manifest: dict[str, Any] = {
        "simulation": simulation, "scenario": scenario.name,
        "description": scenario.plan.description, "source": scenario.source,
        "created_at": datetime.now(UTC).isoformat(), "finished_at": None, "status": "running",
        "seed": seed if seed is not None else scenario.plan.seed, "repetitions": count,
        "agent_hosts": settings.agent_hosts, "room_hosts": settings.room_hosts,
        "measure": scenario.plan.metrics.measure,
        "variants": [{"index": v.index, "label": v.label, "assignments": v.assignments}
                     for v in scenario.variants],
        "runs": [r.record() for r in runs], "warnings": list(scenario.warnings)}
    _write(folder / MANIFEST, manifest)
    gate = asyncio.Semaphore(parallel or scenario.plan.run.parallel)
    results: list[dict[str, Any]] = [{} for _ in runs]

    async def execute(index: int, run: Run) -> None:
        async with gate:
            record, metrics = await run.execute(release)
        manifest["runs"][index] = record
        results[index] = metrics
        tally.runs_done += 1
        tally.runs_failed += record["status"] != "finished"
        progress.update(tally)
        _write(folder / MANIFEST, manifest)

    await asyncio.gather(*(execute(i, r) for i, r in enumerate(runs)))
    progress.close(tally)
    manifest["finished_at"] = datetime.now(UTC).isoformat()
    manifest["status"] = "finished" if not tally.runs_failed else "failed"
    manifest["warnings"] = list(dict.fromkeys(
        [*manifest["warnings"], *(w for r in manifest["runs"] for w in r["warnings"])]))
    metrics = {"simulation": simulation, "scenario": scenario.name,
               "measure": scenario.plan.metrics.measure,
               "variants": [{"index": v.index, "label": v.label, "assignments": v.assignments,
                             "excerpt": v.plan.metrics.excerpt,
                             "summary": summarize([m for m in results
                                                   if m.get("variant") == v.index])}
                            for v in scenario.variants],
               "runs": results}
    _write(folder / MANIFEST, manifest)
    _write(folder / METRICS, metrics)
    if report:
        from simulations.reports import write_report

        write_report(folder)
    return Simulation(simulation, folder, manifest, metrics)


def simulate(settings: Settings, store: EventStore, scenario: Scenario, *, out: Path,
             **options: Any) -> Simulation:
    """``run_scenario`` for callers without an event loop (the CLI, benchmarks)."""
    return asyncio.run(run_scenario(settings, store, scenario, out=out, **options))


def _write(path: Path, data: dict[str, Any]) -> None:
    # Write then rename: a reader never sees half a file.
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str),
                         encoding="utf-8")
    temporary.replace(path)
