"""What frame handlers reach: the store, accounts, actors, and the facts the policy needs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from actors import directory
from domain.capabilities import Capabilities, Endpoint, endpoints_from, required
from domain.errors import NotFound, RateLimited, SalonError, Unavailable
from domain.ids import agent_id, room_id
from domain.policy import AgentFacts, Principal, RoomFacts, has_quotas
from gateway.auth import Accounts
from gateway.feed import RoomFeed
from gateway.posting import Posters
from infra.settings import Settings
from infra.store import EventStore

log = logging.getLogger(__name__)
KNOWN_STREAMS = 100_000


async def call(ref: Any) -> Any:
    """Await an actor call, surfacing Salon errors as themselves and Ray failures as Unavailable."""
    try:
        return await ref
    except RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, SalonError):
            raise cause from None
        if isinstance(error, SalonError):
            raise SalonError(str(error)) from None
        log.error("actor call failed: %s", error)
        raise Unavailable("the service failed while handling this request; try again") from None
    except RayActorError:
        raise Unavailable("the actor for this request is restarting; try again") from None


class Bucket:
    """A token bucket: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


@dataclass
class Limits:
    """Per-principal limits of this gateway process: frames/s and turns requested."""

    settings: Settings
    frames: dict[str, Bucket] = field(default_factory=dict)
    invokes: dict[str, Bucket] = field(default_factory=dict)

    def frame(self, user: Principal) -> None:
        bucket = self.frames.get(user.name)
        if bucket is None:
            bucket = self.frames[user.name] = Bucket(self.settings.frames_per_second,
                                                     self.settings.frame_burst)
        if not bucket.take():
            raise RateLimited(f"{user.name} sends more than {self.settings.frames_per_second:g} "
                              "frames a second; slow down and retry")

    def invoke(self, user: Principal) -> None:
        if not has_quotas(user):
            return
        per_minute = self.settings.invokes_per_minute
        bucket = self.invokes.get(user.name)
        if bucket is None:
            bucket = self.invokes[user.name] = Bucket(per_minute / 60, per_minute)
        if not bucket.take():
            raise RateLimited(f"{user.name} may request at most {per_minute} agent turns a "
                              "minute; wait and retry")


class Services:
    """Shared by every connection of one gateway."""

    def __init__(self, settings: Settings, store: EventStore, accounts: Accounts,
                 feed: RoomFeed, connections: Any) -> None:
        self.settings, self.store, self.accounts, self.feed = settings, store, accounts, feed
        self.connections = connections
        self.limits = Limits(settings)
        self.endpoints: dict[str, Endpoint] = endpoints_from(settings.endpoints)
        self.known: dict[Any, None] = {}  # streams known to exist, oldest first
        self.posters = Posters(call)

    # -- rooms --------------------------------------------------------------------------

    async def room(self, name: str) -> Any:
        """The actor of an existing room, or NotFound."""
        await self._exists(room_id(name), f"room {name!r} does not exist; `salon rooms list` "
                           "shows the rooms you can join")
        return directory.room(name, self.settings)

    async def _exists(self, stream: Any, missing: str) -> None:
        """NotFound(``missing``) unless ``stream`` has events. Streams are never deleted, so
        a stream seen once is remembered (bounded) and not read again."""
        if stream in self.known:
            return
        if not await asyncio.to_thread(self.store.exists, stream):
            raise NotFound(missing)
        self.known[stream] = None
        while len(self.known) > KNOWN_STREAMS:
            del self.known[next(iter(self.known))]

    async def room_facts(self, name: str) -> tuple[Any, RoomFacts, dict[str, Any]]:
        """(actor, facts for the policy, full info) of an existing room."""
        actor = await self.room(name)
        info: dict[str, Any] = await call(actor.info.remote())
        return actor, RoomFacts.of(info), info

    # -- agents -------------------------------------------------------------------------

    async def agent(self, name: str) -> Any:
        """The actor of an existing agent, or NotFound."""
        await self._exists(agent_id(name),
                           f"agent {name!r} does not exist; `salon agents list` shows them")
        return directory.agent(name, self.settings)

    async def agent_facts(self, name: str) -> tuple[Any, AgentFacts, dict[str, Any]]:
        """(actor, facts for the policy, full info) of an existing agent."""
        actor = await self.agent(name)
        info: dict[str, Any] = await call(actor.info.remote())
        facts = AgentFacts(str(info["name"]), str(info["owner_id"]),
                           bool((info.get("definition") or {}).get("joinable", False)))
        return actor, facts, info

    # -- capabilities -------------------------------------------------------------------

    def tool_permissions(self) -> Mapping[str, frozenset[str]]:
        from actors.toolbox import registry

        tools = registry()
        return {name: tools.get(name).permissions for name in tools.names()}

    def required(self, spec: Any) -> Capabilities:
        """What a definition needs granted."""
        return required(spec, self.endpoints, self.tool_permissions())

    async def holds(self, user: Principal, agent_grants: Mapping[str, Any] | None
                    ) -> Capabilities:
        """What ``user`` may hand to an agent: their own grants and the agent's."""
        mine = await asyncio.to_thread(self.accounts.grants, user.name)
        return mine | Capabilities.of(agent_grants or {})
