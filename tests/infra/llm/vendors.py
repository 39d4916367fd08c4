"""A local HTTP server that speaks OpenAI's and Anthropic's wire formats, scripted per test.

Routes are ``/{name}/v1/chat/completions`` (OpenAI chat completions) and
``/{name}/v1/messages`` (Anthropic Messages), so one server plays several vendors: point the
OpenAI SDK at ``server.openai_url(name)`` and the Anthropic SDK at
``server.anthropic_url(name)``. Each name has a queue of answers; a request with none queued
gets the route's standing answer (``always``) or ``default``. Answers reply in JSON, or in
SSE when the request asked to stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """A successful answer: text (streamed in ``chunks``), tool calls and usage."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id","name","arguments"}
    input_tokens: int = 11
    output_tokens: int = 7
    chunks: list[str] | None = None          # how the text streams; default: word by word
    usage_in_stream: bool = True


@dataclass
class Fail:
    """An HTTP error answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Raw:
    """Any body at all (for malformed answers)."""

    body: str
    content_type: str = "application/json"
    status: int = 200


@dataclass
class Stall:
    """Streams ``first`` then sends nothing more until the client goes away."""

    first: str = "thinking"


@dataclass
class Seen:
    """One request as the server received it."""

    name: str
    vendor: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class Vendors:
    """The server: start it, queue answers, read what it was sent."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Any]] = defaultdict(deque)
        self.default: Any = Reply(text="Hello from the local vendor")
        self.always: dict[str, Any] = {}          # a standing answer for a route
        self.seen: list[Seen] = []
        self.disconnected = asyncio.Event()
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Vendors:
        app = web.Application()
        app.router.add_post("/{name}/v1/chat/completions", self._openai)
        app.router.add_post("/{name}/v1/messages", self._anthropic)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def openai_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def anthropic_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def queue(self, name: str, *answers: Any) -> None:
        self.queues[name].extend(answers)

    def requests(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.name == name]

    async def _take(self, request: web.Request, vendor: str) -> tuple[Any, dict[str, Any]]:
        name = request.match_info["name"]
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append(Seen(name, vendor, body, headers, time.monotonic()))
        self.arrived.set()
        queue = self.queues[name]
        if queue:
            return queue.popleft(), body
        return self.always.get(name, self.default), body

    # -- OpenAI chat completions ----------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        answer, body = await self._take(request, "openai")
        if not isinstance(answer, Reply | Stall):
            return _plain(answer)
        if isinstance(answer, Stall):
            return await self._stall(request, _openai_chunk(body, {"content": answer.first}))
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
            if answer.tool_calls:
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function",
                     "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                    for c in answer.tool_calls]
            return web.json_response({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if answer.tool_calls else "stop"}],
                "usage": {"prompt_tokens": answer.input_tokens,
                          "completion_tokens": answer.output_tokens,
                          "total_tokens": answer.input_tokens + answer.output_tokens}})
        events = [_openai_chunk(body, {"role": "assistant", "content": ""})]
        events += [_openai_chunk(body, {"content": piece}) for piece in _pieces(answer)]
        for index, call in enumerate(answer.tool_calls):
            arguments = json.dumps(call["arguments"])
            half = len(arguments) // 2
            events.append(_openai_chunk(body, {"tool_calls": [{
                "index": index, "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": arguments[:half]}}]}))
            events.append(_openai_chunk(body, {"tool_calls": [{
                "index": index, "function": {"arguments": arguments[half:]}}]}))
        finish = _openai_chunk(body, {})
        finish["choices"][0]["finish_reason"] = "tool_calls" if answer.tool_calls else "stop"
        events.append(finish)
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and answer.usage_in_stream:
            usage = _openai_chunk(body, {})
            usage["choices"] = []
            usage["usage"] = {"prompt_tokens": answer.input_tokens,
                              "completion_tokens": answer.output_tokens,
                              "total_tokens": answer.input_tokens + answer.output_tokens}
            events.append(usage)
        response = await _sse(request)
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # -- Anthropic Messages ---------------------------------------------------------------

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        answer, body = await self._take(request, "anthropic")
        if not isinstance(answer, Reply | Stall):
            return _plain(answer)
        if isinstance(answer, Stall):
            return await self._stall(request, {"type": "message_start", "message": _message(
                body, [], None, 5, 1)}, event="message_start")
        stop = "tool_use" if answer.tool_calls else "end_turn"
        if not body.get("stream"):
            content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}] \
                if answer.text else []
            content += [{"type": "tool_use", "id": c["id"], "name": c["name"],
                         "input": c["arguments"]} for c in answer.tool_calls]
            return web.json_response(_message(body, content, stop, answer.input_tokens,
                                              answer.output_tokens))
        events: list[dict[str, Any]] = [
            {"type": "message_start",
             "message": _message(body, [], None, answer.input_tokens, 1)},
            {"type": "ping"}]
        index = 0
        if answer.text:
            events.append({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}
                       for piece in _pieces(answer)]
            events.append({"type": "content_block_stop", "index": 0})
            index = 1
        for offset, call in enumerate(answer.tool_calls):
            at = index + offset
            arguments = json.dumps(call["arguments"])
            half = len(arguments) // 2
            events.append({"type": "content_block_start", "index": at, "content_block": {
                "type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}})
            for part in (arguments[:half], arguments[half:]):
                events.append({"type": "content_block_delta", "index": at,
                               "delta": {"type": "input_json_delta", "partial_json": part}})
            events.append({"type": "content_block_stop", "index": at})
        events.append({"type": "message_delta",
                       "delta": {"stop_reason": stop, "stop_sequence": None},
                       "usage": {"output_tokens": answer.output_tokens}})
        events.append({"type": "message_stop"})
        response = await _sse(request)
        for event in events:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                                 .encode())
        await response.write_eof()
        return response

    async def _stall(self, request: web.Request, first: dict[str, Any],
                     event: str | None = None) -> web.StreamResponse:
        response = await _sse(request)
        prefix = f"event: {event}\n" if event else ""
        await response.write(f"{prefix}data: {json.dumps(first)}\n\n".encode())
        try:
            # Keep the connection open with SSE comments until the client hangs up.
            while True:
                await asyncio.sleep(0.02)
                await response.write(b": waiting\n\n")
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        except (ConnectionError, RuntimeError):   # aiohttp: "Cannot write to closing transport"
            self.disconnected.set()
        return response


def _pieces(answer: Reply) -> list[str]:
    if answer.chunks is not None:
        return answer.chunks
    words = answer.text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words) if w or i == 0] \
        if answer.text else []


def _openai_chunk(body: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": body["model"], "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": None}]}


def _message(body: dict[str, Any], content: list[dict[str, Any]], stop: str | None,
             input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


async def _sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


def _plain(answer: Fail | Raw) -> web.Response:
    if isinstance(answer, Raw):
        return web.Response(status=answer.status, body=answer.body.encode(),
                            content_type=answer.content_type.split(";")[0])
    body = answer.body if answer.body is not None else {
        "error": {"type": "api_error", "message": f"status {answer.status}"}}
    return web.json_response(body, status=answer.status, headers=answer.headers)
