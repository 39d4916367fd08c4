"""One WebSocket connection: authenticate, then turn each request frame into one action."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError
from ray.exceptions import RayActorError, RayTaskError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from actors import directory, reruns
from domain import exports
from domain.definitions import AgentDefinition, build
from domain.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    SalonError,
    Unauthenticated,
    Unavailable,
)
from domain.ids import agent_id, new_id, room_id
from domain.wire import event_frame
from gateway import protocol as p
from gateway.auth import Accounts, Principal
from gateway.feed import RoomFeed
from gateway.subscriptions import Subscription
from infra.settings import Settings
from infra.store import EventStore
from projections import catalogue, quotas, replays

log = logging.getLogger(__name__)
HISTORY_LIMIT = 100


def _definition(raw: dict[str, Any]) -> AgentDefinition:
    try:
        return build(raw)
    except ValidationError as error:
        raise Invalid(f"agent definition: {p.describe_plain(error)}") from None


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


class Session:
    """Request handling for one connection. Frames are handled in the order they arrive."""

    def __init__(self, ws: ServerConnection, settings: Settings, store: EventStore,
                 accounts: Accounts, feed: RoomFeed) -> None:
        self.ws, self.settings, self.store, self.accounts, self.feed = (
            ws, settings, store, accounts, feed)
        self.user: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}

    async def run(self) -> None:
        try:
            async for text in self.ws:
                await self.handle(text)
        except ConnectionClosed:
            pass
        finally:
            for room in list(self.subscriptions):
                await self._unfollow(room)

    async def handle(self, text: str | bytes) -> None:
        request_id: p.RequestId = None
        try:
            request, request_id = p.parse(text)
            if isinstance(request, p.Hello):
                await self.hello(request)
                return
            if self.user is None:
                raise Unauthenticated("send a hello frame with your token first")
            result = await getattr(self, f"do_{request.type}")(request, self.user)
            if result is not None:
                await self.ws.send(p.ok(request_id, result))
        except p.FrameInvalid as failure:
            await self.ws.send(p.error(failure.request_id, failure))
        except SalonError as failure:
            await self.ws.send(p.error(request_id, failure))
        except ConnectionClosed:
            raise
        except Exception:  # noqa: BLE001 - one bad request must not end the connection
            log.exception("request failed")
            await self.ws.send(p.error(request_id, Unavailable("internal error; see server log")))

    async def hello(self, request: p.Hello) -> None:
        try:
            self.user = await asyncio.to_thread(self.accounts.authenticate, request.token)
        except Unauthenticated as failure:
            await self.ws.send(p.error(request.id, failure))
            await self.ws.close(4401, "unauthenticated")
            return
        await self.ws.send(p.ok(request.id, {"user": self.user.name, "role": self.user.role}))

    # -- rooms --------------------------------------------------------------------------

    async def _room(self, name: str) -> Any:
        if not await asyncio.to_thread(self.store.exists, room_id(name)):
            raise NotFound(f"room {name!r} does not exist; `salon rooms list` shows the rooms "
                           "you can join")
        return directory.room(name, self.settings)

    async def _visible_room(self, name: str, user: Principal) -> tuple[Any, dict[str, Any]]:
        actor = await self._room(name)
        info = await call(actor.info.remote())
        if info["visibility"] != "public" and user.name not in info["members"] \
                and not user.is_admin:
            raise Forbidden(f"room {name!r} is private; ask its owner to add you")
        return actor, info

    async def do_join(self, request: p.Join, user: Principal) -> None:
        actor = await self._room(request.room)
        await self._unfollow(request.room)
        subscription = Subscription(request.room, self.store, self.ws.send)
        # Follow before reading the head, so nothing published after the head is missed.
        await self.feed.follow(request.room, subscription.on_frame)
        self.subscriptions[request.room] = subscription
        try:
            head = await call(actor.enter.remote(user.name, user.is_admin))
            if request.since is not None and request.since > head:
                raise Invalid(f"since={request.since} is past the room's head {head}")
        except BaseException:
            await self._unfollow(request.room)
            raise
        await self.ws.send(p.ok(request.id, {"room": request.room, "position": head}))
        subscription.start(request.since, head)

    async def _unfollow(self, room: str) -> None:
        subscription = self.subscriptions.pop(room, None)
        if subscription is not None:
            await self.feed.unfollow(room, subscription.on_frame)
            await subscription.stop()

    async def do_leave(self, request: p.Leave, user: Principal) -> dict[str, Any]:
        await self._unfollow(request.room)
        return {"room": request.room}

    async def do_say(self, request: p.Say, user: Principal) -> dict[str, Any]:
        actor = await self._room(request.room)
        assert self.settings.database_url
        await asyncio.to_thread(quotas.guard(self.settings.database_url).check, request.room,
                                user.name, request.text)
        # A request id of our own makes Ray's retry after an actor crash post at most once.
        posted: dict[str, Any] = await call(actor.post.remote(
            user.name, request.text, reply_to=request.reply_to,
            client_msg_id=request.client_msg_id, request_id=new_id(), is_admin=user.is_admin))
        return posted

    async def do_history(self, request: p.History, user: Principal) -> dict[str, Any]:
        await self._visible_room(request.room, user)
        up_to = None if request.before is None else request.before - 1
        limit = request.limit or HISTORY_LIMIT
        events = [] if up_to == 0 else await asyncio.to_thread(
            self.store.events, room_id(request.room), 0, up_to, limit, True)
        return {"events": [event_frame(request.room, e) for e in events]}

    async def do_list_rooms(self, request: p.ListRooms, user: Principal) -> dict[str, Any]:
        rooms = await asyncio.to_thread(catalogue.rooms, self.store)
        visible = [r for r in rooms if r["visibility"] == "public" or user.name in r["members"]
                   or user.is_admin]
        return {"rooms": visible}

    async def do_create_room(self, request: p.CreateRoom, user: Principal) -> dict[str, Any]:
        actor = directory.room(request.name, self.settings)
        position = await call(actor.create.remote(user.name, request.topic, request.visibility))
        return {"room": request.name, "position": position}

    # -- agents -------------------------------------------------------------------------

    async def _agent(self, name: str) -> Any:
        if not await asyncio.to_thread(self.store.exists, agent_id(name)):
            raise NotFound(f"agent {name!r} does not exist; `salon agents list` shows them")
        return directory.agent(name, self.settings)

    async def do_list_agents(self, request: p.ListAgents, user: Principal) -> dict[str, Any]:
        return {"agents": await asyncio.to_thread(catalogue.agents, self.store)}

    async def do_create_agent(self, request: p.CreateAgent, user: Principal) -> dict[str, Any]:
        definition = _definition(request.definition)
        actor = directory.agent(definition.name, self.settings)
        info: dict[str, Any] = await call(actor.define.remote(definition.model_dump(),
                                                              user.name))
        return info

    async def do_redefine_agent(self, request: p.RedefineAgent,
                                user: Principal) -> dict[str, Any]:
        definition = _definition(request.definition)
        actor = await self._agent(definition.name)
        info: dict[str, Any] = await call(actor.redefine.remote(
            definition.model_dump(), user.name, user.is_admin))
        return info

    async def do_show_agent(self, request: p.ShowAgent, user: Principal) -> dict[str, Any]:
        actor = await self._agent(request.agent)
        info: dict[str, Any] = await call(actor.info.remote())
        return info

    # -- memory (owner or admin; reads here, writes through the agent's actor) ---------------

    def _memories(self) -> Any:
        from actors.agents import memory_store

        assert self.settings.database_url
        return memory_store(self.settings.database_url)

    async def do_memories(self, request: p.Memories, user: Principal) -> dict[str, Any]:
        from actors.embedder import RemoteEmbedder
        from infra.recall import list_memories, search_memories

        if request.query:
            found = await asyncio.to_thread(
                search_memories, self.store, self._memories(), RemoteEmbedder(self.settings),
                request.agent, user.name, request.query, user.is_admin, request.limit,
                kind=request.kind)
        else:
            found = await asyncio.to_thread(list_memories, self.store, self._memories(),
                                            request.agent, user.name, user.is_admin,
                                            request.kind, request.limit)
        return {"agent": request.agent, "memories": found}

    async def do_add_memory(self, request: p.AddMemory, user: Principal) -> dict[str, Any]:
        actor = await self._agent(request.agent)
        added: dict[str, Any] = await call(actor.add_memory.remote(
            user.name, user.is_admin, request.content, request.kind, request.importance))
        return added

    async def do_delete_memory(self, request: p.DeleteMemory, user: Principal) -> dict[str, Any]:
        actor = await self._agent(request.agent)
        deleted: dict[str, Any] = await call(actor.delete_memory.remote(
            user.name, user.is_admin, request.memory_id))
        return deleted

    async def do_facts(self, request: p.Facts, user: Principal) -> dict[str, Any]:
        from infra.recall import user_facts

        await self._agent(request.agent)
        found = await asyncio.to_thread(user_facts, self._memories(), request.agent, user.name,
                                        request.about, user.is_admin)
        return {"agent": request.agent, "about": request.about or user.name, "facts": found}

    async def do_forget_fact(self, request: p.ForgetFact, user: Principal) -> dict[str, Any]:
        actor = await self._agent(request.agent)
        forgotten: dict[str, Any] = await call(actor.forget_fact.remote(
            user.name, user.is_admin, request.fact_id, request.about))
        return forgotten

    # -- knowledge bases (searched by agents' search_knowledge_base tool) -------------------

    async def do_add_document(self, request: p.AddDocument, user: Principal) -> dict[str, Any]:
        from actors.embedder import RemoteEmbedder
        from infra.knowledge import ingest

        if not user.is_admin:
            raise Forbidden("only admins add documents to knowledge bases")
        chunks = await asyncio.to_thread(ingest, self.store, request.collection, request.title,
                                         request.text, RemoteEmbedder(self.settings))
        return {"collection": request.collection, "title": request.title, "chunks": chunks}

    async def do_knowledge(self, request: p.Knowledge, user: Principal) -> dict[str, Any]:
        from actors.embedder import RemoteEmbedder
        from infra.knowledge import KnowledgeBase

        def look() -> dict[str, Any]:
            base = KnowledgeBase(self.store, embedder=RemoteEmbedder(self.settings))
            try:
                if request.query:
                    return {"passages": base.search(request.collection, request.query,
                                                    request.k)}
                return {"documents": base.documents(request.collection)}
            finally:
                base.close()

        return {"collection": request.collection, **await asyncio.to_thread(look)}

    async def do_command(self, request: p.Command, user: Principal) -> dict[str, Any]:
        actor = await self._agent(request.agent)
        method = getattr(actor, request.command)
        info: dict[str, Any] = await call(method.remote(user.name, user.is_admin))
        return {"agent": request.agent, "status": info["status"]}

    async def do_emergency_stop(self, request: p.EmergencyStop,
                                user: Principal) -> dict[str, Any]:
        if not user.is_admin:
            raise Forbidden("only admins may stop every agent")
        from actors.emergency import stop_every_agent

        agents = await asyncio.to_thread(catalogue.agents, self.store)
        reason = request.reason or f"emergency stop by {user.name}"
        stopped = await stop_every_agent(self.settings, agents, user.name, reason, call)
        return {"stopped": stopped}

    async def do_set_policy(self, request: p.SetPolicy, user: Principal) -> dict[str, Any]:
        actor = await self._room(request.room)
        position = await call(actor.set_policy.remote(request.mode, request.max_agent_streak,
                                                      request.selector, user.name, user.is_admin))
        return {"room": request.room, "position": position}

    async def do_feedback(self, request: p.Feedback, user: Principal) -> dict[str, Any]:
        actor, _ = await self._visible_room(request.room, user)
        position = await call(actor.feedback.remote(user.name, request.message_id,
                                                    request.rating, request.comment))
        return {"room": request.room, "position": position}

    async def do_add_agent(self, request: p.AddAgent, user: Principal) -> dict[str, Any]:
        await self._agent(request.agent)
        actor = await self._room(request.room)
        position = await call(actor.add_agent.remote(request.agent, user.name, user.is_admin))
        return {"room": request.room, "agent": request.agent, "position": position}

    async def do_invoke(self, request: p.Invoke, user: Principal) -> dict[str, Any]:
        _, info = await self._visible_room(request.room, user)
        member = info["members"].get(request.agent)
        if member is None or member["kind"] != "agent":
            raise NotFound(f"agent {request.agent!r} is not in room {request.room!r}; "
                           "add it first")
        agent = await self._agent(request.agent)
        turn: dict[str, Any] = await call(agent.invoke.remote(request.room, user.name,
                                                               request.prompt))
        return turn

    # -- accounts -----------------------------------------------------------------------

    async def do_create_token(self, request: p.CreateToken, user: Principal) -> dict[str, Any]:
        if not user.is_admin:
            raise Forbidden("only admins create tokens")
        token = await asyncio.to_thread(self.accounts.issue_token, request.user, request.role)
        return {"user": request.user, "token": token}

    async def do_whoami(self, request: p.Whoami, user: Principal) -> dict[str, Any]:
        return {"user": user.name, "role": user.role}

    # -- parts of v1 that later issues build --------------------------------------------

    async def do_fork(self, request: p.Fork, user: Principal) -> dict[str, Any]:
        _, info = await self._visible_room(request.room, user)
        at = request.at
        if at is None:
            found = await asyncio.to_thread(replays.position_of, self.store, request.room,
                                            str(request.message_id))
            at = found
        name = request.name or f"{request.room[:40]}-fork-{new_id()[:8]}"
        actor = directory.room(name, self.settings)
        position = await call(actor.fork_from.remote(request.room, at, user.name,
                                                     user.is_admin))
        return {"room": name, "at": at, "position": position}

    async def do_replay(self, request: p.Replay, user: Principal) -> dict[str, Any]:
        actor = await self._room(request.room)
        past: dict[str, Any] = await call(actor.state_at.remote(request.at, user.name,
                                                                user.is_admin))
        return past

    async def do_agent_state(self, request: p.AgentState, user: Principal) -> dict[str, Any]:
        await self._agent(request.agent)
        return await asyncio.to_thread(replays.agent_at, self.store, request.agent,
                                       request.version)

    async def do_diff(self, request: p.Diff, user: Principal) -> dict[str, Any]:
        for room in (request.room, request.other):
            await self._visible_room(room, user)
        return await asyncio.to_thread(replays.diff, self.store, request.room, request.other)

    async def do_export(self, request: p.Export, user: Principal) -> dict[str, Any]:
        if request.kind == "room":
            await self._visible_room(request.name, user)
        else:
            owner = (await call((await self._agent(request.name)).info.remote()))["owner_id"]
            if owner != user.name and not user.is_admin:
                raise Forbidden(f"only the owner of agent {request.name!r} or an admin "
                                "may export it")
        data = await asyncio.to_thread(replays.export, self.store, request.kind, request.name)
        return {"kind": request.kind, "name": request.name, "data": data}

    async def do_rerun(self, request: p.Rerun, user: Principal) -> dict[str, Any]:
        if not user.is_admin:
            raise Forbidden("only admins re-run rooms (a re-run posts as the recorded people)")
        await self._visible_room(request.room, user)
        target = request.name or f"{request.room[:40]}-rerun-{new_id()[:8]}"
        if await asyncio.to_thread(self.store.exists, room_id(target)):
            raise Conflict(f"room {target!r} exists already; pick another name")
        result: dict[str, Any] = await call(
            reruns.rerun(self.settings, self.store, request.room, target, user.name))
        return result

    async def do_override(self, request: p.Override, user: Principal) -> dict[str, Any]:
        actor = await self._room(request.room)
        info = await call((await self._agent(request.agent)).info.remote())
        changes = dict(request.changes)
        _definition({**info["definition"], **changes})  # the result must still be valid
        position = await call(actor.override_agent.remote(request.agent, changes, user.name,
                                                          user.is_admin))
        return {"room": request.room, "agent": request.agent, "position": position}

    async def do_import(self, request: p.Import, user: Principal) -> dict[str, Any]:
        if not user.is_admin:
            raise Forbidden("only admins import rooms and agents")
        kind, name, records = exports.read(request.data)
        if kind == "room":
            actor = directory.room(name, self.settings)
            position = await call(actor.import_records.remote(records))
        else:
            actor = directory.agent(name, self.settings)
            position = await call(actor.import_records.remote(records))
        return {"kind": kind, "name": name, "position": position}
