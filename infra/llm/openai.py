"""OpenAI chat completions through the official ``openai`` SDK.

The same adapter speaks to every OpenAI-compatible endpoint (``compatible.py`` names the
presets): what differs is the base URL, the key variable, whether the server reports usage
while streaming, and how it takes a JSON-output request. The SDK's own retries are off; the
guard retries, so ``retry-after`` and fallbacks are handled in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from infra.llm.base import Completion, Delta, ModelRequest, ToolCall, Usage
from infra.llm.clients import cached, fingerprint
from infra.llm.failures import ProviderError, error_detail, failure, http_failure
from infra.llm.keys import read_key
from infra.llm.messages import said, system_prompt, tool_arguments
from infra.llm.models import ModelInfo, model_info

JsonMode = Literal["schema", "object", "prompt"]
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NO_KEY = "no-key-needed"  # the SDK insists on some key; keyless local servers ignore it


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one OpenAI-style server."""

    provider: str                          # our name for it: "openai", "groq", "ollama", …
    base_url: str | None                   # None: the SDK's default (api.openai.com)
    key_variable: str | None               # environment variable of the key
    key_required: bool = True
    official: bool = False                 # OpenAI itself: names, max_completion_tokens, …
    stream_usage: bool = True              # honours stream_options.include_usage
    json_mode: JsonMode = "object"


class OpenAIProvider:
    """One model at an OpenAI-style endpoint, behind Salon's provider interface."""

    def __init__(self, endpoint: Endpoint, model: str, timeout: float = 120.0) -> None:
        self.endpoint = endpoint
        self.name = endpoint.provider
        self.model = model
        self.label = f"{endpoint.provider}:{model}"
        self.timeout = timeout

    def _client(self) -> Any:
        import openai

        key = read_key(self.endpoint.key_variable) if self.endpoint.key_variable else None
        if key is None and self.endpoint.key_required:
            raise failure(self.label, "auth", f"no API key: set {self.endpoint.key_variable} "
                          "in the environment Salon runs in, or name another variable in "
                          "the agent's api_key_env")
        base_url = self.endpoint.base_url

        def build() -> Any:
            return openai.AsyncOpenAI(api_key=key or NO_KEY, base_url=base_url, max_retries=0,
                                      timeout=self.timeout)

        return cached(("openai", base_url, fingerprint(key), self.timeout), build)

    def _arguments(self, request: ModelRequest, info: ModelInfo) -> dict[str, Any]:
        official = self.endpoint.official
        messages: list[dict[str, Any]] = []
        system = system_prompt(request)
        if system:
            messages.append({"role": "system", "content": system})
        for m in request.messages:
            if m.role == "tool":
                if m.tool_call_id:
                    messages.append({"role": "tool", "tool_call_id": m.tool_call_id,
                                     "content": m.content})
                else:
                    messages.append({"role": "user",
                                     "content": f"Result of tool {m.name}: {m.content}"})
            elif m.role == "assistant":
                entry: dict[str, Any] = {"role": "assistant", "content": m.content or None}
                if m.tool_calls:
                    entry["tool_calls"] = [
                        {"id": c.id, "type": "function",
                         "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                        for c in m.tool_calls]
                messages.append(entry)
            elif official and m.name and NAME.match(m.name):
                messages.append({"role": "user", "content": m.content, "name": m.name})
            else:
                messages.append({"role": "user", "content": said(m)})
        arguments: dict[str, Any] = {"model": request.model, "messages": messages}
        if official and info.reasoning:
            arguments["max_completion_tokens"] = request.max_tokens
        else:
            arguments["max_tokens"] = request.max_tokens
            arguments["temperature"] = request.temperature
        if request.tools:
            arguments["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools]
        if request.json_schema is not None:
            if self.endpoint.json_mode == "schema":
                arguments["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "reply", "schema": request.json_schema, "strict": False}}
            elif self.endpoint.json_mode == "object":
                arguments["response_format"] = {"type": "json_object"}
        return arguments

    async def complete(self, request: ModelRequest) -> Completion:
        """The whole reply at once."""
        client = self._client()
        arguments = self._arguments(request, model_info(self.name, request.model))
        try:
            reply = await client.chat.completions.create(**arguments)
        except Exception as error:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise _translate(self.label, error, self.endpoint.base_url) from None
        try:
            choice = reply.choices[0]
            message = choice.message
            text = message.content or ""
            calls = [ToolCall(id=c.id or f"call-{i}", name=c.function.name,
                              arguments=tool_arguments(c.function.arguments, self.label,
                                                       c.function.name))
                     for i, c in enumerate(message.tool_calls or [])]
            usage = _usage(reply.usage)
            finish = choice.finish_reason
        except ProviderError:
            raise
        except Exception as error:  # noqa: BLE001 - the body was not a chat completion
            raise _malformed(self.label, error, reply) from None
        return Completion(text=text, tool_calls=calls, usage=usage or Usage(estimated=True),
                          provider=self.name, model=request.model, finish_reason=finish)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """Text deltas as the server sends them, then the whole reply with usage."""
        client = self._client()
        arguments = self._arguments(request, model_info(self.name, request.model))
        arguments["stream"] = True
        if self.endpoint.stream_usage:
            arguments["stream_options"] = {"include_usage": True}
        try:
            response = await client.chat.completions.create(**arguments)
        except Exception as error:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise _translate(self.label, error, self.endpoint.base_url) from None
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        finish: str | None = None
        try:
            async for chunk in response:
                try:
                    usage = _usage(getattr(chunk, "usage", None)) or usage
                    pieces: list[str] = []
                    for choice in chunk.choices or []:
                        delta = choice.delta
                        if delta is None:
                            continue
                        if delta.content:
                            pieces.append(delta.content)
                        for call in delta.tool_calls or []:
                            slot = calls.setdefault(call.index or 0,
                                                    {"id": "", "name": "", "arguments": ""})
                            slot["id"] = call.id or slot["id"]
                            if call.function is not None:
                                slot["name"] += call.function.name or ""
                                slot["arguments"] += call.function.arguments or ""
                        finish = choice.finish_reason or finish
                except Exception as error:  # noqa: BLE001 - a chunk of the wrong shape
                    raise _malformed(self.label, error, chunk) from None
                for piece in pieces:
                    parts.append(piece)
                    yield Delta(text=piece)
        except ProviderError:
            raise
        except Exception as error:  # noqa: BLE001 - SDK errors while reading the stream
            raise _translate(self.label, error, self.endpoint.base_url) from None
        finally:
            await response.close()
        tool_calls = [ToolCall(id=slot["id"] or f"call-{index}", name=slot["name"],
                               arguments=tool_arguments(slot["arguments"], self.label,
                                                        slot["name"]))
                      for index, slot in sorted(calls.items())]
        yield Completion(text="".join(parts), tool_calls=tool_calls,
                         usage=usage or Usage(estimated=True), provider=self.name,
                         model=request.model, finish_reason=finish)


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    prompt, completion = getattr(raw, "prompt_tokens", None), getattr(raw, "completion_tokens",
                                                                      None)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(input_tokens=prompt, output_tokens=completion)


def _malformed(label: str, error: Exception, body: Any) -> ProviderError:
    shape = type(body).__name__
    return failure(label, "malformed", f"the reply is not a chat completion ({shape}; "
                   f"{type(error).__name__}: {error})")


def _translate(label: str, error: Exception, base_url: str | None) -> ProviderError:
    import openai

    if isinstance(error, ProviderError):
        return error
    if isinstance(error, openai.APIStatusError):
        return http_failure(label, error.status_code, error_detail(error.body, error.message),
                            dict(error.response.headers))
    if isinstance(error, openai.APITimeoutError):
        return failure(label, "timeout", "the call timed out")
    if isinstance(error, openai.APIConnectionError):
        return failure(label, "connection",
                       f"could not connect to {base_url or 'the OpenAI API'}")
    if isinstance(error, openai.APIResponseValidationError | ValueError | KeyError | TypeError |
                  AttributeError | IndexError):
        return failure(label, "malformed", f"the reply could not be read ({type(error).__name__}"
                                           f": {error})")
    return failure(label, "server", f"{type(error).__name__}: {error}")

