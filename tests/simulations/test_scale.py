"""Many agents: 200 agents in 20 rooms, sharing 4 agent and 2 room host processes, 50 turns in
each room."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from salon.platform import Platform
from simulations.cli import Services
from simulations.crowds import crowd_document
from simulations.scenarios import scenario_from_document
from tests.installations import fresh_services
from tests.simulations.conftest import run_all

AGENTS, ROOMS, TURNS, HOSTS, ROOM_HOSTS = 200, 20, 50, 4, 2


@pytest.fixture
def crowd_services(platform: Platform, tmp_path: Path) -> Iterator[Services]:
    """An installation of its own: its host processes go with it."""
    with fresh_services(platform, tmp_path / "home", hosts=HOSTS, room_hosts=ROOM_HOSTS) as fresh:
        yield fresh


def test_two_hundred_agents_in_twenty_rooms_take_fifty_turns_each(crowd_services: Services,
                                                                  tmp_path: Path) -> None:
    scenario = scenario_from_document(crowd_document(agents=AGENTS, rooms=ROOMS, turns=TURNS))
    [simulation] = run_all(crowd_services, [(scenario, {"report": False})], tmp_path,
                           agent_hosts=HOSTS)
    assert not simulation.failed, simulation.failed
    [run] = simulation.metrics["runs"]
    assert simulation.manifest["agent_hosts"] == HOSTS
    assert simulation.manifest["room_hosts"] == ROOM_HOSTS
    # Rooms and agents lived on the hosts alone, and were passivated after the run.
    settings = crowd_services.settings
    hosts = [ray.get_actor(e["name"], namespace=settings.namespace)
             for e in ray.util.list_named_actors(all_namespaces=True)
             if e["namespace"] == settings.namespace and "-host:" in e["name"]]
    assert not [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
                if e["namespace"] == settings.namespace and
                str(e["name"]).startswith(("room:", "agent:"))]
    stats = ray.get([h.stats.remote() for h in hosts])
    assert sorted(s["kind"] for s in stats) == ["agent"] * HOSTS + ["room"] * ROOM_HOSTS
    assert sum(s["active"] for s in stats if s["kind"] == "room") == 0
    assert len(run["agents"]) == AGENTS and len(run["rooms"]) == ROOMS
    assert all(room["stop"] == "turns" and room["agent_turns"] == TURNS
               for room in run["rooms"].values())
    assert run["totals"]["agent_turns"] == ROOMS * TURNS
    assert run["totals"]["failed_turns"] == 0 and run["warnings"] == []
    # Round robin: every agent of every room had the floor, each as often as the others.
    turns = sorted(stats["messages"] for stats in run["agents"].values())
    assert turns[0] == turns[-1] == TURNS * ROOMS // AGENTS
