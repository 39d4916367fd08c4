"""The past: history, fork, replay, agent states, diffs, exports, re-runs, imports."""

from __future__ import annotations

import asyncio
from typing import Any

from actors import directory, reruns
from domain import exports, policy
from domain.errors import Conflict
from domain.ids import new_id, room_id
from domain.policy import Principal
from domain.wire import event_frame
from gateway import protocol as p
from gateway.handlers import handles
from gateway.services import call
from projections import replays

HISTORY_LIMIT = 100


async def _readable(conn: Any, user: Principal, name: str) -> Any:
    actor, room, _ = await conn.services.room_facts(name)
    policy.require_room_reader(user, room)
    return actor


@handles("history")
async def history(request: p.History, user: Principal, conn: Any) -> dict[str, Any]:
    """Room readers page back through a room's events."""
    await _readable(conn, user, request.room)
    up_to = None if request.before is None else request.before - 1
    limit = request.limit or HISTORY_LIMIT
    events = [] if up_to == 0 else await asyncio.to_thread(
        conn.services.store.events, room_id(request.room), 0, up_to, limit, True)
    return {"events": [event_frame(request.room, e) for e in events]}


@handles("fork")
async def fork(request: p.Fork, user: Principal, conn: Any) -> dict[str, Any]:
    """Room readers fork a room into a new room of their own."""
    await _readable(conn, user, request.room)
    at = request.at
    if at is None:
        at = await asyncio.to_thread(replays.position_of, conn.services.store, request.room,
                                     str(request.message_id))
    name = request.name or f"{request.room[:40]}-fork-{new_id()[:8]}"
    policy.check_room_name(user, name)
    actor = directory.room(name, conn.services.settings)
    position = await call(actor.fork_from.remote(request.room, at, user.name, user.is_admin,
                                                 request.keep_redacted))
    return {"room": name, "at": at, "position": position}


@handles("replay")
async def replay(request: p.Replay, user: Principal, conn: Any) -> dict[str, Any]:
    """Room readers see the room as it stood at a position."""
    actor = await _readable(conn, user, request.room)
    past: dict[str, Any] = await call(actor.state_at.remote(request.at, user.name,
                                                            user.is_admin))
    return past


@handles("agent_state")
async def agent_state(request: p.AgentState, user: Principal, conn: Any) -> dict[str, Any]:
    """An agent at a version: all of it to its owner and admins, the public parts to others."""
    await conn.services.agent(request.agent)
    state = await asyncio.to_thread(replays.agent_at, conn.services.store, request.agent,
                                    request.version)
    return policy.agent_view(user, state)


@handles("diff")
async def diff(request: p.Diff, user: Principal, conn: Any) -> dict[str, Any]:
    """Readers of both rooms see where they part."""
    for room in (request.room, request.other):
        await _readable(conn, user, room)
    return await asyncio.to_thread(replays.diff, conn.services.store, request.room,
                                   request.other)


@handles("export")
async def export(request: p.Export, user: Principal, conn: Any) -> dict[str, Any]:
    """A room: its readers. An agent: its owner or an admin."""
    if request.kind == "room":
        await _readable(conn, user, request.name)
    else:
        _, agent, _ = await conn.services.agent_facts(request.name)
        policy.require_agent_owner(user, agent, "export it")
    data = await asyncio.to_thread(replays.export, conn.services.store, request.kind,
                                   request.name)
    return {"kind": request.kind, "name": request.name, "data": data}


@handles("rerun")
async def rerun(request: p.Rerun, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins only: a re-run posts as the recorded people."""
    policy.require_admin(user, "re-run rooms (a re-run posts as the recorded people)")
    services = conn.services
    await _readable(conn, user, request.room)
    target = request.name or f"{request.room[:40]}-rerun-{new_id()[:8]}"
    policy.check_room_name(user, target)
    if await asyncio.to_thread(services.store.exists, room_id(target)):
        raise Conflict(f"room {target!r} exists already; pick another name")
    result: dict[str, Any] = await call(
        reruns.rerun(services.settings, services.store, request.room, target, user.name))
    return result


@handles("import")
async def import_(request: p.Import, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins only: an import writes whole streams."""
    policy.require_admin(user, "import rooms and agents")
    kind, name, records = exports.read(request.data)
    settings = conn.services.settings
    actor = directory.room(name, settings) if kind == "room" else directory.agent(name, settings)
    position = await call(actor.import_records.remote(records))
    return {"kind": kind, "name": name, "position": position}
