"""Agents: list, create, redefine, show, command, add to a room, override in a room, grants."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from actors import directory
from domain import policy
from domain.capabilities import Capabilities, check_grantable, require_granted
from domain.definitions import AgentDefinition, build
from domain.errors import Conflict, Invalid, RateLimited
from domain.ids import user_id
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles
from gateway.services import call
from projections import catalogue


def definition(raw: dict[str, Any]) -> AgentDefinition:
    """A definition from a frame, or Invalid saying what is wrong."""
    try:
        return build(raw)
    except ValidationError as error:
        raise Invalid(f"agent definition: {p.describe_plain(error)}") from None


async def check_capabilities(conn: Any, user: Principal, spec: AgentDefinition,
                             agent_grants: dict[str, Any] | None) -> dict[str, list[str]] | None:
    """Refuse what ``user`` may not hand to the agent; for admins, what the agent is granted."""
    needs = conn.services.required(spec)
    if policy.may_grant(user):
        # An admin's definition is their grant: the owner may keep it in later versions.
        total = Capabilities.of(agent_grants or {}) | needs
        return total.as_dict() if total else None
    require_granted(spec.name, needs, await conn.services.holds(user, agent_grants))
    return None


@handles("list_agents")
async def list_agents(request: p.ListAgents, user: Principal, conn: Any) -> dict[str, Any]:
    """Every user: every agent's public face; its provider and model to its owner only."""
    agents = await asyncio.to_thread(catalogue.agents, conn.services.store)
    shown = []
    for agent in agents:
        facts = policy.AgentFacts(agent["name"], str(agent.get("owner_id")))
        if policy.may_control_agent(user, facts):
            shown.append(agent)
        else:
            shown.append({k: agent.get(k) for k in ("name", "role", "status", "owner_id",
                                                    "created_at")})
    return {"agents": shown}


@handles("create_agent")
async def create_agent(request: p.CreateAgent, user: Principal, conn: Any) -> dict[str, Any]:
    """Every user, up to their agent quota, with only the capabilities they were granted."""
    services = conn.services
    spec = definition(request.definition)
    if await asyncio.to_thread(services.store.exists, user_id(spec.name)):
        raise Conflict(f"{spec.name!r} is a person's name; a name is a person or an agent, "
                       "never both: pick another")
    grant = await check_capabilities(conn, user, spec, None)
    if policy.has_quotas(user):
        agents = await asyncio.to_thread(catalogue.agents, services.store)
        owned = sum(1 for a in agents if a.get("owner_id") == user.name)
        if owned >= services.settings.max_agents_per_user:
            raise RateLimited(f"{user.name} owns {owned} agents, the most a member may create; "
                              "stop some or ask an admin")
    actor = directory.agent(spec.name, services.settings)
    info: dict[str, Any] = await call(actor.define.remote(spec.model_dump(), user.name, grant))
    return policy.agent_view(user, info)


@handles("redefine_agent")
async def redefine_agent(request: p.RedefineAgent, user: Principal,
                         conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin, within what the agent and its owner were granted."""
    spec = definition(request.definition)
    actor, agent, info = await conn.services.agent_facts(spec.name)
    policy.require_agent_owner(user, agent, "redefine it")
    grant = await check_capabilities(conn, user, spec, info.get("grants"))
    result: dict[str, Any] = await call(actor.redefine.remote(
        spec.model_dump(), user.name, user.is_admin, grant))
    return result


@handles("show_agent")
async def show_agent(request: p.ShowAgent, user: Principal, conn: Any) -> dict[str, Any]:
    """Everyone sees name, role and persona; the owner and admins see everything."""
    _, _, info = await conn.services.agent_facts(request.agent)
    return policy.agent_view(user, info)


@handles("command")
async def command(request: p.Command, user: Principal, conn: Any) -> dict[str, Any]:
    """Pause, resume or stop: the agent's owner or an admin."""
    actor, agent, _ = await conn.services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, f"{request.command} it")
    method = getattr(actor, request.command)
    info: dict[str, Any] = await call(method.remote(user.name, user.is_admin))
    return {"agent": request.agent, "status": info["status"]}


@handles("add_agent")
async def add_agent(request: p.AddAgent, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner (or anyone, if joinable) adds it to a room they are a member of."""
    services = conn.services
    _, agent, _ = await services.agent_facts(request.agent)
    policy.require_agent_user(user, agent, "add it to a room")
    actor, room, _ = await services.room_facts(request.room)
    policy.require_room_member(user, room, "add agents to it")
    position = await call(actor.add_agent.remote(request.agent, user.name, user.is_admin))
    return {"room": request.room, "agent": request.agent, "position": position}


@handles("override")
async def override(request: p.Override, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin, in a room they are a member of, within the grants."""
    services = conn.services
    _, agent, info = await services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "override it")
    actor, room, _ = await services.room_facts(request.room)
    policy.require_room_member(user, room, "change its agents")
    changes = dict(request.changes)
    merged = definition({**info["definition"], **changes})  # the result must still be valid
    if not policy.may_grant(user):
        require_granted(agent.name, services.required(merged),
                        await services.holds(user, info.get("grants")))
    position = await call(actor.override_agent.remote(request.agent, changes, user.name,
                                                      user.is_admin))
    return {"room": request.room, "agent": request.agent, "position": position}


@handles("grant")
async def grant(request: p.Grant, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins set what a user may hand to their agents, or what one agent holds."""
    policy.require_admin(user, "grant capabilities")
    services = conn.services
    capabilities = Capabilities.of(request.capabilities)
    check_grantable(capabilities, services.endpoints)
    if request.user is not None:
        granted = await asyncio.to_thread(services.accounts.grant, request.user, capabilities,
                                          user.name)
        return {"user": request.user, "capabilities": Capabilities.of(granted).as_dict()}
    assert request.agent is not None
    actor = await services.agent(request.agent)
    info: dict[str, Any] = await call(actor.grant.remote(capabilities.as_dict(), user.name))
    return {"agent": request.agent, "capabilities": Capabilities.of(info["grants"]).as_dict()}


@handles("grants")
async def grants(request: p.Grants, user: Principal, conn: Any) -> dict[str, Any]:
    """What a user holds (themselves, or anyone for an admin)."""
    name = request.user or user.name
    policy.require_self_or_admin(user, name, "see what they were granted")
    held = await asyncio.to_thread(conn.services.accounts.grants, name)
    return {"user": name, "capabilities": held.as_dict()}
