"""The guard around one adapter: rate limits, timeouts, retries, prompted tools, usage and cost.

Every call first takes its place under the model's RPM/TPM limits, then runs under a
per-call timeout (for a stream: the wait for each next piece), and a retryable failure is
tried again after the retry policy's pause. A stream is retried only until its first piece
of text has gone out; after that a failure ends it. For a model without native tool calling
the tools travel in the prompt and ``<tool_call>`` blocks are parsed out of the reply (held
back from the stream); a reply whose blocks cannot be read is answered once with what was
wrong, then fails as ``malformed``. Usage the vendor did not report is counted here
(``tokens.py``), and cost comes from the model registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from domain.errors import RateLimited
from infra.llm.base import ChatMessage, Completion, Delta, ModelRequest, Provider, Usage
from infra.llm.failures import ProviderError
from infra.llm.limits import Limiter, Limits
from infra.llm.models import ModelInfo
from infra.llm.prompted import BlockFilter, Parsed, answer_of, inject, parse, repair_message
from infra.llm.retries import RetryPolicy
from infra.llm.streams import closing
from infra.llm.tokens import count_request, count_tokens

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]
DEFAULT_TIMEOUT = 120.0


class GuardedProvider:
    """An adapter for one model, made safe to call: limited, timed, retried and priced."""

    def __init__(self, adapter: Provider, info: ModelInfo, *, limiter: Limiter | None = None,
                 limits: Limits | None = None, retry: RetryPolicy | None = None,
                 timeout: float = DEFAULT_TIMEOUT, sleep: Sleep = asyncio.sleep) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.info = info
        self.limiter = limiter
        self.limits = limits or Limits(rpm=info.rpm, tpm=info.tpm)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.sleep = sleep

    def _label(self, request: ModelRequest) -> str:
        return f"{self.name}:{request.model}"

    def _prompted(self, request: ModelRequest) -> bool:
        return bool(request.tools) and not self.info.tools

    # -- one attempt at a time ------------------------------------------------------------

    async def _admit(self, request: ModelRequest) -> None:
        if self.limiter is None or self.limits.unlimited:
            return
        try:
            await self.limiter.acquire(self._label(request), self.limits,
                                       count_request(request, self.name))
        except RateLimited as error:
            # The limiter has waited already (or was told not to): not retried, but a
            # fallback may answer.
            raise ProviderError(error.message, "rate_limited", final=True) from None

    async def _retrying(self, request: ModelRequest,
                        attempt_once: Callable[[], Awaitable[Completion]]) -> Completion:
        attempt = 1
        while True:
            try:
                return await attempt_once()
            except ProviderError as error:
                delay = self.retry.delay(error, attempt)
                if delay is None:
                    raise
                log.info("%s failed (%s); try %d in %.2fs", self._label(request),
                         error.message, attempt + 1, delay)
            await self.sleep(delay)
            attempt += 1

    async def _complete_once(self, request: ModelRequest) -> Completion:
        await self._admit(request)
        try:
            async with asyncio.timeout(self._timeout(request)):
                return await self.adapter.complete(request)
        except TimeoutError:
            raise self._timed_out(request) from None

    def _timeout(self, request: ModelRequest) -> float:
        return request.timeout_seconds or self.timeout

    def _timed_out(self, request: ModelRequest) -> ProviderError:
        return ProviderError(f"{self._label(request)}: no answer within "
                             f"{self._timeout(request):g}s (raise the timeout or add a "
                             "fallback)", "timeout")

    # -- the interface ------------------------------------------------------------------

    async def complete(self, request: ModelRequest) -> Completion:
        """The whole reply at once, retried as the policy says."""
        started = time.perf_counter()
        sent = inject(request) if self._prompted(request) else request
        completion = await self._retrying(sent, lambda: self._complete_once(sent))
        extra: list[Completion] = []
        if self._prompted(request):
            completion, extra = await self._read_tool_calls(request, sent, completion)
        return await self._finish(sent, completion, started, extra)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Text as it comes, then the whole reply; retried until the first text goes out."""
        started = time.perf_counter()
        prompted = self._prompted(request)
        sent = inject(request) if prompted else request
        attempt = 1
        while True:
            shown = False
            blocks = BlockFilter() if prompted else None
            try:
                await self._admit(sent)
                completion: Completion | None = None
                async with closing(self._timed(sent)) as items:
                    async for item in items:
                        if isinstance(item, Completion):
                            completion = item
                            break
                        text = blocks.feed(item.text) if blocks else item.text
                        if text:
                            shown = True
                            yield Delta(text=text)
                tail = blocks.flush() if blocks else ""
                if tail:
                    shown = True
                    yield Delta(text=tail)
                if completion is None:
                    raise ProviderError(f"{self._label(sent)}: the stream ended without a "
                                        "reply", "malformed")
                break
            except ProviderError as error:
                delay = None if shown else self.retry.delay(error, attempt)
                if delay is None:
                    raise
                log.info("%s failed (%s); try %d in %.2fs", self._label(sent), error.message,
                         attempt + 1, delay)
            await self.sleep(delay)
            attempt += 1
        extra: list[Completion] = []
        if prompted:
            streamed = answer_of(completion.text)   # exactly what BlockFilter let out
            completion, extra = await self._read_tool_calls(request, sent, completion)
            if len(completion.text) > len(streamed):
                # A plain answer that only the repair round gave is shown now.
                yield Delta(text=completion.text[len(streamed):])
        yield await self._finish(sent, completion, started, extra)

    async def _timed(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        async with closing(self.adapter.stream(request).__aiter__()) as iterator:
            while True:
                try:
                    async with asyncio.timeout(self._timeout(request)):
                        item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timed_out(request) from None
                yield item

    # -- prompted tools -----------------------------------------------------------------

    async def _read_tool_calls(self, request: ModelRequest, sent: ModelRequest,
                               completion: Completion) -> tuple[Completion, list[Completion]]:
        parsed = parse(completion.text, request.tools)
        if not parsed.errors:
            return _with_calls(completion, parsed, parsed.text), []
        # Tell the model what was wrong, once; its corrected calls join the readable ones.
        retry = sent.model_copy(update={"messages": [
            *sent.messages, ChatMessage(role="assistant", content=completion.text),
            repair_message(parsed.errors)]})
        repaired = await self._retrying(retry, lambda: self._complete_once(retry))
        again = parse(repaired.text, request.tools, first_id=len(parsed.calls))
        if again.errors:
            raise ProviderError(
                f"{self._label(request)}: the model's tool calls could not be read, even after "
                f"it was told what was wrong: {'; '.join(again.errors)} (use a model with "
                "native tool calling, or a larger one)", "malformed")
        text = parsed.text
        if not parsed.calls and not again.calls and again.text:
            joiner = " " if text and not text[-1].isspace() else ""
            text = f"{text}{joiner}{again.text}"
        merged = Parsed(text=text, calls=parsed.calls + again.calls)
        return _with_calls(completion, merged, text), [repaired]

    # -- usage, cost, latency -----------------------------------------------------------

    async def _finish(self, sent: ModelRequest, completion: Completion, started: float,
                      extra: list[Completion]) -> Completion:
        usage = completion.usage
        if usage.estimated or (usage.input_tokens == 0 and usage.output_tokens == 0):
            spoken = completion.text + "".join(json.dumps(c.model_dump())
                                               for c in completion.tool_calls)
            usage = Usage(input_tokens=count_request(sent, self.name),
                          output_tokens=count_tokens(spoken, self.name, sent.model),
                          estimated=True)
        for more in extra:
            usage = Usage(input_tokens=usage.input_tokens + more.usage.input_tokens,
                          output_tokens=usage.output_tokens + more.usage.output_tokens,
                          estimated=usage.estimated or more.usage.estimated)
        if self.limiter is not None and not self.limits.unlimited:
            await self.limiter.add_tokens(self._label(sent), self.limits, usage.output_tokens)
        return completion.model_copy(update={
            "usage": usage, "cost_usd": self.info.cost(usage),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3)})


def _with_calls(completion: Completion, parsed: Parsed, text: str) -> Completion:
    update: dict[str, Any] = {"text": text, "tool_calls": parsed.calls}
    if parsed.calls:
        update["finish_reason"] = "tool_calls"
    return completion.model_copy(update=update)

