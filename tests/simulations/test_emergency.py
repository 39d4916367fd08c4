"""The emergency stop after simulations: it stops their dormant agents without waking rooms."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from actors import directory
from domain.agents import Agent
from domain.ids import agent_id
from salon.client import SalonClient
from simulations.cli import Services
from simulations.scenarios import load_scenario
from tests.simulations.conftest import run_all


def admin_client(services: Services) -> SalonClient:
    assert services.watch_url is not None
    url = urlsplit(services.watch_url)
    [token] = parse_qs(url.query)["token"]
    return SalonClient(f"ws://{url.netloc}/v1/ws", token)


def test_the_emergency_stop_records_a_stop_for_dormant_agents_and_lets_them_go(
        services: Services, tmp_path: Path) -> None:
    [simulation] = run_all(services, [(load_scenario("negotiation"),
                                       {"repetitions": 1, "report": False})], tmp_path)
    assert not simulation.failed, simulation.failed
    agents = [name for run in simulation.manifest["runs"] for name in run["agents"].values()]
    rooms = [name for run in simulation.manifest["runs"] for name in run["rooms"].values()]
    settings = services.settings
    # A finished run lets its actors go: everything of it is dormant.
    assert not any(directory.active("agent", a, settings) for a in agents)
    assert not any(directory.active("room", r, settings) for r in rooms)
    with admin_client(services) as client:
        stopped = client.request({"type": "emergency_stop", "reason": "drill"})["stopped"]
        assert set(agents) <= set(stopped)
        # Stopped agents are not stopped again.
        again = client.request({"type": "emergency_stop", "reason": "drill"})["stopped"]
        assert not set(agents) & set(again)
        listed = {a["name"]: a["status"] for a in client.request({"type": "list_agents"})
                  ["agents"]}
    for name in agents:
        assert services.store.get(Agent, agent_id(name), name).status == "stopped"
        assert listed[name] == "stopped"
        assert not directory.active("agent", name, settings), f"{name} was left running"
    assert not any(directory.active("room", r, settings) for r in rooms), \
        "stopping agents woke their rooms"
