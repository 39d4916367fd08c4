"""Runs on the real actors: reproducible by seed, ordinary rooms, every bundled scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray

from actors import directory
from domain.ids import room_id
from domain.rooms import Room
from simulations.cli import Services
from simulations.metrics import transcripts
from simulations.naming import Naming
from simulations.runner import Simulation
from simulations.scenarios import load_scenario
from tests.simulations.conftest import run_all


def only_run(simulation: Simulation) -> dict[str, Any]:
    assert not simulation.failed, simulation.failed
    [run] = simulation.metrics["runs"]
    return run


def test_the_same_seed_repeats_the_transcript_and_another_seed_changes_it(
        services: Services, tmp_path: Path) -> None:
    debate = load_scenario("debate")
    first, again, other = run_all(services, [(debate, {"seed": 7}), (debate, {"seed": 7}),
                                             (debate, {"seed": 8})], tmp_path)
    runs = [only_run(s) for s in (first, again, other)]
    said = [transcripts(run) for run in runs]
    assert len(said[0]["stage"]) >= 8
    assert said[0] == said[1], "two runs with seed 7 differ"
    assert said[0] != said[2], "seed 8 gave the same transcript as seed 7"
    assert {run["run"] for run in runs} == {s.manifest["runs"][0]["run"] for s in
                                            (first, again, other)}
    assert len({run["run"] for run in runs}) == 3, "runs must never share names"
    # What the agents remember repeats too: the runner waits for the memory projection.
    memories = [{a: (s["memory"]["held"], s["memory"]["reflections"], s["memory"]["retrievals"])
                 for a, s in run["agents"].items()} for run in runs]
    assert memories[0] == memories[1]
    assert all(held and held.get("episodic") for held, _, _ in memories[0].values())
    for run in runs:
        assert run["warnings"] == []
        assert all(a["failed_turns"] == 0 for a in run["agents"].values())
        shares = sum(a["share"] for a in run["agents"].values())
        assert abs(shares - 1.0) < 1e-9


def test_a_run_is_ordinary_rooms_and_a_manifest(services: Services, tmp_path: Path) -> None:
    [simulation] = run_all(services, [(load_scenario("debate"), {"seed": 3})], tmp_path)
    run = only_run(simulation)
    manifest = json.loads((simulation.directory / "manifest.json").read_text())
    entry = manifest["runs"][0]
    real = entry["rooms"]["stage"]
    assert real == f"{entry['run']}-stage" and entry["agents"]["pro"] == f"{entry['run']}-pro"
    assert manifest["status"] == "finished" and entry["seed"] == 3
    room = services.store.get(Room, room_id(real), real)
    assert room.topic.startswith(f"[simulation {entry['run']}]")
    members = {m for m, v in room.members.items() if v["kind"] == "agent"}
    assert members == set(entry["agents"].values())
    head = room.position
    # Replay and fork work on it as on any room.
    actor = directory.room(real, services.settings)
    past = ray.get(actor.state_at.remote(head, "admin", True))
    names = Naming(entry["run"], [])
    replayed = [(names.plain(m["author_id"]), names.plain(m["text"]))
                for m in past["transcript"]]
    assert replayed == transcripts(run)["stage"] and len(replayed) >= 2
    fork = f"{real}-what-if"
    assert ray.get(directory.room(fork, services.settings).fork_from.remote(
        real, head - 2, "admin", True)) >= head - 2
    assert (simulation.directory / "report.html").stat().st_size > 10_000
    assert (simulation.directory / "scenario.toml").read_text().startswith("# A moderated")


@pytest.fixture(scope="module")
def bundled_runs(services: Services, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Simulation]:
    """The support desk, the village day and the negotiation, all at once."""
    names = ["support", "village", "negotiation"]
    out = tmp_path_factory.mktemp("bundled")
    done = run_all(services, [(load_scenario(n), {}) for n in names], out)
    return dict(zip(names, done, strict=True))


def test_the_support_desk_uses_its_tool_and_ends_on_the_keyword(
        bundled_runs: dict[str, Simulation]) -> None:
    run = only_run(bundled_runs["support"])
    assert run["rooms"]["desk"]["stop"] == "keyword"
    assert run["agents"]["sam"]["tools"] == {"calculator": {"ok": 1}}
    said = transcripts(run)["desk"]
    assert ("sam", "Done: a refund of 39.98 dollars is on its way; you will see it within five "
            "days.") in said
    assert [a for a, _ in said].count("lee") == 1
    assert said[-1][0] == "customer"


def test_the_village_day_runs_on_timers_and_villagers_remember_and_reflect(
        bundled_runs: dict[str, Simulation]) -> None:
    simulation = bundled_runs["village"]
    run = only_run(simulation)
    square = run["rooms"]["square"]
    assert square["stop"] in ("time", "turns")
    assert run["agents"]["bell"]["triggers"].get("schedule", 0) >= 2
    assert run["agents"]["isabella"]["triggers"].get("idle", 0) >= 2
    assert run["agents"]["maria"]["triggers"].get("mention", 0) >= 1
    times = [m["t"] for m in square["transcript"]]
    assert times == sorted(times) and times[-1] > 6 * 3600
    villagers = ["isabella", "klaus", "maria", "tom"]
    for name in villagers:
        memory = run["agents"][name]["memory"]
        # Everything said on the square after it arrived is an episodic memory of it, unless
        # the upkeep that follows a reflection folded it into a near-duplicate (scripted
        # villagers repeat themselves) or forgot it: each such decision is counted.
        assert memory["held"] is not None, simulation.manifest["warnings"]
        assert memory["held"]["episodic"] + memory["merged"] + memory["forgotten"] >= \
            len(square["transcript"]) - len(villagers), memory
        assert memory["retrievals"] >= 1, f"{name} never recalled a memory"
    reflective = [n for n in villagers if run["agents"][n]["memory"]["reflections"]]
    assert reflective, "no villager reflected"
    for name in reflective:
        memory = run["agents"][name]["memory"]
        assert memory["held"].get("semantic", 0) >= 1, "a reflection is a semantic memory"
        assert run["agents"][name]["model_calls_for_memory"] >= 2  # questions, insights


def test_the_negotiation_sweep_is_compared_side_by_side(
        bundled_runs: dict[str, Simulation]) -> None:
    simulation = bundled_runs["negotiation"]
    assert not simulation.failed
    variants = simulation.metrics["variants"]
    assert [v["summary"]["finished"] for v in variants] == [2, 2]
    tough = [r for r in simulation.metrics["runs"] if r["variant"] == 1]
    assert all(transcripts(r)["table"][-1] == ("buyer", "That is too expensive. I walk away: "
                                               "no deal.") for r in tough)
    seeds = sorted(r["seed"] for r in simulation.metrics["runs"])
    assert seeds == [5, 5, 6, 6]
    html = simulation.report.read_text()
    assert "Sweep compared" in html and html.count("data:image/png;base64,") >= 11
