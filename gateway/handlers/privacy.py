"""Taking words back: redaction, a fork's choice to keep copies, erasure of a person, keys."""

from __future__ import annotations

import asyncio
from typing import Any

from domain import policy
from domain.errors import Invalid
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles
from gateway.services import call


@handles("redact")
async def redact(request: p.Redact, user: Principal, conn: Any) -> dict[str, Any]:
    """The author, the room's owner or an admin takes a message back (the room checks who
    wrote it: ``policy.require_may_redact``)."""
    actor, facts, _ = await conn.services.room_facts(request.room)
    policy.require_room_reader(user, facts)
    result: dict[str, Any] = await call(actor.redact.remote(
        request.message_id, user.name, request.reason, user.is_admin))
    return result


@handles("keep_redacted")
async def keep_redacted(request: p.KeepRedacted, user: Principal, conn: Any) -> dict[str, Any]:
    """A fork's owner keeps its copies of messages its parent redacts from now on."""
    actor, facts, _ = await conn.services.room_facts(request.room)
    policy.require_room_owner(user, facts, "keep its copies of redacted messages")
    position = await call(actor.keep_redacted.remote(user.name, user.is_admin))
    return {"room": request.room, "position": position, "keep_redacted": True}


async def _forget(conn: Any, request: Any, name: str, by: str) -> None:
    """Forget ``name``, answer, then close their connections (the asker's own last, once the
    answer is on its way: forget_me closes the connection it came on)."""
    services = conn.services
    done = await asyncio.to_thread(services.accounts.forget, name, by)
    conn.send(p.ok(request.id, {"user": name, **done}))
    for _ in range(100):  # the answer leaves before the close (bounded: 5 s)
        if conn.outbox.empty() and not conn.writing:
            break
        await asyncio.sleep(0.05)
    await services.connections.close_user(name, "forgotten")
    await services.feed.broadcast("revoked", name)


@handles("forget_me")
async def forget_me(request: p.ForgetMe, user: Principal, conn: Any) -> None:
    """Anyone erases their own words, confirming with their name; their tokens stop."""
    if request.confirm != user.name:
        raise Invalid(f"forget_me erases everything you said and cannot be undone; confirm "
                      f"with your own name (\"confirm\": {user.name!r})")
    await _forget(conn, request, user.name, user.name)


@handles("forget_user")
async def forget_user(request: p.ForgetUser, user: Principal, conn: Any) -> None:
    """Admins erase a person's words."""
    policy.require_admin(user, "forget a person")
    if request.user == user.name:
        raise Invalid("to forget yourself, use forget_me")
    await _forget(conn, request, request.user, user.name)


@handles("rotate_keys")
async def rotate_keys(request: p.RotateKeys, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins re-wrap every data key under a new master key."""
    policy.require_admin(user, "rotate the master key")
    count = await asyncio.to_thread(conn.services.store.keys.rotate_master)
    return {"rewrapped": count, "master": conn.services.store.keys.master.kid}
