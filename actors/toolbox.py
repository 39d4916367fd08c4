"""The tools one agent may use in one room, wired to the room and the platform."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from actors import directory
from domain.agents import Agent
from domain.definitions import AgentDefinition
from domain.errors import Forbidden, NotFound, Unavailable
from domain.ids import agent_id, user_id
from domain.policy import Authority, deputy_refusal
from domain.rooms import direct_room_name
from domain.users import User
from infra.llm import ToolSpec
from infra.store import EventStore
from tools import RedisToolCache, ToolContext, ToolExecutor, ToolRegistry, default_registry

if TYPE_CHECKING:
    from actors.agents import AgentCore


def authority_of(store: EventStore, by: str | None, owner: str | None,
                 hops: int = 0) -> Authority:
    """The person whose authority a trigger carries: agents act for their owners."""
    if by is None or by == owner:
        return Authority(str(owner), False, frozenset())
    if store.exists(agent_id(by)) and hops < 4:
        other = store.get(Agent, agent_id(by), by)
        if other.owner_id != by:
            return authority_of(store, other.owner_id, owner, hops + 1)
    try:
        user = store.get(User, user_id(by), by)
    except NotFound:
        return Authority(by, False, frozenset())
    return Authority(user.name, user.is_admin,
                     frozenset(user.grants.get("permissions", [])))


@functools.cache
def registry() -> ToolRegistry:
    """The built-in tools, built once per process (the sandbox probes its interpreter once)."""
    return default_registry()


class Toolbox:
    """Offers an agent its allowed tools and runs their calls; outcomes never raise."""

    def __init__(self, actor: AgentCore, spec: AgentDefinition, room: str,
                 by: str | None = None, owner: str | None = None) -> None:
        self.actor = actor
        self.spec = spec
        self.room = room
        # Who asked for this turn (None: the agent's own schedule) and who owns the agent.
        self.by = by
        self.owner = owner
        self._authority: Authority | None = None
        self.executor = ToolExecutor(registry(), allowed=spec.tools,
                                     permissions=spec.permissions,
                                     cache=RedisToolCache(actor.bus.redis))
        self.context = ToolContext(agent=actor.name, room=room,
                                   allowed_hosts=frozenset(spec.allowed_hosts),
                                   list_members=self._members,
                                   send_direct_message=self._direct_message,
                                   search_knowledge=self._search)

    def specs(self) -> list[ToolSpec]:
        """Tool definitions for the model: allowed, installed and permitted."""
        return [ToolSpec(**s) for s in self.executor.specs()]

    async def execute(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run one call: {status, result, duration_ms}; refusals and errors included."""
        refusal = await self._deputy_refusal(name)
        if refusal is not None:
            return {"status": "refused", "result": refusal, "duration_ms": 0.0}
        outcome = await self.executor.execute(name, arguments, self.context)
        return {"status": outcome.status, "result": outcome.result,
                "duration_ms": outcome.duration_ms}

    async def _deputy_refusal(self, name: str) -> str | None:
        """Refuse a privileged call the principal behind this turn could not make themselves."""
        tools = registry()
        if name not in tools or self.owner is None:
            return None
        needs = frozenset(tools.get(name).permissions)
        if not needs:
            return None
        if self._authority is None:
            self._authority = await asyncio.to_thread(self._resolve, self.by)
        safe_here = name in self.spec.tools_for_everyone.get(self.room, [])
        return deputy_refusal(name, needs, self.owner, self._authority, safe_here)

    def _resolve(self, by: str | None) -> Authority:
        return authority_of(self.actor.store, by, self.owner)

    async def _members(self) -> list[dict[str, Any]]:
        info: dict[str, Any] = await directory.room(self.room, self.actor.settings).info.remote()
        return [{"name": name, "kind": m["kind"], "role": m["role"]}
                for name, m in info["members"].items()]

    async def _direct_message(self, to: str, text: str) -> dict[str, Any]:
        store = self.actor.store
        if await asyncio.to_thread(store.exists, agent_id(to)):
            kind = "agent"
        elif await asyncio.to_thread(store.exists, user_id(to)):
            kind = "human"
        else:
            raise NotFound(f"there is nobody called {to!r} to write to")
        name = direct_room_name(("agent", self.actor.name), (kind, to))
        room = directory.room(name, self.actor.settings)
        await room.open_direct.remote(self.actor.name, "agent", to, kind)
        posted: dict[str, Any] = await room.post.remote(self.actor.name, text)
        return {"room": name, **posted}

    async def _search(self, query: str, k: int) -> list[dict[str, Any]]:
        collection = self.spec.knowledge
        if collection is None:
            raise Unavailable(f"agent {self.actor.name!r} has no knowledge base; set its "
                              "`knowledge` collection")
        from actors.embedder import RemoteEmbedder
        from infra.knowledge import KnowledgeBase

        owner = self.owner or "admin"

        def search() -> list[dict[str, Any]]:
            base = KnowledgeBase(self.actor.store, embedder=RemoteEmbedder(self.actor.settings))
            try:
                try:
                    owner_is_admin = self.actor.store.get(User, user_id(owner), owner).is_admin
                except NotFound:
                    owner_is_admin = False
                if not base.may_read(collection, owner, owner_is_admin):
                    raise Forbidden(f"collection {collection!r} is not shared with {owner}, "
                                    "the owner of this agent; an admin can share it")
                return base.search(collection, query, k)
            finally:
                base.close()

        return await asyncio.to_thread(search)
