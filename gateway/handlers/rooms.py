"""Rooms: join, leave, say, list, create, feedback, turn-taking policy, invoke."""

from __future__ import annotations

import asyncio
from typing import Any

from domain import policy
from domain.errors import Forbidden, Invalid, NotFound, RateLimited
from domain.ids import new_id
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles, queued
from gateway.services import call
from projections import catalogue, quotas


@handles("join")
async def join(request: p.Join, user: Principal, conn: Any) -> None:
    """Room readers join; the reply precedes the backlog and live events."""
    actor = await conn.services.room(request.room)
    subscription = await conn.follow(request.room)
    try:
        head = await call(actor.enter.remote(user.name, user.is_admin))
        if request.since is not None and request.since > head:
            raise Invalid(f"since={request.since} is past the room's head {head}")
    except BaseException:
        await conn.unfollow(request.room)
        raise
    conn.send(p.ok(request.id, {"room": request.room, "position": head}))
    subscription.start(request.since, head)


@handles("leave")
async def leave(request: p.Leave, user: Principal, conn: Any) -> dict[str, Any]:
    """Anyone stops following a room on their own connection."""
    await conn.unfollow(request.room)
    return {"room": request.room}


@handles("say")
async def say(request: p.Say, user: Principal, conn: Any) -> dict[str, Any]:
    """Room readers post (joining a public room on the way); the room actor decides.

    No query runs per say: the room's existence is remembered, the author's quota is kept by
    the guard, and the room actor checks membership, the room's size limits and repeats
    (``client_msg_id``) against the room it holds. Says queue per room in arrival order
    (``gateway/posting.py``), so a connection's next say may start once this one is queued.
    """
    services = conn.services
    actor = await services.room(request.room)
    assert services.settings.database_url
    guard = quotas.guard(services.settings.database_url)
    if guard.needs_read(user.name):
        await asyncio.to_thread(guard.check_author, user.name, request.text)
    else:
        guard.check_author(user.name, request.text)
    # A request id of our own makes Ray's retry after an actor crash post at most once.
    posted = services.posters.post(request.room, actor, {
        "author_id": user.name, "text": request.text, "reply_to": request.reply_to,
        "client_msg_id": request.client_msg_id, "request_id": new_id(),
        "is_admin": user.is_admin}, guard.limits)
    queued()
    try:
        return await posted
    except BaseException:
        guard.uncount(user.name, request.text)
        raise


@handles("list_rooms")
async def list_rooms(request: p.ListRooms, user: Principal, conn: Any) -> dict[str, Any]:
    """Every user: the rooms they may read."""
    rooms = await asyncio.to_thread(catalogue.rooms, conn.services.store)
    visible = [r for r in rooms if policy.may_read_room(user, policy.RoomFacts(
        r["name"], r["owner_id"], r["visibility"], dict.fromkeys(r["members"]),
        r["name"].startswith(policy.RESERVED_ROOM_PREFIXES)))]
    return {"rooms": visible}


@handles("create_room")
async def create_room(request: p.CreateRoom, user: Principal, conn: Any) -> dict[str, Any]:
    """Every user, up to their room quota; direct-message names are reserved."""
    policy.check_room_name(user, request.name)
    services = conn.services
    if policy.has_quotas(user):
        rooms = await asyncio.to_thread(catalogue.rooms, services.store)
        owned = sum(1 for r in rooms if r["owner_id"] == user.name)
        if owned >= services.settings.max_rooms_per_user:
            raise RateLimited(f"{user.name} owns {owned} rooms, the most a member may create; "
                              "archive some or ask an admin")
    from actors import directory

    actor = directory.room(request.name, services.settings)
    position = await call(actor.create.remote(user.name, request.topic, request.visibility))
    return {"room": request.name, "position": position}


@handles("feedback")
async def feedback(request: p.Feedback, user: Principal, conn: Any) -> dict[str, Any]:
    """Room members rate messages."""
    actor, room, _ = await conn.services.room_facts(request.room)
    policy.require_room_reader(user, room)
    position = await call(actor.feedback.remote(user.name, request.message_id,
                                                request.rating, request.comment))
    return {"room": request.room, "position": position}


@handles("set_policy")
async def set_policy(request: p.SetPolicy, user: Principal, conn: Any) -> dict[str, Any]:
    """The room's owner (or an admin) chooses how agents take turns."""
    actor, room, _ = await conn.services.room_facts(request.room)
    policy.require_room_owner(user, room, "set its turn-taking policy")
    position = await call(actor.set_policy.remote(request.mode, request.max_agent_streak,
                                                  request.selector, user.name, user.is_admin))
    return {"room": request.room, "position": position}


@handles("invoke")
async def invoke(request: p.Invoke, user: Principal, conn: Any) -> dict[str, Any]:
    """Members of the room ask an agent in it for a turn (limited per minute)."""
    services = conn.services
    _, room, info = await services.room_facts(request.room)
    policy.require_room_member(user, room, "ask its agents for a turn")
    member = info["members"].get(request.agent)
    if member is None or member["kind"] != "agent":
        raise NotFound(f"agent {request.agent!r} is not in room {request.room!r}; add it first")
    services.limits.invoke(user)
    agent = await services.agent(request.agent)
    turn: dict[str, Any] = await call(agent.invoke.remote(request.room, user.name,
                                                           request.prompt))
    return turn


@handles("add_member")
async def add_member(request: p.AddMember, user: Principal, conn: Any) -> dict[str, Any]:
    """The room's owner (or an admin) adds a person, e.g. to a private room."""
    services = conn.services
    actor, room, _ = await services.room_facts(request.room)
    policy.require_room_owner(user, room, "add people to it")
    if room.direct:
        raise Forbidden("nobody joins a direct-message room but its two members")
    await asyncio.to_thread(services.accounts.user, request.user)
    position = await call(actor.add_member.remote(request.user))
    return {"room": request.room, "user": request.user, "position": position}
