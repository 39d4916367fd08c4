"""One room of a run, driven step by step in virtual time through the live room and agent actors.

A step happens at one virtual moment: a scripted person posts, an agent's timer is ticked,
or (``turn_seconds``) the runner gives an agent the floor. Then the driver waits until the
room has *settled* — every agent of the room has taken in the room's newest event and has no
turn queued or running — and reads the new events. Whatever the step set off (answers to a
mention, the room's round-robin or selector turn, chains of agents up to
``max_agent_streak``) happens inside the step, by the same code as in live chat.

Steps are ordered by virtual time; at the same moment people come first (in scenario order),
then timers (in joining order), then the floor. That order, the seed's choices and the
scripted provider make a run reproducible — provided a message never sets off two agents at
once, since their replies would then race; the run's metrics find such messages in the
agents' recordings and report them as a warning.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import ray

from actors import directory
from domain.errors import Unavailable
from domain.ids import room_id
from domain.wire import event_body
from infra.settings import Settings
from infra.store import EventStore
from simulations.clock import Timer, VirtualClock
from simulations.measures import Lexicon
from simulations.memories import MemoryTables
from simulations.naming import Naming
from simulations.scenarios import Plan

# The member who opens the rooms of a simulation and gives agents the floor.
OWNER = "simulator"
# What an agent given the floor is told (the model sees it; the room does not).
FLOOR_PROMPT = "(The floor is yours: continue the conversation.)"
ACTIVATION_ATTEMPTS = 4
ACTIVATION_PAUSE = 0.2
POLL_FIRST = 0.005
POLL_MAX = 0.1


@dataclass
class RunContext:
    """What every room of one run shares."""

    run: str
    settings: Settings
    store: EventStore
    plan: Plan
    seed: int
    names: Naming
    lexicon: Lexicon
    reads: asyncio.Semaphore
    on_turns: Callable[[int], None] = lambda count: None
    memory: MemoryTables | None = None
    warnings: list[str] = field(default_factory=list)

    def warn(self, warning: str) -> None:
        """Note a warning for the run's manifest and report (once)."""
        if warning not in self.warnings:
            self.warnings.append(warning)

    def rng(self, *purpose: object) -> random.Random:
        """A random stream of its own for one purpose, fixed by the seed (str seeds are stable)."""
        return random.Random(":".join(str(p) for p in (self.seed, *purpose)))

    async def read(self, stream: UUID, after: int = 0) -> list[Any]:
        """Events of a stream after a version (a few reads at a time: the pool is small)."""
        async with self.reads:
            return await asyncio.to_thread(self.store.events, stream, after)


@dataclass(order=True)
class Scheduled:
    """A scripted message due at a virtual moment."""

    at: float
    order: int
    index: int
    human: str = field(compare=False)
    text: str = field(compare=False)


async def activated(handle_of: Callable[[], Any], attempts: int = ACTIVATION_ATTEMPTS) -> Any:
    """A room or agent handle whose actor has started, trying again if its start failed.

    Many actors starting at once each open an event store, and PostgreSQL may refuse one of
    their concurrent ``CREATE ... IF NOT EXISTS`` ("tuple concurrently updated"); the actor
    then dies in its constructor, its name is freed, and a second start succeeds.
    """
    for attempt in range(1, attempts + 1):
        handle = handle_of()
        try:
            await handle.ping.remote()
            return handle
        except Exception as error:  # noqa: BLE001 - only start failures are retried
            transient = isinstance(error, ray.exceptions.ActorDiedError) or \
                "concurrently updated" in str(error)
            if not transient or attempt == attempts:
                raise
            await asyncio.sleep(ACTIVATION_PAUSE * attempt)
    raise AssertionError("unreachable")


class RoomDriver:
    """Sets one room up, then runs it step by step until a stop condition holds."""

    def __init__(self, context: RunContext, name: str) -> None:
        self.context = context
        self.name = name
        plan = context.plan
        self.spec = plan.rooms[name]
        self.stop = plan.stop_for(name)
        self.real = context.names.room(name)
        self.clock = VirtualClock()
        self.room: Any = None
        order = list(self.spec.agents)
        if self.spec.order == "seeded":
            context.rng("order", name).shuffle(order)
        self.agents = order
        self.handles: dict[str, Any] = {}
        self.humans = plan.members(name)
        self.joined: list[str] = []
        self.queue = sorted(self._schedule())
        self.timers = {a: Timer(a, plan.agents[a].definition.idle_after_seconds,
                                plan.agents[a].definition.every_seconds)
                       for a in order if plan.agents[a].timed}
        self.position = 0
        self.last_event_at = 0.0
        self.last_author: str | None = None
        self.last_agent: str | None = None
        self.last_grant_at = -math.inf
        self.grants = 0
        self.steps = 0
        self.agent_messages = 0
        self.transcript: list[dict[str, Any]] = []
        self.stamps: dict[int, str] = {}
        self.scores: list[tuple[str, float]] = []
        self.outcome: str | None = None
        self.detail = ""
        self.wall: dict[str, float] = {}
        # Wait for the memory projection before each step where agents recall or reflect.
        self.remembering = context.memory is not None and any(
            plan.agents[a].definition.memory.recall > 0 or
            plan.agents[a].definition.memory.reflection for a in order)

    # -- plan ------------------------------------------------------------------------------

    def _schedule(self) -> list[Scheduled]:
        plan, names = self.context.plan, self.context.names
        found = []
        for order, (human, spec) in enumerate(plan.humans.items()):
            for index, message in enumerate(spec.messages):
                if plan.room_of(message, human) != self.name:
                    continue
                rng = self.context.rng("human", human, index)
                text = message.text if message.text is not None else \
                    rng.choice(message.choices or [""])
                at = message.at
                if message.jitter:
                    at = max(0.0, at + rng.uniform(-message.jitter, message.jitter))
                found.append(Scheduled(round(at, 3), order, index, human, names.rewrite(text)))
        return found

    # -- setup -----------------------------------------------------------------------------

    async def setup(self) -> None:
        """Open the room, seat the people, bring the agents in one by one, set the policy."""
        started = time.monotonic()
        names, settings = self.context.names, self.context.settings
        self.room = await activated(lambda: directory.room(self.real, settings))
        self.handles = {a: directory.agent(names.agent(a), settings) for a in self.agents}
        topic = f"[simulation {self.context.run}] {self.spec.topic}".strip()[:500]
        await self.room.create.remote(OWNER, topic, self.spec.visibility)
        for human in self.humans:
            await self.room.enter.remote(human, True)
        for agent in self.agents:
            await self.room.add_agent.remote(names.agent(agent), OWNER, True)
            self.joined.append(agent)
            spec = self.context.plan.agents[agent].definition
            if spec.opening_line or spec.every_seconds is not None:
                # Its opening line is posted before the next agent comes in.
                await self.settle([agent])
            if spec.every_seconds is not None:
                await self._baseline(agent)
        policy = self.spec.policy
        if policy.mode != "free" or policy.max_agent_streak != 3:
            selector = names.agent(policy.selector) if policy.selector else None
            await self.room.set_policy.remote(policy.mode, policy.max_agent_streak, selector,
                                              OWNER, True)
        await self.settle([])
        await self.observe()
        self.wall["setup"] = time.monotonic() - started

    async def _baseline(self, agent: str) -> None:
        # The first tick sets the agent's schedule baseline, as its own first tick would. It
        # comes right after the agent joined: its wall-clock timer waits a second first.
        await self.observe()
        timer = self.timers[agent]
        fired = await self.handles[agent].tick.remote(self.clock.agent_time())
        timer.ticked(self.clock.now, self.position, self.last_author)
        if fired and timer.idle_after is None:
            self.context.warnings.append(
                f"room {self.name!r}: agent {agent!r}'s wall-clock timer ticked before the "
                "run's first tick, so its schedule started early; this run may not repeat")
        if fired:
            await self.settle([agent])

    # -- the run ---------------------------------------------------------------------------

    async def play(self) -> None:
        """Step until a stop condition holds or nothing is left to happen."""
        started = time.monotonic()
        max_steps = self.context.plan.run.max_steps
        while self.outcome is None:
            action = self._next()
            if action is None:
                self._finish("exhausted", "nothing more was scheduled")
                break
            at, kind, who = action
            if self.stop.max_seconds is not None and at > self.stop.max_seconds:
                self.clock.advance(self.stop.max_seconds)
                self._finish("time", f"{self.stop.max_seconds:g} virtual seconds")
                break
            if self.steps >= max_steps:
                self._finish("steps", f"the safety limit of {max_steps} steps (run.max_steps)")
                break
            self.clock.advance(at)
            await self._remembered()
            await self._perform(kind, who)
            self.steps += 1
        self.wall["play"] = time.monotonic() - started

    async def _remembered(self) -> None:
        """Wait until the memory projection took in the log, so recall and reflection in this
        step see every memory of what came before it, however fast the run goes."""
        if not self.remembering or self.context.memory is None:
            return
        if not await self.context.memory.caught_up(self.context.plan.run.settle_seconds):
            self.remembering = False
            self.context.warn("the memory projection stopped advancing for "
                              f"{self.context.plan.run.settle_seconds:g} s; the rest of the "
                              "run went on without waiting for it, so what agents recalled "
                              "may differ between runs")

    def _next(self) -> tuple[float, str, str] | None:
        now = self.clock.now
        found: list[tuple[float, int, str, str]] = []
        if self.queue:
            found.append((max(self.queue[0].at, now), 0, "human", ""))
        for rank, agent in enumerate(self.agents):
            timer = self.timers.get(agent)
            due = timer.due(self.last_event_at, self.position, self.last_author) \
                if timer else None
            if due is not None:
                found.append((max(round(due, 3), now), 1 + rank, "tick", agent))
        if self.spec.turn_seconds > 0:
            due = max(self.last_event_at, self.last_grant_at) + self.spec.turn_seconds
            found.append((max(round(due, 3), now), 1 + len(self.agents), "grant", ""))
        if not found:
            return None
        at, _, kind, who = min(found)
        return at, kind, who

    async def _perform(self, kind: str, who: str) -> None:
        acting: list[str] = []
        if kind == "human":
            message = self.queue.pop(0)
            await self.room.post.remote(message.human, message.text,
                                        client_msg_id=f"{message.human}-{message.index}",
                                        is_admin=True)
            acting = self._first_to_check()
        elif kind == "tick":
            timer = self.timers[who]
            fired = await self.handles[who].tick.remote(self.clock.agent_time())
            timer.ticked(self.clock.now, self.position, self.last_author)
            acting = [who] if fired else []
        else:
            speaker = self._speaker()
            self.last_grant_at = self.clock.now
            self.grants += 1
            await self.handles[speaker].invoke.remote(self.real, OWNER, FLOOR_PROMPT)
            acting = [speaker]
        await self.settle(acting)
        await self.observe()

    def _first_to_check(self) -> list[str]:
        # After a person speaks, the agents most likely to answer are checked first.
        policy = self.spec.policy
        if policy.mode == "selector" and policy.selector:
            return [policy.selector]
        return []

    def _speaker(self) -> str:
        """Who gets the floor: next in turn, the selector, or (free) a seeded pick."""
        mode = self.spec.policy.mode
        if mode == "selector" and self.spec.policy.selector:
            return self.spec.policy.selector
        if mode == "round_robin":
            after = self.agents.index(self.last_agent) + 1 if self.last_agent in self.agents \
                else 0
            return self.agents[after % len(self.agents)]
        choices = [a for a in self.agents if a != self.last_agent] or self.agents
        return self.context.rng("floor", self.name, self.grants).choice(choices)

    # -- settling and reading --------------------------------------------------------------

    async def settle(self, first: list[str]) -> None:
        """Wait until every agent of the room took in its head and has no turn in hand."""
        deadline = time.monotonic() + self.context.plan.run.settle_seconds
        delay = POLL_FIRST
        order = list(dict.fromkeys([*first, *self.joined]))
        while True:
            # Polls cost both sides an actor call each, and many rooms poll at once: while the
            # agent most likely at work is busy, it alone is asked; once it is done, the head
            # and all the others at once (one round trip, not one per agent).
            quiet = False
            if order and (await self.handles[order[0]].seen.remote(self.real))["busy"]:
                head = -1
            else:
                head = await self.room.head.remote()
                states = await asyncio.gather(*(self.handles[a].seen.remote(self.real)
                                                for a in order))
                behind = [a for a, seen in zip(order, states, strict=True)
                          if seen["busy"] or seen["position"] < head]
                if behind:
                    # Check the one still working first next time.
                    order.remove(behind[0])
                    order.insert(0, behind[0])
                else:
                    quiet = await self.room.head.remote() == head
            if quiet:
                return
            if time.monotonic() > deadline:
                await self._stuck(await self.room.head.remote(), order)
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    async def _stuck(self, head: int, agents: list[str]) -> None:
        states = [(a, await self.handles[a].seen.remote(self.real)) for a in agents]
        behind = [f"{a} (saw {s['position']} of {head}{', working' if s['busy'] else ''})"
                  for a, s in states if s["busy"] or s["position"] < head]
        raise Unavailable(
            f"room {self.real!r} did not settle within "
            f"{self.context.plan.run.settle_seconds:g} s: {', '.join(behind) or 'its head moved'}"
            "; raise [run] settle_seconds for slow models, or look for an agent that never "
            "stops answering")

    async def observe(self) -> None:
        """Read the room's new events, give them the current virtual time, check the stops."""
        events = await self.context.read(room_id(self.real), self.position)
        names, now = self.context.names, self.clock.now
        fresh: list[dict[str, Any]] = []
        for event in events:
            position = int(event.originator_version)
            body = event_body(event)
            self.position = max(self.position, position)
            self.last_event_at = now
            self.stamps[position] = str(body.get("at"))
            if body.get("kind") != "message_posted":
                continue
            author = names.plain(str(body.get("author_id")))
            kind = str(body.get("author_kind", "human"))
            text = names.plain(str(body.get("text", "")))
            message = {"position": position, "t": now, "author": author, "kind": kind,
                       "text": text, "message_id": body.get("message_id"), "at": body.get("at")}
            self.transcript.append(message)
            fresh.append(message)
            self.last_author = author
            if kind == "agent":
                self.last_agent = author
                self.scores.append((author, self.context.lexicon.score(text)))
        added = sum(1 for m in fresh if m["kind"] == "agent")
        if added:
            self.agent_messages += added
            self.context.on_turns(added)
        if events:
            self._check(fresh)

    def _check(self, fresh: list[dict[str, Any]]) -> None:
        if self.outcome is not None:
            return
        stop = self.stop
        if stop.max_turns is not None and self.agent_messages >= stop.max_turns:
            self._finish("turns", f"{self.agent_messages} agent turns")
            return
        for message in fresh:
            lowered = message["text"].lower()
            hit = next((k for k in stop.keywords if k.lower() in lowered), None)
            if hit is not None:
                self._finish("keyword", f"{message['author']} said {hit!r}")
                return
        consensus = stop.consensus
        if consensus is not None and len(self.scores) >= consensus.window:
            window = self.scores[-consensus.window:]
            voices = {author for author, _ in window}
            enough_voices = len(voices) >= min(2, len(self.agents))
            if enough_voices and all(score >= consensus.threshold for _, score in window):
                self._finish("consensus", f"the last {consensus.window} agent messages agreed")

    def _finish(self, outcome: str, detail: str) -> None:
        self.outcome = outcome
        self.detail = detail

    def summary(self) -> dict[str, Any]:
        """The room's outcome and transcript, in scenario names."""
        return {"room": self.name, "name": self.real, "agents": list(self.agents),
                "humans": list(self.humans), "stop": self.outcome or "error",
                "stop_detail": self.detail, "virtual_seconds": self.clock.now,
                "steps": self.steps, "grants": self.grants,
                "position": self.position, "agent_turns": self.agent_messages,
                "transcript": self.transcript,
                "stamps": {str(k): v for k, v in self.stamps.items()},
                "wall_seconds": dict(self.wall)}
