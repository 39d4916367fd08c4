"""Many agents in one process: an AgentHost actor carries the cores of the agents mapped to it.

One actor per agent costs a process each (about 43 MiB and 0.45 s to start here), which a
simulation of hundreds of agents cannot afford. With ``SALON_AGENT_HOSTS=N`` every agent name
maps to one of N host actors by a stable hash, so each agent still has exactly one writer.
"""

from __future__ import annotations

import zlib
from typing import Any

import ray

from actors.agents import AgentCore
from infra.bus import RoomBus
from infra.settings import Settings
from infra.store import EventStore


def host_index(name: str, hosts: int) -> int:
    """The host an agent lives on: stable across processes and restarts."""
    return zlib.crc32(name.encode()) % hosts


@ray.remote
class AgentHost:
    """Activates agent cores on first use and forwards calls to them."""

    def __init__(self, index: int, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        self.cores: dict[str, AgentCore] = {}
        assert settings.database_url and settings.redis_url, "hosts need resolved server URLs"
        self.store = EventStore(settings.database_url, settings.snapshot_interval,
                                create_tables=False)
        self.bus = RoomBus(settings.redis_url)

    async def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of agent ``name``'s core."""
        core = self.cores.get(name)
        if core is None:
            core = self.cores[name] = AgentCore(name, self.settings, self.store, self.bus)
        return await getattr(core, method)(*args, **kwargs)

    async def hosted(self) -> list[str]:
        """Names of the agents active on this host."""
        return sorted(self.cores)


class HostedAgent:
    """Looks like an agent actor handle: ``agent.method.remote(...)`` goes through the host."""

    def __init__(self, host: Any, name: str) -> None:
        self.host = host
        self.name = name

    def __getattr__(self, method: str) -> _HostedMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _HostedMethod(self.host, self.name, method)


class _HostedMethod:
    def __init__(self, host: Any, name: str, method: str) -> None:
        self.host, self.name, self.method = host, name, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.host.call.remote(self.name, self.method, *args, **kwargs)
