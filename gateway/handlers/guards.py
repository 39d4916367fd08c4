"""Guardrails: a room's policy (its owner) and an agent's override (its owner)."""

from __future__ import annotations

from typing import Any

from domain import policy
from domain.capabilities import FREE_PROVIDERS
from domain.guardrails import GuardPolicy, parse_policy
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles
from gateway.services import call


async def _check_judge(conn: Any, user: Principal, found: GuardPolicy,
                       agent_grants: dict[str, Any] | None) -> None:
    if found.judge is None:
        return
    holds = await conn.services.holds(user, agent_grants)
    policy.require_judge_allowed(user, found.judge.provider, FREE_PROVIDERS, holds.providers)


@handles("set_guard")
async def set_guard(request: p.SetGuard, user: Principal, conn: Any) -> dict[str, Any]:
    """The room's owner (or an admin) sets what the guard does in the room."""
    actor, room, _ = await conn.services.room_facts(request.room)
    policy.require_room_owner(user, room, "set its guardrail policy")
    found = parse_policy(request.policy, for_room=True)
    await _check_judge(conn, user, found, None)
    position = await call(actor.set_guard.remote(found.model_dump(), user.name, user.is_admin))
    return {"room": request.room, "position": position, "guard": found.model_dump()}


@handles("set_agent_guard")
async def set_agent_guard(request: p.SetAgentGuard, user: Principal,
                          conn: Any) -> dict[str, Any]:
    """The agent's owner (or an admin) tightens the guard for it, or clears the override."""
    actor, agent, info = await conn.services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "set its guardrail override")
    override = None
    if request.policy is not None:
        found = parse_policy(request.policy, for_room=False)
        await _check_judge(conn, user, found, info.get("grants"))
        override = found.model_dump()
    result: dict[str, Any] = await call(actor.set_guard.remote(override, user.name,
                                                               user.is_admin))
    return result
