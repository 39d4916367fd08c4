"""The emergency stop: every agent that could still speak is stopped, the running ones first.

Agents are virtual actors, and an installation that ran simulations holds thousands of them,
nearly all dormant. Activating each just to stop it would start a process per agent (about
0.45 s and 43 MiB each here) and wake every room it was in. So the stop goes by what the log
and Ray say: agents already stopped are left as they are; agents whose actor (or host core)
is running are stopped at once, all together, since they are the ones that can act now; the
dormant rest are stopped a few at a time (the stop must be in their own stream, written by
their own actor), and those woken only for this are let go again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import ray

from actors import directory
from actors.hosts import Hosted
from infra.settings import Settings

DORMANT_AT_ONCE = 8


def running_agents(settings: Settings) -> dict[str, Any]:
    """Handles of the agents active now, on their own actor or on a shared host (blocking)."""
    found: dict[str, Any] = {}
    hosts = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != settings.namespace:
            continue
        kind, _, name = str(entry["name"]).partition(":")
        if kind == "agent":
            try:
                found[name] = ray.get_actor(entry["name"], namespace=settings.namespace)
            except ValueError:
                continue  # it went away meanwhile: dormant after all
        elif kind == "agent-host":
            try:
                hosts.append(ray.get_actor(entry["name"], namespace=settings.namespace))
            except ValueError:
                continue
    for host, names in zip(hosts, ray.get([h.hosted.remote() for h in hosts]), strict=True):
        for name in names:
            found.setdefault(name, Hosted(host, name))
    return found


async def stop_every_agent(settings: Settings, agents: Iterable[dict[str, Any]], by: str,
                           reason: str, call: Callable[[Any], Awaitable[Any]]) -> list[str]:
    """Stop every agent of ``agents`` (catalogue rows with name and status) not stopped yet.

    ``call`` awaits an actor call (the gateway's, mapping actor errors to Salon errors).
    Returns the names of the agents stopped now.
    """
    live = await asyncio.to_thread(running_agents, settings)
    names = [a["name"] for a in agents if a.get("status") != "stopped"]
    awake = [n for n in names if n in live]
    dormant = [n for n in names if n not in live]
    stopped = [info["name"] for info in await asyncio.gather(
        *(call(live[n].stop.remote(by, True, reason)) for n in awake))]
    gate = asyncio.Semaphore(DORMANT_AT_ONCE)

    async def stop_dormant(name: str) -> str:
        async with gate:
            info = await call(directory.agent(name, settings).stop.remote(by, True, reason))
            if settings.agent_hosts == 0:
                # Woken only to record the stop: let it go again (it comes back on next use).
                handle = directory.running("agent", name, settings)
                if handle is not None:
                    ray.kill(handle, no_restart=True)
            return str(info["name"])

    stopped += await asyncio.gather(*(stop_dormant(n) for n in dormant))
    return stopped
