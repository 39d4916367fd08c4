"""Get-or-activate: the one way to reach the actor of a room or an agent by its name."""

from __future__ import annotations

from typing import Any

import ray

from infra.settings import Settings


def _options(kind: str, name: str, settings: Settings) -> dict[str, Any]:
    return {
        "name": f"{kind}:{name}",
        "namespace": settings.namespace,
        "get_if_exists": True,
        # Detached: an actor activated by another actor must not die with its activator.
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": -1,
        "num_cpus": 0,
    }


def room(name: str, settings: Settings) -> Any:
    """The actor of room ``name``, activated if it is not running."""
    from actors.rooms import RoomActor

    return RoomActor.options(**_options("room", name, settings)).remote(name, settings)


def agent(name: str, settings: Settings) -> Any:
    """The actor of agent ``name`` (or its place on a shared host), activated if needed."""
    if settings.agent_hosts > 0:
        from actors.hosts import AgentHost, HostedAgent, host_index

        index = host_index(name, settings.agent_hosts)
        host = AgentHost.options(**_options("agent-host", str(index), settings)).remote(
            index, settings)
        return HostedAgent(host, name)
    from actors.agents import AgentActor

    return AgentActor.options(**_options("agent", name, settings)).remote(name, settings)


def running(kind: str, name: str, settings: Settings) -> Any | None:
    """The actor of ``kind:name`` if it is active, else None (never activates)."""
    try:
        return ray.get_actor(f"{kind}:{name}", namespace=settings.namespace)
    except ValueError:
        return None
