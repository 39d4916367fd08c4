"""AgentActor: the single writer of one agent's stream; takes turns in the rooms it is in."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from actors import directory
from actors.reminders import reminder_book
from actors.turns import TurnRunner
from actors.upkeep import run_pass
from domain.agents import Agent
from domain.definitions import AgentDefinition, build
from domain.errors import Conflict, Invalid, NotFound, SalonError
from domain.exports import streams_of
from domain.ids import agent_id, new_id, user_id
from domain.turns import (
    Manners,
    RoomView,
    Trigger,
    next_due,
    restore_timers,
    timed_triggers,
    timers_of,
    triggers_for,
)
from infra.bus import RoomBus
from infra.llm.registry import check_definition
from infra.memories import MemoryStore, check_access
from infra.recall import AgentMemory, add_memory, delete_memory, forget_user_fact
from infra.settings import Settings
from infra.store import EventStore

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0


def _missing(name: str) -> str:
    return f"agent {name!r} does not exist; `salon agents list` shows the agents"


def manners_of(spec: AgentDefinition) -> Manners:
    """The turn-taking parts of a definition."""
    return Manners(name=spec.name, opening_line=spec.opening_line,
                   interests=tuple(spec.interests + spec.expertise),
                   chattiness=spec.chattiness, cooldown_seconds=spec.cooldown_seconds,
                   idle_after_seconds=spec.idle_after_seconds, every_seconds=spec.every_seconds)


class AgentCore:
    """Queues triggers and runs one turn at a time, recording every step as an event.

    Runs as its own Ray actor (``AgentActor``) or, when many agents must share processes,
    on a shared ``Host`` (see hosts.py); either way it is the only writer of its stream.
    """

    def __init__(self, name: str, settings: Settings, store: EventStore | None = None,
                 bus: RoomBus | None = None) -> None:
        self.name = name
        self.settings = settings
        self.id = agent_id(name)
        assert settings.database_url and settings.redis_url, "actors need resolved server URLs"
        # A host shares one store and one bus among its agents.
        self.store = store or EventStore(settings.database_url, settings.snapshot_interval,
                                         create_tables=False,
                                         master_key=settings.master_key_path())
        self.bus = bus or RoomBus(settings.redis_url)
        self.clock: Callable[[], float] = time.time
        self.agent: Agent | None = self._load()
        self.views: dict[str, RoomView] = {}
        self.queue: list[tuple[str, Trigger]] = []
        self.worker: asyncio.Task[None] | None = None
        self.ticker: asyncio.Task[None] | None = None
        self._memory: AgentMemory | None = None
        self._upkeep_lock: asyncio.Lock | None = None
        # Durable reminders (reminders.py): timer state read back once, rows as last written.
        self._seeded = False
        self._kept: dict[str, tuple[float | None, dict[str, Any]]] = {}
        if self.agent is not None and self.agent.open_turns():
            # A turn cut short by a crash is closed honestly rather than left hanging.
            for turn_id in self.agent.open_turns():
                self.agent.fail_turn(turn_id, "the agent restarted during this turn")
            self.store.save(self.agent.collect_events())

    def memory(self, spec: AgentDefinition) -> AgentMemory:
        """This agent's memory, configured as ``spec`` says (a what-if may differ)."""
        from actors.embedder import RemoteEmbedder

        if self._memory is None:
            assert self.settings.database_url
            self._memory = AgentMemory(self.name, self.store,
                                       memory_store(self.settings.database_url),
                                       RemoteEmbedder(self.settings), spec.memory)
        self._memory.config = spec.memory
        return self._memory

    def _load(self) -> Agent | None:
        try:
            return self.store.get(Agent, self.id, _missing(self.name))
        except NotFound:
            return None

    def _agent(self) -> Agent:
        if self.agent is None:
            raise NotFound(_missing(self.name))
        return self.agent

    async def save(self) -> None:
        """Append the agent's pending events (reloading from the log if that fails)."""
        agent = self._agent()
        events = agent.collect_events()
        try:
            await asyncio.to_thread(self.store.save, events)
        except Exception:
            self.agent = await asyncio.to_thread(self._load)
            raise

    # -- definition ---------------------------------------------------------------------

    async def define(self, definition: dict[str, Any], owner_id: str = "admin",
                     grant: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Record the agent (with the capabilities an admin ``grant``s it); Conflict if taken."""
        if self.agent is not None:
            raise Conflict(f"agent {self.name!r} exists already; pick another name")
        if await asyncio.to_thread(self.store.exists, user_id(self.name)):
            raise Conflict(f"{self.name!r} is a person's name; a name is a person or an agent, "
                           "never both: pick another")
        self.agent = Agent.define(_validated(definition), owner_id)
        if grant:
            self.agent.grant(grant, owner_id)
        try:
            await self.save()
        except Exception:
            self.agent = None
            raise
        return await self.info()

    async def redefine(self, definition: dict[str, Any], by: str, is_admin: bool = False,
                       grant: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Record a new version of the definition (owner or admin; an admin's grants with it)."""
        agent = self._agent()
        agent.check_command(by, is_admin)
        agent.redefine(_validated(definition))
        if grant is not None and is_admin:
            agent.grant(grant, by)
        await self.save()
        return await self.info()

    async def grant(self, capabilities: dict[str, list[str]], by: str) -> dict[str, Any]:
        """Record what this agent holds now (the gateway's policy checked ``by`` is an admin)."""
        agent = self._agent()
        agent.grant(capabilities, by)
        await self.save()
        return await self.info()

    async def import_records(self, records: list[Any]) -> int:
        """Open this agent from an export's records, all or nothing."""
        if self.agent is not None:
            raise Conflict(f"agent {self.name!r} exists already in this installation")
        _, own, more = streams_of("agent", self.name, records)
        await asyncio.to_thread(self.store.insert_records, self.id, own, more)
        self.agent = await asyncio.to_thread(self._load)
        return int(self._agent().version)

    async def info(self) -> dict[str, Any]:
        """The definition, status, owner and compiled system prompt."""
        agent = self._agent()
        return {"name": agent.name, "status": agent.status, "owner_id": agent.owner_id,
                "version": agent.definition_version, "definition": agent.definition,
                "system_prompt": agent.spec.system_prompt(), "turns": agent.turn_count,
                "grants": agent.grants, "guard": agent.guard}

    async def set_guard(self, override: dict[str, Any] | None, by: str,
                        is_admin: bool = False) -> dict[str, Any]:
        """Record the owner's guardrail override (validated by ``domain.guardrails``)."""
        agent = self._agent()
        agent.check_command(by, is_admin)
        agent.set_guard(override, by)
        await self.save()
        return {"agent": self.name, "guard": agent.guard}

    # -- triggers -----------------------------------------------------------------------

    def _view(self, room: str) -> RoomView:
        view = self.views.get(room)
        if view is None:
            handled = self.agent.handled.get(room, 0) if self.agent is not None else 0
            view = self.views[room] = RoomView(handled_up_to=handled)
        return view

    async def on_room_events(self, room: str, frames: list[dict[str, Any]],
                             policy: dict[str, Any] | None = None) -> int:
        """Take in new room events; queue the turns they call for. Returns how many."""
        agent = self._agent()
        await self._seed(agent.spec)
        view = self._view(room)
        if policy is not None:
            view.policy = dict(policy)
        found = triggers_for(manners_of(agent.spec), room, frames, view, self.clock())
        self._ensure_ticker(agent.spec)
        if agent.status != "active":
            return 0
        for trigger in found:
            self._enqueue(new_id(), trigger)
        return len(found)

    async def tick(self, now: float | None = None) -> int:
        """Check the timed triggers (idle room, schedule) at ``now`` (the clock by default)."""
        agent = self._agent()
        await self._seed(agent.spec)
        moment = self.clock() if now is None else now
        if agent.status != "active":
            await self._keep(moment)
            return 0
        manners = manners_of(agent.spec)
        found = [t for room, view in self.views.items()
                 for t in timed_triggers(manners, room, view, moment)]
        for trigger in found:
            self._enqueue(new_id(), trigger)
        self._ensure_ticker(agent.spec)
        await self._keep(moment)
        return len(found)

    def _ensure_ticker(self, spec: AgentDefinition) -> None:
        if _timed(spec) and (self.ticker is None or self.ticker.done()):
            self.ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _seed(self, spec: AgentDefinition) -> None:
        """A timed agent takes back its timer state once, when it becomes active."""
        if self._seeded or not _timed(spec):
            return
        self._seeded = True
        kept = await asyncio.to_thread(reminder_book(self.settings).load, self.name)
        for room, timers in kept.items():
            restore_timers(self._view(room), timers)

    async def _keep(self, now: float) -> None:
        """Write the timer rows that changed (due never while the agent is not active)."""
        agent = self.agent
        if agent is None or not _timed(agent.spec):
            return
        await self._seed(agent.spec)  # rows of rooms this core has not heard from yet
        manners = manners_of(agent.spec)
        rows = {room: (next_due(manners, view, now) if agent.status == "active" else None,
                       timers_of(view)) for room, view in self.views.items()}
        changed = {room: row for room, row in rows.items() if self._kept.get(room) != row}
        if not changed:
            return
        await asyncio.to_thread(reminder_book(self.settings).write, self.name, changed)
        self._kept.update(changed)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the timer must survive a bad tick
                log.exception("tick of agent %s failed", self.name)

    async def invoke(self, room: str, by: str, prompt: str | None = None) -> dict[str, Any]:
        """Take a turn in ``room`` now, asked by ``by``; returns the turn id."""
        agent = self._agent()
        if agent.status != "active":
            raise Conflict(f"agent {self.name!r} is {agent.status}; resume it first")
        turn_id = new_id()
        self._view(room)
        self._enqueue(turn_id, Trigger("invoke", room, None, by, prompt))
        return {"agent": self.name, "turn_id": turn_id}

    def _enqueue(self, turn_id: str, trigger: Trigger) -> None:
        self.queue.append((turn_id, trigger))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _rules(self, room: str) -> None:
        """A view that no delivery filled yet (the agent was activated by a call or a timer)
        asks its room for the rules, so overrides and re-runs hold for this turn too."""
        view = self._view(room)
        if view.policy:
            return
        try:
            view.policy = dict(await directory.room(room, self.settings).rules.remote())
        except Exception as error:  # noqa: BLE001 - the turn goes on and records what fails
            log.warning("agent %s could not read the rules of room %s: %s", self.name, room,
                        error)

    async def _work(self) -> None:
        while self.queue:
            turn_id, trigger = self.queue.pop(0)
            try:
                await self._rules(trigger.room)
                await TurnRunner(self, turn_id, trigger).run()
            except asyncio.CancelledError:
                return
            except Exception:  # noqa: BLE001 - a bad turn never takes the actor down
                log.exception("turn %s of %s failed outside its own handling", turn_id, self.name)

    # -- control ------------------------------------------------------------------------

    async def pause(self, by: str, is_admin: bool = False) -> dict[str, Any]:
        """Stop taking turns until resumed; the turn in flight is cancelled."""
        agent = self._agent()
        agent.check_command(by, is_admin)
        if agent.status == "stopped":
            raise Conflict(f"agent {self.name!r} is stopped; resume it first")
        await self._halt("paused")
        agent.pause(by)
        await self.save()
        await self._keep(self.clock())
        return await self.info()

    async def stop(self, by: str, is_admin: bool = False, reason: str = "") -> dict[str, Any]:
        """Stop at once: the turn in flight is cancelled and nothing more is posted."""
        agent = self._agent()
        agent.check_command(by, is_admin)
        await self._halt("stopped")
        agent.stop(by, reason)
        await self.save()
        await self._keep(self.clock())
        return await self.info()

    async def resume(self, by: str, is_admin: bool = False) -> dict[str, Any]:
        """Take turns again."""
        agent = self._agent()
        agent.check_command(by, is_admin)
        agent.resume(by)
        await self.save()
        await self._mute_rooms(False)
        await self._seed(agent.spec)
        self._ensure_ticker(agent.spec)
        await self._keep(self.clock())
        return await self.info()

    async def _halt(self, why: str) -> None:
        # Rooms refuse this agent's posts first, so nothing lands after the recorded pause/stop;
        # then the turn in flight is cancelled and queued triggers are dropped.
        await self._mute_rooms(True)
        self.queue.clear()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
            try:
                await self.worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it is being stopped
                pass
        agent = self._agent()
        for turn_id in agent.open_turns():
            agent.fail_turn(turn_id, f"cancelled: the agent was {why}")

    async def _mute_rooms(self, muted: bool) -> None:
        # Only rooms whose actor runs: a room activated later reads this agent's status from
        # the log (saved before its next turn could start), so waking dormant rooms is waste.
        rooms = set(self.views) | set(self._agent().handled)
        live = [handle for handle in (directory.running("room", room, self.settings)
                                      for room in sorted(rooms)) if handle is not None]
        calls = [handle.set_muted.remote(self.name, muted) for handle in live]
        for call in calls:
            try:
                await call
            except Exception as error:  # noqa: BLE001 - a vanished room cannot hear us anyway
                log.warning("could not %s %s in a room: %s", "mute" if muted else "unmute",
                            self.name, error)

    # -- memory, for people (owner or admin; this actor is the memory stream's writer) -----

    async def add_memory(self, by: str, is_admin: bool, content: str, kind: str = "semantic",
                         importance: int | None = None) -> dict[str, Any]:
        memory_id = await asyncio.to_thread(add_memory, self.store, self.name, by, content,
                                            kind, importance, is_admin)
        return {"agent": self.name, "memory_id": memory_id}

    async def delete_memory(self, by: str, is_admin: bool, memory_id: str) -> dict[str, Any]:
        spec = self._agent().spec
        await asyncio.to_thread(delete_memory, self.store, self.memory(spec).memories,
                                self.name, by, memory_id, is_admin)
        return {"agent": self.name, "deleted": memory_id}

    async def memory_upkeep(self, by: str | None, is_admin: bool, trigger: str = "manual",
                            details: bool = False) -> dict[str, Any]:
        """One upkeep pass (merge, forget, retention): for a person (``by``: owner or admin)
        or for an upkeep job (``by`` None); with ``details``, the memories' texts too."""
        spec = self._agent().spec
        memory = self.memory(spec)
        if by is not None:
            await asyncio.to_thread(check_access, self.store, self.name, by, is_admin)
        if self._upkeep_lock is None:
            self._upkeep_lock = asyncio.Lock()
        async with self._upkeep_lock:  # one pass at a time: each sees what the last decided
            done = await asyncio.to_thread(run_pass, memory, self.settings, trigger)
        result: dict[str, Any] = {"agent": self.name, "trigger": trigger, **done.as_dict()}
        if details:
            ids = [*(i for m in done.merges for i in (m.kept_id, *m.merged_ids)),
                   *done.forgotten_ids, *done.retired_ids]
            result["contents"] = await asyncio.to_thread(memory.memories.contents, self.name,
                                                         ids)
        return result

    async def forget_fact(self, by: str, is_admin: bool, fact_id: str,
                          about: str | None = None) -> dict[str, Any]:
        await asyncio.to_thread(forget_user_fact, self.store, self.name, by, fact_id, about,
                                is_admin)
        return {"agent": self.name, "forgotten": fact_id}

    async def forget_memory_about(self, by: str, memory_id: str) -> dict[str, Any]:
        """Forget one memory whose source is ``by``'s, at their asking (consent)."""
        from infra.consent import check_about
        from infra.recall import record_decision

        memories = self.memory(self._agent().spec).memories
        await asyncio.to_thread(check_about, memories, self.name, by, memory_id)
        await asyncio.to_thread(record_decision, self.store, self.name, lambda stream:
                                stream.forget([memory_id], f"deleted by {by}, its source"))
        return {"agent": self.name, "forgotten": memory_id}

    async def seen(self, room: str) -> dict[str, Any]:
        """How far this agent has taken in ``room`` and whether it has work in hand."""
        view = self.views.get(room)
        busy = bool(self.queue) or (self.worker is not None and not self.worker.done())
        return {"position": view.handled_up_to if view else 0, "busy": busy}

    async def ping(self) -> str:
        return "pong"

    # -- virtual actor ------------------------------------------------------------------

    def quiet(self) -> bool:
        """Whether no turn is queued, running or open, so the host may passivate this agent."""
        working = bool(self.queue) or (self.worker is not None and not self.worker.done())
        return not working and not (self.agent is not None and self.agent.open_turns())

    async def passivate(self) -> None:
        """Keep the timers as durable reminders, end the ticker, snapshot the stream."""
        if self.ticker is not None:
            self.ticker.cancel()
        await self._keep(self.clock())
        if self.agent is not None:
            await asyncio.to_thread(self.store.snapshot, self.id, self.agent.version)


_memory_stores: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


def memory_store(database_url: str) -> MemoryStore:
    """This process's reader of the memory tables (shared by the agents of a host)."""
    with _memory_lock:
        if database_url not in _memory_stores:
            _memory_stores[database_url] = MemoryStore(database_url)
        return _memory_stores[database_url]


def _timed(spec: AgentDefinition) -> bool:
    return spec.idle_after_seconds is not None or spec.every_seconds is not None


def _validated(definition: dict[str, Any]) -> AgentDefinition:
    try:
        spec = build(definition)
        check_definition(spec)
        return spec
    except SalonError:
        raise
    except ValueError as error:
        raise Invalid(f"agent definition: {error}") from None


AgentActor = ray.remote(AgentCore)
