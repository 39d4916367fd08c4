"""Simulations run on the session's real servers (PostgreSQL, Valkey, Ray), each set of them in
an installation of its own: a fresh database and Ray namespace with the same Platform that
``salon simulate`` starts (``salon.simulate.platform_services``: memory tables and their
projection, the gateway). The many agents a simulation defines stay out of the session's
catalogue, and a test's actors are stopped with its installation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from salon.platform import Platform
from simulations.cli import Engine, Services
from simulations.runner import Simulation, run_scenario
from simulations.scenarios import Scenario
from tests.installations import fresh_services


@pytest.fixture(scope="session")
def services(platform: Platform, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Services]:
    """The installation the simulation tests share (each run names its rooms afresh)."""
    with fresh_services(platform, tmp_path_factory.mktemp("simulations-home")) as fresh:
        yield fresh


def run_all(services: Services, jobs: list[tuple[Scenario, dict[str, Any]]], out: Path,
            agent_hosts: int | None = None) -> list[Simulation]:
    """Run several simulations at once (each job: a scenario and run_scenario options)."""
    settings = services.settings if agent_hosts is None else \
        services.settings.model_copy(update={"agent_hosts": agent_hosts})

    async def every() -> list[Simulation]:
        return list(await asyncio.gather(*(
            run_scenario(settings, services.store, scenario, out=out, **options)
            for scenario, options in jobs)))

    return asyncio.run(every())


def engine_for(services: Services) -> Engine:
    """An engine for the CLI that hands out the shared installation instead of starting one."""

    @contextmanager
    def engine(settings: Settings) -> Iterator[Services]:
        yield Services(services.settings.model_copy(
            update={"agent_hosts": settings.agent_hosts}), services.store, services.watch_url)

    return engine
