"""Get-or-activate: the one way to reach the actor of a room or an agent by its name."""

from __future__ import annotations

from typing import Any

import ray

from infra.settings import Settings


def options(kind: str, name: str, settings: Settings) -> dict[str, Any]:
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
    """The actor of room ``name`` (or its place on a shared host), activated if needed."""
    if settings.room_hosts > 0:
        from actors.hosts import Hosted, host

        return Hosted(host("room", name, settings, settings.room_hosts), name)
    from actors.rooms import RoomActor

    return RoomActor.options(**options("room", name, settings)).remote(name, settings)


def agent(name: str, settings: Settings) -> Any:
    """The actor of agent ``name`` (or its place on a shared host), activated if needed."""
    if settings.agent_hosts > 0:
        from actors.hosts import Hosted, host

        return Hosted(host("agent", name, settings, settings.agent_hosts), name)
    from actors.agents import AgentActor

    return AgentActor.options(**options("agent", name, settings)).remote(name, settings)


def _hosts(kind: str, settings: Settings) -> int:
    return settings.room_hosts if kind == "room" else settings.agent_hosts if \
        kind == "agent" else 0


def process(kind: str, name: str, settings: Settings) -> Any | None:
    """The Ray actor whose process holds ``kind:name``: its own actor, or its host (whether
    or not the host has it active); None if that actor is not running. Killing it is a
    crash of everything it holds: Ray restarts it and each comes back from its log."""
    hosts = _hosts(kind, settings)
    if hosts > 0:
        from actors.hosts import host_index

        actor = f"{kind}-host:{host_index(name, hosts)}"
    else:
        actor = f"{kind}:{name}"
    try:
        return ray.get_actor(actor, namespace=settings.namespace)
    except ValueError:
        return None


def active(kind: str, name: str, settings: Settings) -> bool:
    """Whether ``kind:name`` is active now, in a process of its own or on its host (blocking:
    asks the host)."""
    handle = running(kind, name, settings)
    if handle is None:
        return False
    from actors.hosts import Hosted

    if isinstance(handle, Hosted):
        return name in ray.get(handle.host.hosted.remote())
    return True


def running(kind: str, name: str, settings: Settings) -> Any | None:
    """The actor of ``kind:name`` if it is active, else None (never activates).

    On a shared host the answer is a handle whose calls do nothing (answer None) while the
    core is passive, so asking costs no call here.
    """
    hosts = _hosts(kind, settings)
    if hosts > 0:
        from actors.hosts import Hosted, host_index

        try:
            handle = ray.get_actor(f"{kind}-host:{host_index(name, hosts)}",
                                   namespace=settings.namespace)
        except ValueError:
            return None
        return Hosted(handle, name, activate=False)
    try:
        return ray.get_actor(f"{kind}:{name}", namespace=settings.namespace)
    except ValueError:
        return None
