"""Agents' memories (their owners), facts about people (those people), knowledge bases."""

from __future__ import annotations

import asyncio
from typing import Any

from domain import policy
from domain.errors import Forbidden
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import handles
from gateway.services import call


def _memories(conn: Any) -> Any:
    from actors.agents import memory_store

    assert conn.services.settings.database_url
    return memory_store(conn.services.settings.database_url)


@handles("memories")
async def memories(request: p.Memories, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin lists or searches its memories."""
    from actors.embedder import RemoteEmbedder
    from infra.recall import list_memories, search_memories

    services = conn.services
    _, agent, _ = await services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "read its memories")
    if request.query:
        found = await asyncio.to_thread(
            search_memories, services.store, _memories(conn), RemoteEmbedder(services.settings),
            request.agent, user.name, request.query, user.is_admin, request.limit,
            kind=request.kind)
    else:
        found = await asyncio.to_thread(list_memories, services.store, _memories(conn),
                                        request.agent, user.name, user.is_admin,
                                        request.kind, request.limit)
    return {"agent": request.agent, "memories": found}


@handles("add_memory")
async def add_memory(request: p.AddMemory, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin."""
    actor, agent, _ = await conn.services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "add to its memories")
    added: dict[str, Any] = await call(actor.add_memory.remote(
        user.name, user.is_admin, request.content, request.kind, request.importance))
    return added


@handles("delete_memory")
async def delete_memory(request: p.DeleteMemory, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin."""
    actor, agent, _ = await conn.services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "delete its memories")
    deleted: dict[str, Any] = await call(actor.delete_memory.remote(
        user.name, user.is_admin, request.memory_id))
    return deleted


@handles("memory_upkeep")
async def memory_upkeep(request: p.MemoryUpkeep, user: Principal, conn: Any) -> dict[str, Any]:
    """The agent's owner or an admin runs its upkeep now and sees what it merged and forgot."""
    actor, agent, _ = await conn.services.agent_facts(request.agent)
    policy.require_agent_owner(user, agent, "run its memory upkeep")
    done: dict[str, Any] = await call(actor.memory_upkeep.remote(
        user.name, user.is_admin, "manual", True))
    return done


@handles("facts")
async def facts(request: p.Facts, user: Principal, conn: Any) -> dict[str, Any]:
    """What an agent holds about me (admins: about anyone)."""
    from infra.recall import user_facts

    policy.require_self_or_admin(user, request.about, "see what agents know about them")
    await conn.services.agent(request.agent)
    found = await asyncio.to_thread(user_facts, _memories(conn), request.agent, user.name,
                                    request.about, user.is_admin)
    return {"agent": request.agent, "about": request.about or user.name, "facts": found}


@handles("forget_fact")
async def forget_fact(request: p.ForgetFact, user: Principal, conn: Any) -> dict[str, Any]:
    """People delete what agents know about them (admins: about anyone)."""
    policy.require_self_or_admin(user, request.about, "delete what agents know about them")
    actor = await conn.services.agent(request.agent)
    forgotten: dict[str, Any] = await call(actor.forget_fact.remote(
        user.name, user.is_admin, request.fact_id, request.about))
    return forgotten


def _knowledge(conn: Any) -> Any:
    from actors.embedder import RemoteEmbedder
    from infra.knowledge import KnowledgeBase

    return KnowledgeBase(conn.services.store, embedder=RemoteEmbedder(conn.services.settings))


@handles("add_document")
async def add_document(request: p.AddDocument, user: Principal, conn: Any) -> dict[str, Any]:
    """Admins add documents; the first to add to a collection owns it."""
    policy.require_admin(user, "add documents to knowledge bases")

    def add() -> int:
        base = _knowledge(conn)
        try:
            base.claim(request.collection, user.name)  # the first admin to add owns it
            chunks: int = base.ingest(request.collection, request.title, request.text)
            return chunks
        finally:
            base.close()

    chunks = await asyncio.to_thread(add)
    return {"collection": request.collection, "title": request.title, "chunks": chunks}


@handles("knowledge")
async def knowledge(request: p.Knowledge, user: Principal, conn: Any) -> dict[str, Any]:
    """The collection's owner, its readers, and admins list or search it."""
    def look() -> dict[str, Any]:
        base = _knowledge(conn)
        try:
            if not base.may_read(request.collection, user.name, user.is_admin):
                raise Forbidden(f"collection {request.collection!r} is not shared with "
                                f"{user.name}; its owner or an admin can share it "
                                "(`share_knowledge`)")
            if request.query:
                return {"passages": base.search(request.collection, request.query, request.k)}
            return {"documents": base.documents(request.collection)}
        finally:
            base.close()

    return {"collection": request.collection, **await asyncio.to_thread(look)}


@handles("share_knowledge")
async def share_knowledge(request: p.ShareKnowledge, user: Principal,
                          conn: Any) -> dict[str, Any]:
    """Admins name who may search a collection (``*``: everyone)."""
    policy.require_admin(user, "share knowledge collections")

    def share() -> None:
        base = _knowledge(conn)
        try:
            base.share(request.collection, request.readers)
        finally:
            base.close()

    await asyncio.to_thread(share)
    return {"collection": request.collection, "readers": sorted(set(request.readers))}


# -- consent: whether agents may remember me, and what they remember about me ---------------

@handles("set_consent")
async def set_consent(request: p.SetConsent, user: Principal, conn: Any) -> dict[str, Any]:
    """A person sets only their own consent (no one, not even an admin, sets another's)."""
    from infra.consent import set_consent as record

    policy.require_self(user, request.user, "set their consent to being remembered")
    return await asyncio.to_thread(record, conn.services.store, user.name, request.memory,
                                   request.room)


@handles("consent")
async def consent(request: p.Consent, user: Principal, conn: Any) -> dict[str, Any]:
    """My consent settings (admins: anyone's)."""
    from infra.consent import consent_of

    policy.require_self_or_admin(user, request.user, "see their consent settings")
    found: dict[str, Any] = await asyncio.to_thread(consent_of, conn.services.store,
                                                    request.user or user.name)
    return found


@handles("my_memories")
async def my_memories(request: p.MyMemories, user: Principal, conn: Any) -> dict[str, Any]:
    """What agents remember about me: memories whose source is mine, facts about me."""
    from infra.consent import memories_about

    if request.agent is not None:
        await conn.services.agent(request.agent)
    found = await asyncio.to_thread(memories_about, _memories(conn), user.name, request.agent,
                                    request.limit)
    return {"user": user.name, **found}


@handles("forget_memory")
async def forget_memory(request: p.ForgetMemory, user: Principal, conn: Any) -> dict[str, Any]:
    """Delete a memory an agent holds about me (not_found for any other memory)."""
    actor = await conn.services.agent(request.agent)
    forgotten: dict[str, Any] = await call(actor.forget_memory_about.remote(
        user.name, request.memory_id))
    return forgotten
