"""AgentActor: the single writer of one agent's stream; takes turns in the rooms it is in."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import ray

from actors import directory
from domain.agents import Agent, AgentDefinition
from domain.errors import Conflict, NotFound, SalonError
from domain.ids import agent_id, new_id, room_id
from domain.turns import Trigger, triggers_for
from domain.wire import kind_of
from infra.bus import RoomBus
from infra.llm import ChatMessage, ModelRequest, provider_for
from infra.llm.base import Completion
from infra.settings import Settings
from infra.store import EventStore
from memory.context import ContextMessage, last_n

log = logging.getLogger(__name__)


def _missing(name: str) -> str:
    return f"agent {name!r} does not exist; `salon agents list` shows the agents"


@ray.remote
class AgentActor:
    """Queues triggers and runs one turn at a time, recording every step as an event."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.id = agent_id(name)
        assert settings.database_url and settings.redis_url, "actors need resolved server URLs"
        self.store = EventStore(settings.database_url, settings.snapshot_interval)
        self.bus = RoomBus(settings.redis_url)
        self.agent: Agent | None = self._load()
        self.queue: asyncio.Queue[tuple[str, Trigger]] | None = None
        self.queued_up_to: dict[str, int] = {}
        self.worker: asyncio.Task[None] | None = None
        if self.agent is not None and self.agent.open_turns():
            # A turn cut short by a crash is closed honestly rather than left hanging.
            for turn_id in self.agent.open_turns():
                self.agent.fail_turn(turn_id, "the agent restarted during this turn")
            self.store.save(self.agent.collect_events())

    def _load(self) -> Agent | None:
        try:
            return self.store.get(Agent, self.id, _missing(self.name))
        except NotFound:
            return None

    def _agent(self) -> Agent:
        if self.agent is None:
            raise NotFound(_missing(self.name))
        return self.agent

    async def _save(self) -> None:
        agent = self._agent()
        events = agent.collect_events()
        try:
            await asyncio.to_thread(self.store.save, events)
        except Exception:
            self.agent = await asyncio.to_thread(self._load)
            raise

    async def define(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Record the agent; Conflict if it exists already."""
        if self.agent is not None:
            raise Conflict(f"agent {self.name!r} exists already; pick another name")
        spec = AgentDefinition.model_validate(definition)
        self.agent = Agent.define(spec)
        try:
            await self._save()
        except Exception:
            self.agent = None
            raise
        return await self.info()

    async def info(self) -> dict[str, Any]:
        """The definition, status and compiled system prompt."""
        agent = self._agent()
        return {"name": agent.name, "status": agent.status, "definition": agent.definition,
                "system_prompt": agent.spec.system_prompt(), "turns": agent.turn_count}

    async def on_room_events(self, room: str, frames: list[dict[str, Any]]) -> int:
        """Take in new room events; queue the turns they call for. Returns how many."""
        agent = self._agent()
        seen = max(agent.handled.get(room, 0), self.queued_up_to.get(room, 0))
        found = triggers_for(self.name, agent.spec.opening_line, room, frames, seen)
        if frames:
            self.queued_up_to[room] = max(seen, max(int(f["position"]) for f in frames))
        for trigger in found:
            self._enqueue(new_id(), trigger)
        return len(found)

    async def invoke(self, room: str, by: str, prompt: str | None = None) -> dict[str, Any]:
        """Take a turn in ``room`` now, asked by ``by``; returns the turn id."""
        self._agent()
        turn_id = new_id()
        self._enqueue(turn_id, Trigger("invoke", room, None, by, prompt))
        return {"agent": self.name, "turn_id": turn_id}

    def _enqueue(self, turn_id: str, trigger: Trigger) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
        self.queue.put_nowait((turn_id, trigger))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        assert self.queue is not None
        while not self.queue.empty():
            turn_id, trigger = self.queue.get_nowait()
            try:
                await self._turn(turn_id, trigger)
            except Exception:  # noqa: BLE001 - a bad turn never takes the actor down
                log.exception("turn %s of %s failed outside its own handling", turn_id, self.name)

    async def _turn(self, turn_id: str, trigger: Trigger) -> None:
        agent = self._agent()
        agent.start_turn(turn_id, trigger.room, trigger.as_record())
        await self._save()
        await self.bus.publish_ephemeral(trigger.room, "agent_thinking", agent=self.name,
                                         turn_id=turn_id)
        try:
            if trigger.kind == "joined":
                text = agent.spec.opening_line or ""
            else:
                text = await self._model_reply(turn_id, trigger)
            room = directory.room(trigger.room, self.settings)
            posted = await room.post.remote(self.name, text, request_id=turn_id)
            agent.complete_turn(turn_id, posted["message_id"])
        except Exception as error:  # noqa: BLE001 - recorded as TurnFailed
            reason = error.message if isinstance(error, SalonError) else \
                f"{type(error).__name__}: {error}"
            agent.fail_turn(turn_id, reason)
        await self._save()

    async def _model_reply(self, turn_id: str, trigger: Trigger) -> str:
        agent = self._agent()
        spec = agent.spec
        context = await asyncio.to_thread(self._context, trigger, spec.context_messages)
        messages = [ChatMessage(role="assistant" if m.author == self.name else "user",
                                name=m.author, content=m.text) for m in context]
        if trigger.kind == "invoke" and trigger.text:
            messages.append(ChatMessage(role="user", name=trigger.by, content=trigger.text))
        request = ModelRequest(model=spec.model, system=spec.system_prompt(), messages=messages)
        provider = provider_for(spec)
        started = time.perf_counter()
        completion: Completion | None = None
        async for item in provider.stream(request):
            if isinstance(item, Completion):
                completion = item
            else:
                await self.bus.publish_ephemeral(trigger.room, "agent_token", agent=self.name,
                                                 turn_id=turn_id, delta=item.text)
        if completion is None:
            raise SalonError(f"provider {provider.name!r} ended its stream without a reply")
        text = completion.text
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        prompt = request.model_dump_json()
        agent.record_model_call(
            turn_id, completion.provider, completion.model,
            context={"room": trigger.room, "positions": [m.position for m in context],
                     "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()},
            output={"text": text,
                    "tool_calls": [c.model_dump() for c in completion.tool_calls]},
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
            cost_usd=completion.cost_usd, latency_ms=latency_ms,
            fallback_from=completion.fallback_from)
        await self._save()
        if not text.strip():
            raise SalonError(f"model {spec.model!r} returned an empty reply")
        return text

    def _context(self, trigger: Trigger, n: int) -> list[ContextMessage]:
        events = self.store.events(room_id(trigger.room), up_to=trigger.position, newest=True,
                                   limit=n * 3)
        found = [ContextMessage(int(e.originator_version), e.author_id, e.text)
                 for e in events if kind_of(e) == "message_posted"]
        return last_n(found, n)

    async def ping(self) -> str:
        return "pong"

