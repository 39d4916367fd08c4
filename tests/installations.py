"""A second installation inside the test session: a fresh database and Ray namespace on the
session's servers, started with the same Platform as ``salon simulate`` (gateway included)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import ray
from psycopg.conninfo import make_conninfo

from infra.settings import Settings
from salon.platform import Platform
from salon.simulate import platform_services
from simulations.cli import Services


def fresh_settings(settings: Settings, home: Path, hosts: int = 0,
                   room_hosts: int | None = None) -> Settings:
    """Settings for a new database and namespace on the servers behind ``settings``."""
    url = settings.database_url
    assert url is not None
    name = f"sim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return settings.model_copy(update={"database_url": make_conninfo(url, dbname=name),
                                       "namespace": name, "agent_hosts": hosts,
                                       "room_hosts": settings.room_hosts if room_hosts is None
                                       else room_hosts, "home": home})


def stop_actors(settings: Settings) -> None:
    """Stop every named actor of the installation's Ray namespace (those gone already too)."""
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != settings.namespace:
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=entry["namespace"])
        except ValueError:
            continue  # it went by itself
        ray.kill(actor, no_restart=True)


def drop(settings: Settings, server_url: str) -> None:
    """Stop every actor of the installation's namespace and drop its database."""
    stop_actors(settings)
    assert settings.database_url is not None
    name = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_services(platform: Platform, home: Path, hosts: int = 0,
                   room_hosts: int | None = None) -> Iterator[Services]:
    """An installation of its own on the session's servers, removed afterwards."""
    assert platform.running is not None
    server = platform.running.settings
    assert server.database_url is not None
    fresh = fresh_settings(server, home, hosts, room_hosts)
    try:
        with platform_services(fresh) as services:
            yield services
    finally:
        drop(fresh, server.database_url)
