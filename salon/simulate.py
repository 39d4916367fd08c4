"""What ``salon simulate`` runs on: a Salon of its own, started in-process on ``SALON_HOME``.

``simulations.cli.simulate_group`` builds the commands and takes an *engine*, a context
manager that starts what a simulation runs on and yields its ``Services``; this module is
that engine (``simulations/`` never imports the face). ``simulation_platform`` takes the
home's ``salon.lock`` as ``salon up`` does — two writers on one embedded database would
corrupt it — and starts a ``Platform`` without the demo room and on a free port, so a
simulation never fights a running Salon for its port. While it runs, ``run.json`` points the
other commands (``salon rooms list``, ``salon agents show``) at it.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from domain.errors import Unavailable
from infra.settings import Settings
from simulations.cli import Services


@contextmanager
def home_lock(home: Path) -> Iterator[TextIO]:
    """Hold ``home/salon.lock`` (as ``salon up`` does), or Unavailable if another holds it."""
    home.mkdir(parents=True, exist_ok=True)
    lock = (home / "salon.lock").open("a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = home / "run.json"
            where = json.loads(running.read_text()) if running.exists() else {}
            raise Unavailable(
                f"Salon is already running on {home} (pid {where.get('pid', '?')}, "
                f"{where.get('url', 'starting')}); `salon simulate` starts a Salon of its own: "
                "stop the running one first, or set SALON_HOME to another folder") from None
        yield lock
    finally:
        lock.close()


@contextmanager
def platform_services(settings: Settings) -> Iterator[Services]:
    """Start a Platform for ``settings`` (no demo, a free port), yield its Services, stop it."""
    from salon.platform import Platform

    platform = Platform(settings.model_copy(update={"demo": False, "port": 0}))
    try:
        running = platform.start()
        assert platform.store is not None
        # Keep the caller's hosts: the CLI picks them by the size of the scenario.
        resolved = running.settings.model_copy(update={"agent_hosts": settings.agent_hosts,
                                                       "room_hosts": settings.room_hosts})
        platform.write_runfile()
        yield Services(resolved, platform.store, running.login_url)
    finally:
        platform.stop()


@contextmanager
def simulation_platform(settings: Settings) -> Iterator[Services]:
    """The engine of ``salon simulate``: lock the home, start a Salon on it, stop it after."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with home_lock(settings.home.resolve()), platform_services(settings) as services:
        yield services
