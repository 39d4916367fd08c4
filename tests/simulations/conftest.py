"""Simulations run on the session's real servers (PostgreSQL, Valkey, Ray), each set of them in
an installation of its own: a fresh database and Ray namespace with the same Platform that
``salon simulate`` starts (``salon.simulate.platform_services``: memory tables and their
projection, the gateway). The many agents a simulation defines stay out of the session's
catalogue, and a test's actors are stopped with its installation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import ray
from psycopg.conninfo import make_conninfo

from infra.settings import Settings
from salon.platform import Platform
from salon.simulate import platform_services
from simulations.cli import Engine, Services
from simulations.runner import Simulation, run_scenario
from simulations.scenarios import Scenario


def fresh_settings(settings: Settings, home: Path, hosts: int = 0) -> Settings:
    """Settings for a new database and namespace on the servers behind ``settings``."""
    url = settings.database_url
    assert url is not None
    name = f"sim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return settings.model_copy(update={"database_url": make_conninfo(url, dbname=name),
                                       "namespace": name, "agent_hosts": hosts,
                                       "home": home})


def drop(settings: Settings, server_url: str) -> None:
    """Stop every actor of the installation's namespace and drop its database."""
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == settings.namespace:
            try:
                ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]),
                         no_restart=True)
            except ValueError:
                pass  # it went by itself
    assert settings.database_url is not None
    name = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_services(platform: Platform, home: Path, hosts: int = 0) -> Iterator[Services]:
    """An installation of its own on the session's servers, removed afterwards."""
    assert platform.running is not None
    server = platform.running.settings
    assert server.database_url is not None
    fresh = fresh_settings(server, home, hosts)
    try:
        with platform_services(fresh) as services:
            yield services
    finally:
        drop(fresh, server.database_url)


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
