"""The guard stage of a turn: what goes in (room messages, prompts, tool results, documents)
and what goes out (the reply, tool arguments), checked under the room's and the agent's policy.

The checks themselves are pure (``domain/guardrails.py``); this shell calls the injection judge
(any provider, recorded as ``ModelCalled`` with ``purpose: guard``), records every verdict as
``GuardrailFlagged`` in the agent's stream, and remembers whether a flagged input reached the
agent, so that no privileged tool runs after it in the same turn unless the owner allowed it.

A judge that times out, fails or answers something unreadable fails closed: the text counts
as an injection with score 1.0 and gets the policy's action (blocked, withheld, or let through
marked untrusted with the turn tainted). With the policy ``off`` (the default) no guard exists
for the turn and nothing here runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from actors.toolbox import registry
from domain import guardrails as g
from domain.definitions import AgentDefinition
from domain.errors import SalonError
from infra.llm import ChatMessage, Completion, ModelRequest, provider_for
from memory.context import ContextMessage

if TYPE_CHECKING:
    from actors.turns import TurnRunner

log = logging.getLogger(__name__)
# Judge verdicts by (agent, judge, text): a room message is judged once, not every turn.
MEMO_SIZE = 2_000
_memo: OrderedDict[tuple[str, str, str], float] = OrderedDict()


def guard_for(runner: TurnRunner, room_policy: Any, agent_policy: Any) -> TurnGuard | None:
    """The guard of one turn, or None when the resolved policy is off (the cheap path)."""
    if not room_policy and not agent_policy:
        return None
    try:
        room = g.GuardPolicy.model_validate(room_policy) if room_policy else None
        agent = g.GuardPolicy.model_validate(agent_policy) if agent_policy else None
    except ValueError:
        # Recorded policies were validated when set; a schema change must not lower the guard.
        log.exception("unreadable guard policy of room %s; blocking", runner.trigger.room)
        room, agent = g.GuardPolicy(mode="block"), None
    policy = g.resolve(room, agent)
    return None if policy.mode == "off" else TurnGuard(runner, policy)


class TurnGuard:
    """Checks one turn's inputs and outputs under one resolved policy; records every verdict."""

    def __init__(self, runner: TurnRunner, policy: g.GuardPolicy) -> None:
        self.runner = runner
        self.policy = policy
        self.tainted: list[str] = []  # what flagged input reached the agent in this turn

    @property
    def streams(self) -> bool:
        """Whether the reply may stream as it is made: only when nothing will change it."""
        return self.policy.mode == "flag"

    # -- recording ----------------------------------------------------------------------

    def _record(self, verdicts: list[g.Verdict], direction: str, source: str,
                position: int | None = None, tool: str | None = None,
                cut: bool = False) -> None:
        runner = self.runner
        for verdict in verdicts:
            detail = verdict.detail + (" (checked the first "
                                       f"{g.MAX_CHECKED_CHARS} characters)" if cut else "")
            runner.agent.record_guard_verdict(
                runner.turn_id, runner.trigger.room, direction, source, verdict.check,
                verdict.score, verdict.action, self.policy.mode, position=position, tool=tool,
                kinds=list(verdict.kinds), detail=detail)

    # -- the judge ----------------------------------------------------------------------

    async def _injection(self, text: str, position: int | None) -> tuple[float, str] | None:
        """(score, note) of the injection check on ``text``, or None when it does not run."""
        if "injection" not in self.policy.checks:
            return None
        judge = self.policy.judge
        if judge is None or self.runner.recording is not None:
            # Re-runs call no model: they keep the pure heuristic.
            return g.injection_score(text), "heuristic"
        key = (self.runner.actor.name, judge.model_dump_json(),
               hashlib.sha256(text.encode()).hexdigest())
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key], f"judge {judge.provider}:{judge.model} (remembered)"
        label = f"judge {judge.provider}:{judge.model}"
        try:
            answer = await self._ask(judge, text, position)
        except TimeoutError:
            return 1.0, f"{label} gave no answer within {judge.timeout_seconds:g}s: failed closed"
        except Exception as error:  # noqa: BLE001 - any judge failure fails closed
            reason = error.message if isinstance(error, SalonError) else type(error).__name__
            return 1.0, f"{label} failed ({reason[:200]}): failed closed"
        score = g.read_verdict(answer)
        if score is None:
            return 1.0, f"{label} answered something unreadable: failed closed"
        _memo[key] = score
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
        return score, label

    async def _ask(self, judge: g.Judge, text: str, position: int | None) -> str:
        runner = self.runner
        spec = AgentDefinition(name=runner.actor.name, provider=judge.provider,
                               model=judge.model, script=list(judge.script))
        provider = provider_for(spec, runner._options())
        request = ModelRequest(model=judge.model, system=g.JUDGE_SYSTEM, temperature=0.0,
                               max_tokens=32, timeout_seconds=judge.timeout_seconds,
                               messages=[ChatMessage(role="user", content=g.judge_prompt(text))])
        await runner._started()
        started = time.perf_counter()
        completion: Completion | None = None
        async with asyncio.timeout(judge.timeout_seconds):
            async for item in provider.stream(request):
                if isinstance(item, Completion):
                    completion = item
        if completion is None:
            raise SalonError(f"judge {judge.provider}:{judge.model} ended without an answer")
        prompt = request.model_dump_json()
        runner.agent.record_model_call(
            runner.turn_id, completion.provider, completion.model,
            context={"room": runner.trigger.room,
                     "positions": [position] if position is not None else [],
                     "memory_ids": [], "purpose": "guard",
                     "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()},
            output={"text": completion.text[:2_000], "tool_calls": []},
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens, cost_usd=completion.cost_usd,
            latency_ms=round(completion.latency_ms or (time.perf_counter() - started) * 1000, 3),
            fallback_from=completion.fallback_from)
        return completion.text

    # -- into the turn ------------------------------------------------------------------

    async def incoming(self, text: str, source: str, position: int | None = None,
                       tool: str | None = None) -> str | None:
        """What the agent gets of one incoming text (None: blocked); verdicts recorded."""
        checked, cut = g.bounded(text)
        injection = await self._injection(checked, position)
        threshold = self.policy.judge.threshold if self.policy.judge else 0.5
        score, note = injection if injection is not None else (None, "")
        guarded = g.apply(checked, self.policy, source, g.detect(checked, self.policy), score,
                          note, threshold, cut)
        self._record(guarded.verdicts, "in", source, position, tool, cut)
        if guarded.flagged:
            checks = ",".join(sorted({v.check for v in guarded.verdicts}))
            self.tainted.append(f"{source}{'@' + str(position) if position else ''}"
                                f"{' from ' + tool if tool else ''} ({checks})")
        return guarded.text

    async def context(self, messages: list[ChatMessage], shown: list[ContextMessage],
                      positions: list[int], own: str
                      ) -> tuple[list[ChatMessage], list[ContextMessage], list[int]]:
        """The context with others' messages (and the prompt) guarded; blocked ones dropped.

        ``messages[i]`` is ``shown[i]`` for the room's messages; any after them are the turn's
        prompt or a nudge of Salon's own (not checked).
        """
        kept: list[ChatMessage] = []
        kept_shown: list[ContextMessage] = []
        kept_positions: list[int] = []
        for index, message in enumerate(messages):
            room_message = shown[index] if index < len(shown) else None
            nudge = room_message is None and self.runner.trigger.kind != "invoke"
            if message.role == "assistant" or message.name == own or nudge:
                text: str | None = message.content
            else:
                source = "message" if room_message is not None else "prompt"
                text = await self.incoming(message.content, source,
                                           room_message.position if room_message else None)
            if text is None:
                continue
            kept.append(message.model_copy(update={"content": text}))
            if room_message is not None:
                kept_shown.append(room_message)
                kept_positions.append(room_message.position)
        return kept, kept_shown, kept_positions

    async def tool_result(self, tool: str, result: str) -> str:
        """What the agent gets of a tool's result (a knowledge search's are documents)."""
        source = "document" if tool == "search_knowledge_base" else "tool_result"
        text = await self.incoming(result, source, tool=tool)
        return text if text is not None else (f"[withheld by guardrails: the result of {tool} "
                                              "was blocked]")

    # -- out of the turn ----------------------------------------------------------------

    def tool_call(self, tool: str, arguments: dict[str, Any]
                  ) -> tuple[dict[str, Any], str | None]:
        """(arguments to use, refusal or None) for one tool call of the agent."""
        tools = registry()
        permissions = frozenset(tools.get(tool).permissions) if tool in tools else frozenset()
        if self.tainted and g.is_privileged(tool, permissions) and \
                not g.allowed_after_flag(self.policy, tool):
            reason = (f"tool {tool!r} is privileged and a flagged input reached this turn "
                      f"({'; '.join(self.tainted[:3])}); guardrails refused the call. The "
                      "agent's owner can allow it with the override's allow_flagged_tools")
            self._record([g.Verdict("taint", 1.0, "refused", (), reason)], "out", "tool_call",
                         tool=tool)
            return arguments, reason
        text, cut = g.bounded(json.dumps(arguments, ensure_ascii=False))
        findings = g.detect(text, self.policy)
        if not findings:
            return arguments, None
        guarded = g.apply(text, self.policy, "tool_arguments", findings, cut=cut)
        if self.policy.mode == "block":
            guarded = g.Guarded(None, [g.Verdict(v.check, v.score, "refused", v.kinds,
                                                 v.detail) for v in guarded.verdicts], cut)
        self._record(guarded.verdicts, "out", "tool_arguments", tool=tool, cut=cut)
        if self.policy.mode == "block":
            kinds = ", ".join(sorted({k for v in guarded.verdicts for k in v.kinds}))
            return arguments, (f"the arguments of {tool!r} carry {kinds}; guardrails "
                               "refused the call")
        if self.policy.mode == "redact":
            return _masked(arguments, self.policy), None
        return arguments, None

    def reply(self, text: str) -> str | None:
        """What of the agent's reply goes out to the room (None: blocked)."""
        checked, cut = g.bounded(text)
        guarded = g.apply(checked, self.policy, "reply", g.detect(checked, self.policy),
                          cut=cut)
        self._record(guarded.verdicts, "out", "reply", cut=cut)
        if guarded.text is None:
            return None  # blocked: nothing is posted
        if self.policy.mode == "redact" and guarded.verdicts:
            return guarded.text + ("\u2026" if cut else "")
        return text  # flag records only; nothing found leaves the reply as it is


def _masked(value: Any, policy: g.GuardPolicy) -> Any:
    """``value`` (JSON) with what the detectors find in its strings masked."""
    if isinstance(value, str):
        checked, _ = g.bounded(value)
        return g.mask(checked, g.detect(checked, policy))
    if isinstance(value, dict):
        return {k: _masked(v, policy) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, policy) for v in value]
    return value
