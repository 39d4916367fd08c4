"""Anthropic's Messages API through the official ``anthropic`` SDK.

System prompt as ``system``; tools as ``tools`` with ``input_schema``; the model's calls come
back as ``tool_use`` blocks and their results go in as ``tool_result`` blocks of the next user
turn. Consecutive messages of one role are merged (the API wants user and assistant turns to
alternate, starting with the user). Streaming reads the SSE events (``message_start``,
``content_block_*``, ``message_delta``) and reports usage from them. The SDK's retries are
off; the guard retries.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator
from typing import Any

from infra.llm.base import ChatMessage, Completion, Delta, ModelRequest, ToolCall, Usage
from infra.llm.clients import cached, fingerprint
from infra.llm.failures import ProviderError, error_detail, failure, http_failure
from infra.llm.keys import read_key
from infra.llm.messages import said, system_prompt, tool_arguments

KEY_VARIABLE = "ANTHROPIC_API_KEY"
EMPTY_CONVERSATION = "(The conversation has not started yet.)"


class AnthropicProvider:
    """One Claude model behind Salon's provider interface."""

    name = "anthropic"

    def __init__(self, model: str, base_url: str | None = None,
                 key_variable: str | None = None, timeout: float = 120.0) -> None:
        self.model = model
        self.base_url = base_url
        self.key_variable = key_variable or KEY_VARIABLE
        self.label = f"anthropic:{model}"
        self.timeout = timeout

    def _client(self) -> Any:
        import anthropic

        key = read_key(self.key_variable)
        if key is None:
            raise failure(self.label, "auth", f"no API key: set {self.key_variable} in the "
                          "environment Salon runs in, or name another variable in the agent's "
                          "api_key_env")
        base_url = self.base_url

        def build() -> Any:
            return anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0,
                                            timeout=self.timeout)

        return cached(("anthropic", base_url, fingerprint(key), self.timeout), build)

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens,
                                     "messages": _turns(request.messages)}
        if _takes_temperature():
            arguments["temperature"] = request.temperature
        system = system_prompt(request)
        if system:
            arguments["system"] = system
        if request.tools:
            arguments["tools"] = [{"name": t.name, "description": t.description,
                                   "input_schema": t.parameters} for t in request.tools]
        return arguments

    async def complete(self, request: ModelRequest) -> Completion:
        """The whole reply at once."""
        client = self._client()
        try:
            reply = await client.messages.create(**self._arguments(request))
        except Exception as error:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise _translate(self.label, error, self.base_url) from None
        try:
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in reply.content:
                if block.type == "text":
                    texts.append(block.text)
                elif block.type == "tool_use":
                    calls.append(ToolCall(id=block.id, name=block.name,
                                          arguments=tool_arguments(block.input, self.label,
                                                                   block.name)))
            usage = _usage(reply.usage)
            finish = reply.stop_reason
        except ProviderError:
            raise
        except Exception as error:  # noqa: BLE001 - the body was not a message
            raise failure(self.label, "malformed", f"the reply is not a message "
                          f"({type(reply).__name__}; {type(error).__name__}: {error})") from None
        return Completion(text="".join(texts), tool_calls=calls, usage=usage,
                          provider=self.name, model=request.model, finish_reason=finish)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Text deltas from the SSE stream, then the whole reply with usage."""
        client = self._client()
        try:
            response = await client.messages.create(**self._arguments(request), stream=True)
        except Exception as error:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise _translate(self.label, error, self.base_url) from None
        parts: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        input_tokens = output_tokens = 0
        finish: str | None = None
        try:
            async for event in response:
                piece = ""
                try:
                    kind = event.type
                    if kind == "message_start":
                        input_tokens = _input_tokens(event.message.usage)
                        output_tokens = int(event.message.usage.output_tokens or 0)
                    elif kind == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            blocks[event.index] = {"id": block.id, "name": block.name,
                                                   "json": ""}
                    elif kind == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            piece = delta.text
                        elif delta.type == "input_json_delta" and event.index in blocks:
                            blocks[event.index]["json"] += delta.partial_json
                    elif kind == "message_delta":
                        finish = event.delta.stop_reason or finish
                        if event.usage is not None:
                            output_tokens = int(event.usage.output_tokens or output_tokens)
                            reported = getattr(event.usage, "input_tokens", None)
                            if isinstance(reported, int) and reported:
                                input_tokens = reported
                except Exception as error:  # noqa: BLE001 - an event of the wrong shape
                    raise failure(self.label, "malformed", f"a stream event could not be read "
                                  f"({type(error).__name__}: {error})") from None
                if piece:
                    parts.append(piece)
                    yield Delta(text=piece)
        except ProviderError:
            raise
        except Exception as error:  # noqa: BLE001 - SDK errors while reading the stream
            raise _translate(self.label, error, self.base_url) from None
        finally:
            await response.close()
        calls = [ToolCall(id=b["id"], name=b["name"],
                          arguments=tool_arguments(b["json"], self.label, b["name"]))
                 for _, b in sorted(blocks.items())]
        yield Completion(text="".join(parts), tool_calls=calls,
                         usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
                         provider=self.name, model=request.model, finish_reason=finish)


@functools.cache
def _takes_temperature() -> bool:
    # Recent SDKs (and models) dropped sampling parameters; older ones still take them.
    from anthropic.resources.messages import AsyncMessages

    return "temperature" in inspect.signature(AsyncMessages.create).parameters


def _turns(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for m in messages:
        blocks: list[dict[str, Any]]
        if m.role == "tool":
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id or "",
                                     "content": m.content}]
        elif m.role == "assistant":
            role = "assistant"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                       for c in m.tool_calls]
        else:
            role, blocks = "user", [{"type": "text", "text": said(m)}]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text",
                                                      "text": EMPTY_CONVERSATION}]})
    return turns


def _input_tokens(usage: Any) -> int:
    # Cached prompt tokens are reported apart; they are input all the same.
    return sum(int(getattr(usage, name, 0) or 0) for name in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def _usage(usage: Any) -> Usage:
    return Usage(input_tokens=_input_tokens(usage), output_tokens=int(usage.output_tokens or 0))


def _translate(label: str, error: Exception, base_url: str | None) -> ProviderError:
    import anthropic

    if isinstance(error, ProviderError):
        return error
    if isinstance(error, anthropic.APIStatusError):
        return http_failure(label, error.status_code, error_detail(error.body, error.message),
                            dict(error.response.headers))
    if isinstance(error, anthropic.APITimeoutError):
        return failure(label, "timeout", "the call timed out")
    if isinstance(error, anthropic.APIConnectionError):
        return failure(label, "connection",
                       f"could not connect to {base_url or 'the Anthropic API'}")
    if isinstance(error, anthropic.APIResponseValidationError | ValueError | KeyError |
                  TypeError | AttributeError | IndexError):
        return failure(label, "malformed", f"the reply could not be read ({type(error).__name__}"
                                           f": {error})")
    return failure(label, "server", f"{type(error).__name__}: {error}")

