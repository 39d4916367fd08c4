"""One agent turn: context, model calls, the tool loop, the post, and every step recorded."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors import directory
from actors.guards import guard_for
from actors.recordings import Recording, ReplayProvider
from actors.toolbox import Toolbox, authority_of
from actors.upkeep import after_reflection
from domain.capabilities import FREE_PROVIDERS
from domain.definitions import build
from domain.errors import NotFound, SalonError
from domain.ids import room_id
from domain.threads import Thread, thread_id
from domain.turns import Trigger, addressed
from infra.llm import (
    ChatMessage,
    Completion,
    ModelRequest,
    Provider,
    ProviderOptions,
    provider_for,
)
from infra.llm.models import model_info
from infra.llm.scripted import price_per_call
from infra.recall import Prepared
from infra.spend import SpendLedger
from memory.context import ContextMessage, RoomSummary

if TYPE_CHECKING:
    from actors.agents import AgentCore

log = logging.getLogger(__name__)

SELECT_INSTRUCTION = ("You moderate this room. Choose who speaks next. Answer with exactly one "
                      "name from: {names}.")
NUDGES = {
    "idle": "(The room has been quiet for a while. Start the conversation again.)",
    "schedule": "(It is your scheduled time to speak. Say something useful to the room.)",
    "turn": None,
}


@dataclass(frozen=True)
class Context:
    """What one model call of a turn is based on."""

    messages: list[ChatMessage]
    positions: list[int]
    system: str
    memory_ids: list[str]
    shown: list[ContextMessage]


class Ephemerals:
    """A turn's ephemeral frames, published in order without the turn waiting for each.

    A turn used to await a Valkey round trip for each of ``turn_started``, ``agent_thinking``
    and every token before going on. Now they queue and one task publishes whatever queued
    meanwhile in one pipelined round trip; ``flush`` waits for all of it (before the reply is
    posted, so clients see the tokens before the message). Ephemerals are best effort: a
    failure is logged and never fails the turn.
    """

    def __init__(self, bus: Any, room: str) -> None:
        self.bus = bus
        self.room = room
        self.queued: list[dict[str, Any]] = []
        self.sender: asyncio.Task[None] | None = None

    def add(self, fields: dict[str, Any]) -> None:
        self.queued.append(fields)
        if self.sender is None or self.sender.done():
            self.sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self.queued:
            frames, self.queued = self.queued, []
            try:
                await self.bus.publish_ephemerals(self.room, frames)
            except Exception:  # noqa: BLE001 - ephemeral frames are best effort
                log.warning("publishing %d ephemeral frames of room %s failed", len(frames),
                            self.room, exc_info=True)

    async def flush(self) -> None:
        if self.sender is not None:
            await asyncio.shield(self.sender)


class TurnRunner:
    """Runs one turn for an agent actor and records TurnStarted … TurnCompleted/TurnFailed."""

    def __init__(self, actor: AgentCore, turn_id: str, trigger: Trigger) -> None:
        self.actor = actor
        self.turn_id = turn_id
        self.trigger = trigger
        self.agent = actor._agent()
        rules = actor._view(trigger.room).policy
        override = (rules.get("overrides") or {}).get(actor.name)
        # A what-if room may run this agent with other definition fields (model, persona, …).
        self.spec = build({**self.agent.definition, **override}) if override else self.agent.spec
        source = rules.get("rerun_of")
        self.recording = Recording(actor.store, actor.name, str(source), trigger.room) \
            if source else None
        self.remembered: Context | None = None  # what the reply was based on, for memory
        self.forked_from: dict[str, Any] | None = rules.get("forked_from")
        self.ephemerals = Ephemerals(actor.bus, trigger.room)
        self.retrievals: list[asyncio.Task[Any]] = []  # recall records being saved
        # None unless the room's guardrail policy or the owner's override is on.
        self.guard = guard_for(self, rules.get("guard"), self.agent.guard)

    async def publish(self, kind: str, **fields: Any) -> None:
        """Queue an ephemeral frame of this turn (it goes out in order, off the turn's path)."""
        self.ephemerals.add({"kind": kind, "agent": self.actor.name, "turn_id": self.turn_id,
                             **fields})

    async def run(self) -> None:
        self.agent.start_turn(self.turn_id, self.trigger.room, self.trigger.as_record())
        # TurnStarted is saved while the context is read; it is durable before the model is
        # called or anything is posted (``_started``), so a crash still leaves its trace.
        self.starting = asyncio.get_running_loop().create_task(self.actor.save())
        try:
            await self.publish("turn_started", trigger=self.trigger.as_record())
            await self.publish("agent_thinking")
            message_id = await self._act()
            await self._retrievals_saved()  # memory work below writes the same stream
            if self.remembered is not None:
                await self._remember(self.remembered)
            self.agent.complete_turn(self.turn_id, message_id)
            outcome: dict[str, Any] = {"kind": "turn_completed", "message_id": message_id}
        except asyncio.CancelledError:
            if self.turn_id in self.agent.turns:
                self.agent.fail_turn(self.turn_id, "cancelled: the agent was paused or stopped")
            outcome = {"kind": "turn_failed", "error": "cancelled"}
        except Exception as error:  # noqa: BLE001 - recorded as TurnFailed
            reason = error.message if isinstance(error, SalonError) else \
                f"{type(error).__name__}: {error}"
            self.agent.fail_turn(self.turn_id, reason)
            outcome = {"kind": "turn_failed", "error": reason}
        await self._started()  # a failure to record the start is the turn's failure
        await self._retrievals_saved()
        await self.actor.save()
        kind = outcome.pop("kind")
        await self.publish(kind, **outcome)
        await self.ephemerals.flush()

    async def _act(self) -> str | None:
        if self.trigger.kind == "joined":
            return await self._post(self.spec.opening_line or "")
        if self.trigger.kind == "select":
            await self._select()
            return None
        reply: str | None = await self._reply()
        if self.guard is not None:
            reply = self.guard.reply(reply)
            if reply is None:
                return None  # blocked by the guard: recorded, nothing posted
        return await self._post(reply)

    async def _retrievals_saved(self) -> None:
        """Wait for the recall records saved beside the model call (before TurnCompleted)."""
        for task in self.retrievals:
            try:
                await task
            except Exception:  # noqa: BLE001 - the reply stands; the log says what is missing
                log.exception("recording a retrieval of turn %s of %s failed", self.turn_id,
                              self.actor.name)
        self.retrievals.clear()

    async def _started(self) -> None:
        """Wait until TurnStarted is saved (raises why it was not)."""
        await asyncio.shield(self.starting)

    async def _post(self, text: str) -> str:
        await self._started()
        # The reply's ModelCalled is saved while the reply is posted (a commit off the path).
        saving = asyncio.get_running_loop().create_task(self.actor.save())
        try:
            await self.ephemerals.flush()  # the tokens reach clients before the message
            if not text.strip():
                raise SalonError(f"model {self.spec.model!r} returned an empty reply")
            room = directory.room(self.trigger.room, self.actor.settings)
            posted: dict[str, Any] = await room.post.remote(self.actor.name, text,
                                                            request_id=self.turn_id)
        finally:
            await saving
        return str(posted["message_id"])

    # -- context ------------------------------------------------------------------------

    async def _messages(self) -> Context:
        prepared = await asyncio.to_thread(self._prepare)
        if prepared.pending is not None:
            # The retrieval's record is saved while the model answers, not before it is asked.
            self.retrievals.append(asyncio.get_running_loop().create_task(
                asyncio.to_thread(prepared.pending)))
        # Authors travel in ``name``; adapters whose vendor has no such field prefix the text.
        messages = [ChatMessage(role="assistant" if m.author == self.actor.name else "user",
                                name=m.author, content=m.text) for m in prepared.context]
        nudge = NUDGES.get(self.trigger.kind)
        if self.trigger.kind == "invoke" and self.trigger.text:
            messages.append(ChatMessage(role="user", name=self.trigger.by,
                                        content=self.trigger.text))
        elif nudge:
            messages.append(ChatMessage(role="user", name="salon", content=nudge))
        shown, positions = prepared.context, [m.position for m in prepared.context]
        if self.guard is not None:
            messages, shown, positions = await self.guard.context(messages, shown, positions,
                                                                  self.actor.name)
        return Context(messages, positions, prepared.system, prepared.memory_ids, shown)

    def _prepare(self) -> Prepared:
        """Context and system prompt, with memories recalled (and the recall recorded)."""
        info = model_info(self.spec.provider, self.spec.model)
        memory = self.actor.memory(self.spec)
        # Re-runs replay what was recorded: they recall, but record no new retrieval.
        return memory.prepare(self.trigger.room, self.trigger.position,
                              self.spec.context_messages, self.spec.system_prompt(),
                              prompt=self.trigger.text if self.trigger.kind == "invoke" else None,
                              context_window=info.context_window, max_output=info.max_output,
                              record=self.recording is None, formed_by=self._branch_point(),
                              summary=self._summary(), defer=True)

    def _summary(self) -> RoomSummary | None:
        """For the ``summarize`` strategy: the room's latest summary up to this turn's point."""
        if self.spec.memory.context != "summarize":
            return None
        try:
            thread = self.actor.store.get(Thread, thread_id(self.trigger.room), "thread")
        except NotFound:
            return None
        if not thread.summary or (self.trigger.position is not None
                                  and thread.summary_position > self.trigger.position):
            return None
        return RoomSummary(thread.summary_position, thread.summary)

    def _branch_point(self) -> datetime | None:
        """In a fork: when its last inherited event happened (memories after it are not ours)."""
        if not self.forked_from:
            return None
        at = int(self.forked_from["at"])
        found = self.actor.store.events(room_id(self.trigger.room), after=at - 1, up_to=at)
        return found[0].timestamp if found else None

    async def _remember(self, context: Context) -> None:
        """After a turn: importance ratings, user facts and reflection, as configured.

        Their model calls are recorded as ``ModelCalled`` with ``purpose: memory`` (re-runs
        skip them); a failure here is logged and never undoes the turn.
        """
        # Every reply the agent composed counts (a mention, an idle or scheduled turn too):
        # reflection waits on what the agent heard, not on how it was asked to speak.
        if self.recording is not None:
            return

        async def ask(prompt: str) -> str:
            request = ModelRequest(model=self.spec.model, temperature=0.0,
                                   messages=[ChatMessage(role="user", content=prompt)])
            completion = await self._call(request, context.positions, stream=False,
                                          purpose="memory")
            return completion.text

        try:
            done = await self.actor.memory(self.spec).after_turn(
                ask, context.shown, self.spec.model, self.trigger.room)
            if done["reflections"]:
                # New insights may restate old memories: tidy up after them, off the turn.
                await asyncio.to_thread(after_reflection, self.actor.settings,
                                        self.actor.name, self.turn_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - memory upkeep must not fail the turn it follows
            log.exception("memory work after turn %s of %s failed", self.turn_id,
                          self.actor.name)

    # -- model and tools ----------------------------------------------------------------

    def _options(self) -> ProviderOptions:
        settings = self.actor.settings
        return ProviderOptions(redis_url=settings.redis_url,
                               rate_limit_mode=settings.llm_rate_limit_mode,
                               max_wait=settings.llm_max_wait_seconds,
                               timeout=settings.llm_timeout_seconds)

    def _may_cost(self) -> bool:
        """Whether a call of this turn may spend the operator's money."""
        links = [self.spec.provider, *(f.split(":", 1)[0] for f in self.spec.fallbacks)]
        return any(p not in FREE_PROVIDERS for p in links) or price_per_call(self.spec.model) > 0

    async def _payer(self) -> tuple[str, bool] | None:
        """Who pays for this turn's calls (name, is admin); None: the operator's own agent."""
        by = self.trigger.by or self.agent.owner_id
        if by is None:
            return None
        who = await asyncio.to_thread(authority_of, self.actor.store, by, None)
        return who.name, who.is_admin

    async def _call(self, request: ModelRequest, positions: list[int], stream: bool,
                    memory_ids: list[str] | None = None, purpose: str = "turn",
                    defer: bool = False) -> Completion:
        """One model call, recorded as ModelCalled; saved at once unless ``defer`` (the next
        save takes it: the tool call's, or the post's)."""
        provider: Provider = ReplayProvider(self.recording) if self.recording else \
            provider_for(self.spec, self._options())
        ledger = payer = None
        if self.recording is None and self._may_cost():
            payer = await self._payer()
            if payer is not None:
                ledger = SpendLedger(self.actor.bus.redis, self.actor.settings.spend_usd_per_day)
                await ledger.check(*payer)
        await self._started()
        started = time.perf_counter()
        completion: Completion | None = None
        async for item in provider.stream(request):
            if isinstance(item, Completion):
                completion = item
            elif stream:
                await self.publish("agent_token", delta=item.text)
        if completion is None:
            raise SalonError(f"provider {provider.name!r} ended its stream without a reply")
        if ledger is not None and payer is not None and not payer[1]:
            await ledger.charge(payer[0], completion.cost_usd)
        prompt = request.model_dump_json()
        self.agent.record_model_call(
            self.turn_id, completion.provider, completion.model,
            context={"room": self.trigger.room, "positions": positions,
                     "memory_ids": memory_ids or [], "purpose": purpose,
                     "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()},
            output={"text": completion.text,
                    "tool_calls": [c.model_dump() for c in completion.tool_calls]},
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens, cost_usd=completion.cost_usd,
            latency_ms=round(completion.latency_ms or (time.perf_counter() - started) * 1000, 3),
            fallback_from=completion.fallback_from)
        if not defer:
            await self.actor.save()
        return completion

    async def _reply(self) -> str:
        context = await self._messages()
        messages = context.messages
        toolbox = Toolbox(self.actor, self.spec, self.trigger.room, by=self.trigger.by,
                          owner=self.agent.owner_id)
        specs = toolbox.specs()
        for round_ in range(self.spec.max_tool_rounds + 1):
            last_round = round_ == self.spec.max_tool_rounds
            request = ModelRequest(model=self.spec.model, system=context.system,
                                   messages=messages, tools=[] if last_round else specs)
            completion = await self._call(request, context.positions,
                                          stream=self.guard is None or self.guard.streams,
                                          memory_ids=context.memory_ids, defer=True)
            if not completion.tool_calls:
                self.remembered = context
                return completion.text
            if last_round:
                break
            messages.append(ChatMessage(role="assistant", content=completion.text,
                                        tool_calls=completion.tool_calls))
            for call in completion.tool_calls:
                arguments, refusal = call.arguments, None
                if self.guard is not None:
                    arguments, refusal = self.guard.tool_call(call.name, call.arguments)
                if self.recording:
                    outcome = self.recording.next_tool(call.name)
                elif refusal is None:
                    outcome = await toolbox.execute(call.name, arguments)
                if refusal is not None:
                    outcome = {"status": "refused", "result": refusal, "duration_ms": 0.0}
                self.agent.record_tool_call(self.turn_id, call.name, arguments,
                                            outcome["result"], outcome["status"],
                                            outcome["duration_ms"])
                result = outcome["result"]
                if self.guard is not None and outcome["status"] == "ok":
                    result = await self.guard.tool_result(call.name, result)
                await self.actor.save()
                await self.publish("tool_executed", tool=call.name, status=outcome["status"])
                messages.append(ChatMessage(role="tool", name=call.name, tool_call_id=call.id,
                                            content=result))
        raise SalonError(f"agent {self.actor.name!r} used its {self.spec.max_tool_rounds} tool "
                         "rounds without answering")

    async def _select(self) -> None:
        room = directory.room(self.trigger.room, self.actor.settings)
        info: dict[str, Any] = await room.info.remote()
        candidates = sorted(m for m, v in info["members"].items()
                            if v["kind"] == "agent" and m != self.actor.name)
        if not candidates:
            raise SalonError("there is no other agent in the room to choose")
        context = await self._messages()
        request = ModelRequest(
            model=self.spec.model, messages=context.messages,
            system=context.system + "\n" +
            SELECT_INSTRUCTION.format(names=", ".join(candidates)))
        completion = await self._call(request, context.positions, stream=False,
                                      memory_ids=context.memory_ids)
        chosen = next((c for c in candidates
                       if addressed(c, {"text": completion.text, "mentions": []})), None)
        if chosen is None:
            raise SalonError(f"the moderator named none of {', '.join(candidates)}")
        agent = directory.agent(chosen, self.actor.settings)
        await agent.invoke.remote(self.trigger.room, self.actor.name, None)
