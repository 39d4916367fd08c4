"""The ``salon simulate`` commands: run a scenario file, check it, list the bundled ones, report.

``simulate_group(engine)`` builds the click group; the face (``salon/cli.py``) attaches it and
hands in ``engine``: a function that, given the settings, starts what a simulation runs on and
yields its ``Services`` (resolved settings, the event store, and a URL to watch the rooms
live), stopping it all afterwards. Keeping that out of this module keeps ``simulations/``
below ``salon/``: it never imports the face.

    salon simulate FILE [--seed N] [--repetitions N] [--out DIR] [--set PATH=VALUE] ...
    salon simulate check FILE          # validate only; show the runs it would make
    salon simulate list                # the bundled scenarios
    salon simulate report SIMULATION   # write the HTML report again from the saved metrics
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from domain.errors import NotFound, SalonError
from infra.settings import Settings

# Above this many agents a simulation shares host processes unless told otherwise.
AUTO_HOSTS_ABOVE = 32
AUTO_HOSTS = 4


@dataclass(frozen=True)
class Services:
    """What a simulation runs on: resolved settings, the event store, where to watch."""

    settings: Settings
    store: Any  # infra.store.EventStore (imported lazily: the CLI starts fast)
    watch_url: str | None = None


Engine = Callable[[Settings], AbstractContextManager[Services]]


def fail(error: SalonError) -> NoReturn:
    """Print the error on one line (or its list of problems) and exit with its status."""
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_status)


class _RunByDefault(click.Group):
    """``salon simulate FILE ...`` means ``salon simulate run FILE ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def default_out(settings: Settings) -> Path:
    """Where simulations are written unless ``--out`` says otherwise."""
    return settings.home.resolve() / "simulations"


def _hosts(asked: int | None, configured: int, what: str, count: int) -> int:
    """Host processes for ``count`` agents or rooms at once: as asked, else as configured,
    else ``AUTO_HOSTS`` when there are many (with a note saying so)."""
    if asked is not None:
        return asked
    if configured == 0 and count > AUTO_HOSTS_ABOVE:
        click.echo(f"note: up to {count} {what} at once share {AUTO_HOSTS} host processes "
                   f"(--{what[:-1]}-hosts 0 gives each its own)", err=True)
        return AUTO_HOSTS
    return configured


def _overrides(assignments: tuple[str, ...]) -> dict[str, Any]:
    from simulations.sweeps import parse_assignment

    return dict(parse_assignment(text) for text in assignments)


def simulate_group(engine: Engine) -> click.Group:
    """The ``simulate`` command group, running scenarios on what ``engine`` starts."""

    @click.group("simulate", cls=_RunByDefault, no_args_is_help=True,
                 context_settings={"help_option_names": ["-h", "--help"]})
    def simulate() -> None:
        """Run multi-agent simulations from scenario files (TOML) and report on them.

        `salon simulate FILE` runs a scenario (a path, or a bundled scenario's name) on an
        in-process Salon under SALON_HOME and writes a report; it is short for `salon
        simulate run FILE`. Every run's rooms stay in the event log, so replay, fork and
        audit work on them.
        """

    @simulate.command("run")
    @click.argument("scenario")
    @click.option("--seed", type=int, default=None, help="seed of the first repetition "
                  "(repetition k uses seed + k); the scenario's by default")
    @click.option("--repetitions", type=click.IntRange(1, 1000), default=None,
                  help="runs per sweep point; the scenario's by default")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="folder for the simulation's files (SALON_HOME/simulations)")
    @click.option("--parallel", type=click.IntRange(1, 64), default=None,
                  help="runs at once; the scenario's [run] parallel by default")
    @click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
                  help="change a field before running, e.g. stop.max_turns=20 (repeatable)")
    @click.option("--agent-hosts", type=click.IntRange(0, 256), default=None,
                  help="host processes shared by the agents (0: one per agent); "
                       f"SALON_AGENT_HOSTS, or {AUTO_HOSTS} above {AUTO_HOSTS_ABOVE} agents")
    @click.option("--room-hosts", type=click.IntRange(0, 256), default=None,
                  help="host processes shared by the rooms (0: one per room); "
                       f"SALON_ROOM_HOSTS, or {AUTO_HOSTS} above {AUTO_HOSTS_ABOVE} rooms")
    @click.option("--quiet", is_flag=True, help="no progress bar")
    def run(scenario: str, seed: int | None, repetitions: int | None, out: Path | None,
            parallel: int | None, assignments: tuple[str, ...], agent_hosts: int | None,
            room_hosts: int | None, quiet: bool) -> None:
        """Run SCENARIO (a .toml file or a bundled scenario's name) and write its report."""
        from simulations.progress import Silent, TextProgress
        from simulations.runner import simulate as run_all
        from simulations.scenarios import load_scenario

        try:
            loaded = load_scenario(scenario, _overrides(assignments))
            for warning in loaded.warnings:
                click.echo(f"warning: {warning}", err=True)
            settings = Settings()
            at_once = parallel or loaded.plan.run.parallel
            hosts = _hosts(agent_hosts, settings.agent_hosts, "agents", at_once * max(
                len(v.plan.agents) for v in loaded.variants))
            rooms = _hosts(room_hosts, settings.room_hosts, "rooms", at_once * max(
                len(v.plan.rooms) for v in loaded.variants))
            settings = settings.model_copy(update={"agent_hosts": hosts, "room_hosts": rooms})
            folder = out or default_out(settings)
            started = time.monotonic()
            with engine(settings) as services:
                click.echo(f"Salon is up in {settings.home.resolve()}", err=True)
                if services.watch_url:
                    click.echo(f"watch the rooms live: {services.watch_url}", err=True)
                progress = Silent() if quiet else TextProgress(loaded.name)
                done = run_all(services.settings, services.store, loaded, out=folder,
                               seed=seed, repetitions=repetitions, parallel=parallel,
                               progress=progress)
        except SalonError as error:
            fail(error)
        _summary(done.manifest, done.metrics, time.monotonic() - started)
        click.echo(f"report: {done.report}")
        if done.failed:
            sys.exit(1)

    @simulate.command("check")
    @click.argument("scenario")
    @click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
                  help="change a field first, as `run` would")
    def check(scenario: str, assignments: tuple[str, ...]) -> None:
        """Validate SCENARIO without running it; show the runs it would make."""
        from simulations.scenarios import load_scenario

        try:
            loaded = load_scenario(scenario, _overrides(assignments))
        except SalonError as error:
            fail(error)
        plan = loaded.plan
        click.echo(f"{loaded.source}: scenario {plan.name!r} is valid")
        click.echo(f"  {_count(len(plan.agents), 'agent')}, "
                   f"{_count(len(plan.humans), 'scripted person', 'scripted people')}, "
                   f"{_count(len(plan.rooms), 'room')}; seed {plan.seed}")
        click.echo(f"  {len(loaded.variants)} sweep point(s) × {plan.repetitions} "
                   f"repetition(s) = {len(loaded.variants) * plan.repetitions} run(s)")
        for variant in loaded.variants if len(loaded.variants) > 1 else []:
            click.echo(f"    #{variant.index + 1} {variant.label}")
        for warning in loaded.warnings:
            click.echo(f"warning: {warning}", err=True)

    @simulate.command("list")
    def list_() -> None:
        """The bundled scenarios (run one with `salon simulate NAME`)."""
        from simulations.scenarios import bundled, load_scenario

        for name, path in bundled().items():
            description = load_scenario(path).plan.description
            click.echo(f"{name:<14} {description}")

    @simulate.command("report")
    @click.argument("simulation")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="folder the simulation was written to (SALON_HOME/simulations)")
    def report(simulation: str, out: Path | None) -> None:
        """Write SIMULATION's HTML report again (an id, a run id, or the folder's path)."""
        from simulations.reports import write_report

        try:
            folder = find_simulation(simulation, out or default_out(Settings()))
            click.echo(str(write_report(folder)))
        except SalonError as error:
            fail(error)

    return simulate


def find_simulation(name: str, out: Path) -> Path:
    """The folder of a simulation, given its id, one of its run ids, or a path."""
    candidates = [Path(name), out / name]
    if "-" in name:
        candidates.append(out / name.rsplit("-", 1)[0])
    for candidate in candidates:
        if (candidate / "manifest.json").is_file():
            return candidate
    known = sorted(p.parent.name for p in out.glob("*/manifest.json")) if out.is_dir() else []
    hint = f"; simulations in {out}: {', '.join(p for p in known[-5:])}" if known else \
        f"; {out} holds no simulations (pass --out if they were written elsewhere)"
    raise NotFound(f"simulation {name!r} was not found{hint}")


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def _summary(manifest: dict[str, Any], metrics: dict[str, Any], seconds: float) -> None:
    runs = manifest["runs"]
    failed = [r for r in runs if r["status"] != "finished"]
    click.echo(f"simulation {manifest['simulation']}: {len(runs) - len(failed)} of {len(runs)} "
               f"runs finished in {seconds:.1f} s")
    for variant in metrics.get("variants", []):
        totals = variant["summary"]["totals"]
        stops = ", ".join(f"{k} ({n})" for k, n in variant["summary"]["stops"].items())
        label = f"#{variant['index'] + 1} {variant['label']}: " if len(metrics["variants"]) > 1 \
            else ""
        click.echo(f"  {label}{totals['agent_turns']['mean']:.1f} agent turns per run, "
                   f"rooms stopped by {stops or '—'}")
    for run in failed:
        click.echo(f"  run {run['run']} failed: {run['error']}", err=True)
    rooms = [name for run in runs for name in run["rooms"].values()]
    shown = ", ".join(rooms[:4]) + (f" and {len(rooms) - 4} more" if len(rooms) > 4 else "")
    click.echo(f"rooms: {shown} (replay, fork and audit them like any room)")
