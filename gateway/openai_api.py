"""The OpenAI-compatible HTTP API: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Served by aiohttp on the gateway's port (``gateway/front.py`` says why and how). A call is an
ordinary room conversation: the caller's last user message is a ``say`` in a room (named by the
``X-Salon-Room`` header or the ``user`` field, else a new private room of the caller, named in
the ``X-Salon-Room`` response header), then an ``invoke`` of the agent; the reply is the agent's
message. Every step runs through the same frame handlers, policy and limits as the WebSocket,
so the permissions are the same and the log holds the exchange like any chat.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from domain import policy
from domain.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    SalonError,
    Unauthenticated,
    Unavailable,
)
from domain.ids import agent_id, new_id
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import HANDLERS
from gateway.services import Services
from infra.llm.tokens import count_tokens
from projections import catalogue

ROOM_HEADER = "X-Salon-Room"
STATUS = {Invalid: 400, Unauthenticated: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
          RateLimited: 429, Unavailable: 503}
KINDS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
         429: "rate_limit_error", 503: "service_unavailable"}


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content
                           if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel, extra="allow"):
    """What we read of a chat completion request; sampling fields are accepted and ignored
    (the agent's definition decides them)."""
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    user: str | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    stream_options: dict[str, Any] | None = None


def failure(status: int, message: str, code: str) -> web.Response:
    """An error in OpenAI's shape."""
    return web.json_response({"error": {"message": message, "type": KINDS.get(status, "error"),
                                        "param": None, "code": code}}, status=status)


class Shim:
    """What a frame handler reaches of a connection: only the services."""

    def __init__(self, services: Services) -> None:
        self.services = services


class OpenAIApi:
    """The routes, over the gateway's services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.conn = Shim(services)
        self.running: dict[str, int] = {}
        self.app = web.Application(client_max_size=self.settings.openai_max_body_bytes,
                                   middlewares=[self._errors])
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)

    async def start(self) -> Callable[[], Any]:
        """Prepare the app; returns the protocol factory the front hands connections to."""
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        return server

    async def stop(self) -> None:
        await self.runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except SalonError as error:
            status = next((s for cls, s in STATUS.items() if isinstance(error, cls)), 500)
            return failure(status, str(error), error.code)
        except web.HTTPRequestEntityTooLarge:
            return failure(413, f"the request body is larger than "
                           f"{self.settings.openai_max_body_bytes} bytes", "too_large")
        except web.HTTPException as error:
            return failure(error.status, error.reason or "", "http")

    async def _principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise Unauthenticated("send a Salon token as `Authorization: Bearer NAME.SECRET`")
        user = await asyncio.to_thread(self.services.accounts.authenticate, token)
        self.services.limits.frame(user)
        return user

    # -- models -------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        """The agents the caller may talk to, as OpenAI models."""
        user = await self._principal(request)
        agents = await asyncio.to_thread(catalogue.agents, self.services.store)
        data = []
        for agent in agents:
            facts = policy.AgentFacts(agent["name"], str(agent.get("owner_id")),
                                      bool(agent.get("joinable")))
            if agent.get("status") == "stopped" or not policy.may_use_agent(user, facts):
                continue
            data.append({"id": agent["name"], "object": "model", "created": _epoch(agent),
                         "owned_by": str(agent.get("owner_id"))})
        return web.json_response({"object": "list", "data": data})

    # -- chat completions ---------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """Answer as the agent named by ``model``."""
        user = await self._principal(request)
        chat = await self._parse(request)
        _, agent, _ = await self.services.agent_facts(chat.model)
        policy.require_agent_user(user, agent, "talk to it")
        if self.running.get(user.name, 0) >= self.settings.openai_calls_per_user:
            raise RateLimited(f"{user.name} has {self.settings.openai_calls_per_user} calls "
                              "running, the most at once; wait for one to finish")
        self.running[user.name] = self.running.get(user.name, 0) + 1
        try:
            return await self._converse(request, user, chat)
        finally:
            self.running[user.name] -= 1
            if not self.running[user.name]:
                del self.running[user.name]

    async def _parse(self, request: web.Request) -> ChatRequest:
        body = await request.read()
        try:
            raw = json.loads(body)
        except ValueError:
            raise Invalid("the body is not JSON; send a chat completion request") from None
        if not isinstance(raw, dict):
            raise Invalid("the body must be a JSON object")
        try:
            chat = ChatRequest.model_validate(raw)
        except ValidationError as error:
            raise Invalid(f"chat completion request: {p.describe_plain(error)}") from None
        if chat.tools or chat.functions:
            raise Invalid("tools are not supported here: a Salon agent uses the tools its owner "
                          "granted it; send the request without `tools`")
        if len(chat.messages) > self.settings.openai_max_messages:
            raise Invalid(f"{len(chat.messages)} messages; at most "
                          f"{self.settings.openai_max_messages} are accepted")
        if not any(m.role == "user" and m.text().strip() for m in chat.messages):
            raise Invalid("no user message with text; the last user message is what is said")
        return chat

    async def _room(self, request: web.Request, user: Principal, chat: ChatRequest) -> str:
        """The conversation's room, created (private, the caller's) if it does not exist."""
        name = request.headers.get(ROOM_HEADER) or chat.user
        if name is None:
            name = f"openai-{new_id()[:12]}".lower()
        try:
            await self.services.room(name)
        except NotFound:
            await self._handle(p.CreateRoom(type="create_room", name=name, visibility="private",
                                            topic=f"OpenAI-compatible chat with {chat.model}"),
                               user)
        _, _, info = await self.services.room_facts(name)
        if chat.model not in info["members"]:
            await self._handle(p.AddAgent(type="add_agent", room=name, agent=chat.model), user)
        return name

    async def _handle(self, frame: Any, user: Principal) -> dict[str, Any]:
        result = await HANDLERS[frame.type](frame, user, self.conn)
        assert result is not None
        return result

    async def _converse(self, request: web.Request, user: Principal,
                        chat: ChatRequest) -> web.StreamResponse:
        try:
            room = await self._room(request, user, chat)
        except ValidationError as error:
            raise Invalid(f"room name: {p.describe_plain(error)}") from None
        text = next(m.text() for m in reversed(chat.messages) if m.role == "user")
        turn = Turn(self.services, room)
        await self.services.feed.follow(room, turn.on_frame)
        try:
            await self._handle(p.Say(type="say", room=room, text=text), user)
            invoked = await self._handle(p.Invoke(type="invoke", room=room, agent=chat.model),
                                         user)
            turn.turn_id = str(invoked["turn_id"])
            answer_id = f"chatcmpl-{turn.turn_id}"
            headers = {ROOM_HEADER: room}
            if chat.stream:
                return await self._stream(request, chat, turn, answer_id, headers, user, text)
            reply = await turn.finished(self.settings.openai_reply_seconds)
            content = await self._text(turn, reply, user)
            usage = await self._usage(chat, turn, text, content)
            return web.json_response({
                "id": answer_id, "object": "chat.completion", "created": int(time.time()),
                "model": chat.model, "choices": [{
                    "index": 0, "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop" if reply else "content_filter"}],
                "usage": usage}, headers=headers)
        finally:
            await self.services.feed.unfollow(room, turn.on_frame)

    async def _stream(self, request: web.Request, chat: ChatRequest, turn: Turn, answer_id: str,
                      headers: dict[str, str], user: Principal, said: str
                      ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        created = int(time.time())

        async def send(delta: dict[str, Any], finish: str | None = None,
                       usage: dict[str, int] | None = None) -> None:
            chunk: dict[str, Any] = {"id": answer_id, "object": "chat.completion.chunk",
                                     "created": created, "model": chat.model,
                                     "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]}
            if usage is not None:
                chunk["choices"], chunk["usage"] = [], usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        streamed = False
        try:
            async for delta in turn.deltas(self.settings.openai_reply_seconds):
                streamed = True
                await send({"content": delta})
            reply = turn.reply_id
            content = await self._text(turn, reply, user)
            if not streamed and content:
                await send({"content": content})
            await send({}, "stop" if reply else "content_filter")
            if (chat.stream_options or {}).get("include_usage"):
                await send({}, usage=await self._usage(chat, turn, said, content))
        except SalonError as error:
            body = {"error": {"message": str(error), "type": "service_unavailable",
                              "code": error.code}}
            await response.write(f"data: {json.dumps(body)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _text(self, turn: Turn, message_id: str | None, user: Principal) -> str:
        if message_id is None:
            return ""
        if message_id in turn.texts:
            return turn.texts[message_id]
        found = await self._handle(p.History(type="history", room=turn.room, limit=50), user)
        for frame in found["events"]:
            if frame["event"].get("message_id") == message_id:
                return str(frame["event"].get("text", ""))
        return ""

    async def _usage(self, chat: ChatRequest, turn: Turn, said: str,
                     content: str) -> dict[str, int]:
        called = await asyncio.to_thread(self._model_called, chat.model, turn.turn_id)
        if called is not None:
            prompt, completion = called
        else:
            prompt = count_tokens(said, "", chat.model)
            completion = count_tokens(content, "", chat.model)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _model_called(self, agent: str, turn_id: str | None) -> tuple[int, int] | None:
        """Tokens of the turn's model calls as its ModelCalled events recorded them."""
        events = self.services.store.events(agent_id(agent), limit=200, newest=True)
        calls = [e for e in events if type(e).__name__ == "ModelCalled"
                 and getattr(e, "turn_id", None) == turn_id]
        if not calls:
            return None
        return (sum(int(e.input_tokens) for e in calls),
                sum(int(e.output_tokens) for e in calls))


class Turn:
    """The frames of one agent turn in a room, as the room feed delivers them."""

    def __init__(self, services: Services, room: str) -> None:
        self.services, self.room = services, room
        self.turn_id: str | None = None
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.texts: dict[str, str] = {}
        self.reply_id: str | None = None

    def on_frame(self, position: int | None, frame: str) -> None:
        decoded = json.loads(frame)
        event = decoded.get("event") or {}
        if event.get("kind") == "message_posted":
            self.texts[str(event.get("message_id"))] = str(event.get("text", ""))
        if decoded.get("type") == "ephemeral":
            self.frames.put_nowait(decoded)

    async def deltas(self, seconds: float) -> Any:
        """The turn's streamed text; ends when the turn completes (``reply_id`` is set)."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"the agent did not answer within {seconds:g} seconds "
                                  "(SALON_OPENAI_REPLY_SECONDS); its reply will still be in "
                                  f"room {self.room!r}")
            try:
                frame = await asyncio.wait_for(self.frames.get(), remaining)
            except TimeoutError:
                continue
            if frame.get("turn_id") != self.turn_id:
                continue
            kind = frame.get("kind")
            if kind == "agent_token":
                yield str(frame.get("delta", ""))
            elif kind == "turn_completed":
                self.reply_id = frame.get("message_id")
                return
            elif kind == "turn_failed":
                raise Unavailable(f"the agent's turn failed: {frame.get('error')}")

    async def finished(self, seconds: float) -> str | None:
        """The id of the agent's reply once the turn completed (None: nothing was posted)."""
        async for _ in self.deltas(seconds):
            pass
        return self.reply_id


def _epoch(agent: dict[str, Any]) -> int:
    from datetime import datetime

    value = agent.get("created_at")
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError:
        return 0
