"""Accounts and the installation: who am I, tokens, their revocation, the emergency stop."""

from __future__ import annotations

import asyncio
from typing import Any

from domain import policy
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles
from projections import catalogue


@handles("whoami")
async def whoami(request: p.Whoami, user: Principal, conn: Any) -> dict[str, Any]:
    """Every user: their own name and role."""
    return {"user": user.name, "role": user.role}


@handles("create_token")
async def create_token(request: p.CreateToken, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins issue tokens (registering the user first if new)."""
    policy.require_admin(user, "create tokens")
    token = await asyncio.to_thread(conn.services.accounts.issue_token, request.user,
                                    request.role, "", request.days)
    return {"user": request.user, "token": token}


@handles("revoke_token")
async def revoke_token(request: p.RevokeToken, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins revoke a user's tokens; their open connections close with 4401 at once."""
    policy.require_admin(user, "revoke tokens")
    revoked = await asyncio.to_thread(conn.services.accounts.revoke, request.user)
    closed = await conn.services.connections.close_user(request.user)
    # Other gateways of the installation close theirs when they hear it.
    await conn.services.feed.broadcast("revoked", request.user)
    return {"user": request.user, "revoked": revoked, "closed": closed}


@handles("emergency_stop")
async def emergency_stop(request: p.EmergencyStop, user: Principal,
                         conn: Any) -> dict[str, Any]:
    """Admins stop every agent at once."""
    policy.require_admin(user, "stop every agent")
    from actors.emergency import stop_every_agent
    from gateway.services import call

    services = conn.services
    agents = await asyncio.to_thread(catalogue.agents, services.store)
    reason = request.reason or f"emergency stop by {user.name}"
    stopped = await stop_every_agent(services.settings, agents, user.name, reason, call)
    return {"stopped": stopped}
