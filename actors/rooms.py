"""RoomCore: the single writer of one room's stream, and its delivery to agents and gateways.

It runs as a Ray actor of its own (``RoomActor``) or, with ``SALON_ROOM_HOSTS``, on a shared
host process that activates and passivates it (hosts.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors import directory
from actors.commits import GroupCommitter
from actors.fanout import AgentFanout
from domain import personal, policy
from domain.agents import Agent
from domain.errors import Conflict, Forbidden, Invalid, NotFound, SalonError
from domain.ids import agent_id, room_id
from domain.policy import RESERVED_ROOM_PREFIXES, Principal
from domain.quotas import Limits, Usage, check_thread
from domain.rooms import Room, direct_room_name
from domain.threads import thread_id
from domain.wire import event_frame
from infra.bus import RoomBus
from infra.settings import Settings
from infra.store import EventStore

RERUN_TURN_SECONDS = 30.0
log = logging.getLogger(__name__)


def _missing(name: str) -> str:
    return f"room {name!r} does not exist; `salon rooms list` shows the rooms you can join"


class RoomCore:
    """Loads its room from the log, applies one command at a time, group-commits, fans out."""

    def __init__(self, name: str, settings: Settings, store: EventStore | None = None,
                 bus: RoomBus | None = None) -> None:
        self.name = name
        self.settings = settings
        self.id = room_id(name)
        assert settings.database_url and settings.redis_url, "actors need resolved server URLs"
        # A host shares one store and one bus among its rooms.
        self.store = store or EventStore(settings.database_url, settings.snapshot_interval,
                                         create_tables=False, master_key=settings.master_key_path())
        self.bus = bus or RoomBus(settings.redis_url)
        self.room: Room | None = self._load()
        # Events up to here are not handed to agents (a fork's or an import's copied prefix).
        self.agents_from = 0
        # In a re-run, agents' messages are let through in the order they had in the recording.
        self.rerun_order: list[str] | None = None
        self.rerun_next = 0
        self.rerun_turn = asyncio.Condition()
        self.committer = GroupCommitter(self._save, self._deliver, self._reload)
        self.fanout = AgentFanout(name, lambda member: directory.agent(member, settings))
        # Agents whose posts are refused: paused or stopped (rebuilt from their streams).
        self.muted: set[str] = self._muted_agents()

    def _muted_agents(self) -> set[str]:
        muted = set()
        for member in self.room.agents() if self.room is not None else []:
            try:
                agent = self.store.get(Agent, agent_id(member), member)
            except NotFound:
                continue
            if agent.status != "active":
                muted.add(member)
        return muted

    def _load(self) -> Room | None:
        try:
            room = self.store.get(Room, self.id, _missing(self.name))
        except NotFound:
            return None
        if "message_bytes" not in vars(room):
            # Snapshotted before rooms counted their bytes: count them once, from the log.
            room.message_bytes = sum(len(e.text.encode()) for e in self.store.events(self.id)
                                     if isinstance(e, Room.MessagePosted))
        return room

    async def _save(self, events: list[Any]) -> None:
        await asyncio.to_thread(self.store.save, events)

    async def _reload(self) -> None:
        self.room = await asyncio.to_thread(self._load)

    async def _deliver(self, events: list[Any]) -> None:
        frames = [event_frame(self.name, e) for e in events]
        # Agents first: their calls go out at once, beside the Valkey round trip for clients.
        handed = [f for f in frames if f["position"] > self.agents_from]
        if self.room is not None and handed:
            policy = self.room.rules()
            for member in self.room.agents():
                self.fanout.send(member, handed, policy)
        await self.bus.publish_events(self.name, frames)

    def _room(self) -> Room:
        if self.room is None:
            raise NotFound(_missing(self.name))
        return self.room

    async def _commit(self) -> int:
        room = self._room()
        await self.committer.commit(room.collect_events())
        return room.position

    async def create(self, owner_id: str, topic: str = "", visibility: str = "public") -> int:
        """Open the room; Conflict if it exists already."""
        if self.room is not None:
            raise Conflict(f"room {self.name!r} exists already; pick another name")
        self.room = Room.create(self.name, owner_id, topic=topic, visibility=visibility)
        try:
            return await self._commit()
        except Exception:
            self.room = None
            raise

    async def fork_from(self, parent: str, at: int, owner_id: str,
                        is_admin: bool = False, keep_redacted: bool = False) -> int:
        """Open this room as a fork of ``parent`` at position ``at``."""
        if self.room is not None:
            raise Conflict(f"room {self.name!r} exists already; pick another name for the fork")
        events = await asyncio.to_thread(self.store.events, room_id(parent), 0, at)
        if not events:
            raise NotFound(_missing(parent))
        if len(events) < at:
            raise Invalid(f"room {parent!r} has only {len(events)} events; cannot fork at {at}")
        head: Room | None = None
        for e in events:
            head = e.mutate(head)
        assert head is not None
        # Who may read the parent now decides (a member who joined later reads its past too).
        current = await asyncio.to_thread(self.store.get, Room, room_id(parent), _missing(parent))
        if not current.may_see(owner_id, is_admin):
            raise Forbidden(f"room {parent!r} is private; ask its owner to add you")
        self.room = Room.fork(self.name, events, owner_id)
        if keep_redacted:
            self.room.keep_redacted(owner_id)
        self.agents_from = at
        try:
            return await self._commit()
        except Exception:
            self.room = None
            raise

    async def _await_rerun_turn(self, source: str, author: str) -> None:
        # Agents act concurrently; a recording fixes one order. Wait (bounded) for ours.
        if self.rerun_order is None:
            events = await asyncio.to_thread(self.store.events, room_id(source))
            self.rerun_order = [e.author_id for e in events if isinstance(e, Room.MessagePosted)
                                and getattr(e, "author_kind", "") == "agent"]
        order = self.rerun_order
        async with self.rerun_turn:
            try:
                await asyncio.wait_for(self.rerun_turn.wait_for(
                    lambda: self.rerun_next >= len(order) or order[self.rerun_next] == author),
                    timeout=RERUN_TURN_SECONDS)
            except TimeoutError:
                log.warning("re-run of %s: %s posted out of the recorded order", source, author)
            if self.rerun_next < len(order) and order[self.rerun_next] == author:
                self.rerun_next += 1
            self.rerun_turn.notify_all()

    async def start_rerun(self, source: str) -> int:
        """Mark this (freshly forked) room as a deterministic re-run of ``source``."""
        self._room().start_rerun(source)
        return await self._commit()

    async def override_agent(self, agent: str, changes: dict[str, Any], by: str,
                             is_admin: bool = False) -> int:
        """Run ``agent`` with changed definition fields in this room only.

        The gateway's policy has checked that ``by`` owns the agent (or is an admin); the room
        checks what is its own to know: ``by`` is one of its members.
        """
        room = self._room()
        policy.require_room_member(Principal.acting(by, is_admin), room.facts(),
                                   "change its agents")
        room.override_agent(agent, changes)
        return await self._commit()

    async def replay_join(self, member_id: str, kind: str, role: str) -> int:
        """Re-run step: a member joins as they did in the recording."""
        room = self._room()
        room.join(member_id, kind, role)
        return await self._commit()

    async def import_records(self, records: list[Any]) -> int:
        """Open this room from an export's records, all or nothing."""
        if self.room is not None:
            raise Conflict(f"room {self.name!r} exists already in this installation")
        await asyncio.to_thread(self.store.insert_records, self.id, records)
        self.room = await asyncio.to_thread(self._load)
        room = self._room()
        self.agents_from = room.position
        return room.position

    async def state_at(self, position: int, member_id: str, is_admin: bool = False,
                       ) -> dict[str, Any]:
        """The room as it stood at ``position``: its state and transcript."""
        room = self._room()
        if not room.may_see(member_id, is_admin):
            raise Forbidden(f"room {self.name!r} is private; ask its owner to add you")
        if not 1 <= position <= room.position:
            raise Invalid(f"position {position} is outside room {self.name!r} "
                          f"(1..{room.position})")
        events = await asyncio.to_thread(self.store.events, self.id, 0, position)
        # The repository starts from the newest snapshot at or before the position.
        past = await asyncio.to_thread(
            self.store.get_at, Room, self.id, position, _missing(self.name))
        transcript = [{"position": int(e.originator_version), "author_id": e.author_id,
                       "text": e.text, "at": e.timestamp.isoformat(),
                       **{k: True for k in ("redacted", "erased") if getattr(e, k, False)}}
                      for e in events if isinstance(e, Room.MessagePosted)]
        return {"state": past.describe(), "transcript": transcript}

    async def info(self) -> dict[str, Any]:
        """Name, topic, visibility, owner, members and head position."""
        room = self._room()
        return {"name": room.name, "topic": room.topic, "visibility": room.visibility,
                "owner_id": room.owner_id, "members": dict(room.members),
                "position": room.position, "archived": room.archived,
                "direct": room.name.startswith(RESERVED_ROOM_PREFIXES)}

    async def rules(self) -> dict[str, Any]:
        """What agents need to know of this room to act (as each delivery carries it)."""
        return self._room().rules()

    async def head(self) -> int:
        """The position of the newest committed event."""
        return self._room().position

    async def enter(self, member_id: str, is_admin: bool = False) -> int:
        """A person opens the room: checks they may see it, records them as a member once."""
        room = self._room()
        if not room.may_see(member_id, is_admin):
            raise Forbidden(f"room {self.name!r} is private; ask its owner to add you")
        if room.join(member_id, "human"):
            return await self._commit()
        return room.position

    async def add_member(self, member_id: str) -> int:
        """Record a person as a member (the gateway's policy checked who asked)."""
        room = self._room()
        if room.join(member_id, "human"):
            return await self._commit()
        return room.position

    async def add_agent(self, agent_name: str, by: str, is_admin: bool = False) -> int:
        """Bring an agent into the room (members and admins may)."""
        room = self._room()
        policy.require_room_member(Principal.acting(by, is_admin), room.facts(),
                                   "add agents to it")
        exists = await asyncio.to_thread(self.store.exists, agent_id(agent_name))
        if not exists:
            raise NotFound(f"agent {agent_name!r} does not exist; `salon agents list` shows them")
        if room.join(agent_name, "agent"):
            return await self._commit()
        return room.position

    async def post(self, author_id: str, text: str, reply_to: str | None = None,
                   client_msg_id: str | None = None, request_id: str | None = None,
                   is_admin: bool = False) -> dict[str, Any]:
        """Post a message; a repeated ``client_msg_id``/``request_id`` answers the first post."""
        room = self._room()
        if author_id in self.muted:
            raise Conflict(f"agent {author_id!r} is paused or stopped; its message was not posted")
        if room.rerun_of is not None and room.members.get(author_id, {}).get("kind") == "agent":
            await self._await_rerun_turn(room.rerun_of, author_id)
        room.check_post(text, reply_to)
        if author_id not in room.members and room.may_see(author_id, is_admin):
            room.join(author_id, "human")
        message_id, position = room.post(author_id, text, reply_to=reply_to,
                                         client_msg_id=client_msg_id, request_id=request_id)
        await self.committer.commit(room.collect_events())
        return {"message_id": message_id, "position": position}

    async def post_many(self, posts: list[dict[str, Any]], limits: Limits | None = None,
                        ) -> list[dict[str, Any] | SalonError]:
        """People's posts relayed by one gateway, in their order, saved in one commit.

        Each item holds ``post``'s arguments. Each is answered alone: a refused post's place
        in the list holds its error and the others go on. ``limits`` are the room's size limits
        (the gateway's quotas), checked against this room as it stands in memory. A failed
        save fails the whole call (nothing of it was saved).
        """
        room = self._room()
        answers: list[dict[str, Any] | SalonError] = []
        for item in posts:
            try:
                answers.append(self._post_person(room, limits, **item))
            except SalonError as error:
                answers.append(error)
        await self.committer.commit(room.collect_events())
        return answers

    def _post_person(self, room: Room, limits: Limits | None, author_id: str, text: str,
                     reply_to: str | None = None, client_msg_id: str | None = None,
                     request_id: str | None = None, is_admin: bool = False) -> dict[str, Any]:
        earlier = room.earlier(author_id, client_msg_id, request_id)
        if earlier is not None:
            return {"message_id": earlier[0], "position": earlier[1]}
        room.check_post(text, reply_to)
        if limits is not None:
            check_thread(limits, self.name, Usage(len(room.message_ids), room.message_bytes),
                         text)
        if author_id not in room.members and room.may_see(author_id, is_admin):
            room.join(author_id, "human")
        message_id, position = room.post(author_id, text, reply_to=reply_to,
                                         client_msg_id=client_msg_id, request_id=request_id)
        return {"message_id": message_id, "position": position}

    async def open_direct(self, sender: str, sender_kind: str, recipient: str,
                          recipient_kind: str) -> int:
        """Open (once) this private room of two members for direct messages."""
        if self.name != direct_room_name((sender_kind, sender), (recipient_kind, recipient)):
            raise Forbidden(f"room {self.name!r} is not the direct room of {sender} and "
                            f"{recipient}")
        if self.room is None:
            self.room = Room.create(self.name, sender, topic=f"direct: {sender} and {recipient}",
                                    visibility="private", owner_kind=sender_kind)
        room = self.room
        if sender not in room.members:
            raise Forbidden(f"{sender} is not part of direct room {self.name!r}")
        room.join(recipient, recipient_kind)
        return await self._commit()

    async def set_muted(self, agent: str, muted: bool) -> int:
        """Refuse (or accept again) an agent's posts; returns once earlier posts are saved."""
        if muted:
            self.muted.add(agent)
        else:
            self.muted.discard(agent)
        await self.committer.settle()
        return self._room().position

    async def set_policy(self, mode: str, max_agent_streak: int = 3, selector: str | None = None,
                         by: str = "", is_admin: bool = False) -> int:
        """Choose how agents take turns (the owner or an admin)."""
        room = self._room()
        policy.require_room_owner(Principal.acting(by, is_admin), room.facts(), "set its policy")
        room.set_policy(mode, max_agent_streak, selector)
        return await self._commit()

    async def set_guard(self, guard_policy: dict[str, Any], by: str = "",
                        is_admin: bool = False) -> int:
        """Record the room's guardrail policy (the owner or an admin)."""
        room = self._room()
        policy.require_room_owner(Principal.acting(by, is_admin), room.facts(),
                                  "set its guardrail policy")
        room.set_guard(guard_policy, by)
        return await self._commit()

    async def feedback(self, member_id: str, message_id: str, rating: int,
                       comment: str | None = None) -> int:
        """Record a member's rating of a message."""
        self._room().give_feedback(message_id, member_id, rating, comment)
        return await self._commit()

    async def redact(self, message_id: str, by: str, reason: str | None = None,
                     is_admin: bool = False) -> dict[str, Any]:
        """Take back a message (its author, the room's owner or an admin), here and in the
        forks that copied it, unless a fork's owner chose to keep its copies.

        The thread's data key is destroyed too: titles and summaries made before may quote
        the message, so they become unreadable and the threads view makes them again.
        """
        room = self._room()
        position = room.message_ids.get(message_id)
        if position is None:
            raise NotFound(f"message {message_id!r} is not in room {self.name!r}")
        found = await asyncio.to_thread(self.store.events, self.id, position - 1, position)
        author = str(getattr(found[0], "author_id", "")) if found else ""
        policy.require_may_redact(Principal.acting(by, is_admin), room.facts(), author)
        room.redact(message_id, by, reason)
        head = await self._commit()
        forks = await self._redact_forks(message_id, position, by)
        await asyncio.to_thread(self.store.forget, [personal.stream(thread_id(self.name))],
                                False)
        return {"room": self.name, "message_id": message_id, "position": head,
                "message_position": position, "forks": forks}

    async def redact_copy(self, message_id: str, by: str) -> list[str]:
        """A parent redacted a message this fork copied: redact the copy, unless the fork's
        owner keeps copies. Returns the rooms whose copy was redacted (this and its forks)."""
        room = self._room()
        position = room.message_ids.get(message_id)
        forked = room.forked_from or {}
        if position is None or message_id in room.redactions or forked.get("keep_redacted") \
                or position > int(forked.get("at", 0)):
            return []
        room.redact(message_id, by, "redacted in the room this one was forked from")
        await self._commit()
        forks = await self._redact_forks(message_id, position, by)
        await asyncio.to_thread(self.store.forget, [personal.stream(thread_id(self.name))],
                                False)
        return [self.name, *forks]

    async def _redact_forks(self, message_id: str, position: int, by: str) -> list[str]:
        children = await asyncio.to_thread(forks_of, self.store, self.name)
        done: list[str] = []
        for child, at in children:
            if at >= position:
                done.extend(await directory.room(child, self.settings).redact_copy.remote(
                    message_id, by))
        return done

    async def keep_redacted(self, by: str, is_admin: bool = False) -> int:
        """This fork's owner keeps its copies of messages the parent redacts from now on."""
        room = self._room()
        policy.require_room_owner(Principal.acting(by, is_admin), room.facts(),
                                  "keep its copies of redacted messages")
        room.keep_redacted(by)
        return await self._commit()

    async def ping(self) -> str:
        return "pong"

    # -- virtual actor ------------------------------------------------------------------

    def quiet(self) -> bool:
        """Whether nothing is in flight, so the host may passivate this room. A re-run keeps
        its recorded order in memory, so a re-run room stays active."""
        return self.committer.idle() and self.fanout.idle() and \
            (self.room is None or self.room.rerun_of is None)

    async def passivate(self) -> None:
        """Snapshot the room, so activating it again reads no more than the snapshot."""
        if self.room is not None:
            await asyncio.to_thread(self.store.snapshot, self.id, self.room.version)


def forks_of(store: EventStore, parent: str) -> list[tuple[str, int]]:
    """(name, fork position) of every room forked from ``parent``."""
    return [(str(state["name"]), int(state["at_position"]))
            for _, _, state in store.states_of(Room.RoomForked)
            if state.get("parent_room_id") == parent]


@ray.remote
class RoomActor(RoomCore):
    """One room in a process of its own."""
