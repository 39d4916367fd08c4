"""What the platform adds to an agent's turn around a model that answers at once.

Run from the repository root: ``python -m bench.turn_overhead`` (``--help`` for the knobs).
A full Platform (PostgreSQL, Valkey, Ray, gateway) runs in this process under a temp home,
with a local OpenAI-compatible server (stdlib asyncio, no work per request) that answers
every chat completion at once with a short streamed reply. One WebSocket client invokes the
agent ``--turns`` times, one turn at a time, and notes when each reply's ``message_posted``
event arrives:

    turn latency     = invoke frame sent -> the reply's message_posted event received
    provider latency = the turn's ModelCalled.latency_ms: the actor's time inside
                       provider.stream (SDK, HTTP to the local server, the guard), which
                       also covers publishing each delta as an agent_token ephemeral
    overhead         = turn latency - provider latency

The overhead is the platform's share: gateway, Ray calls, the TurnStarted/ModelCalled/
TurnCompleted saves, the context read, the room actor's post and the fan-out back to the
client. The same is measured for the ``scripted`` provider
(which answers in-process) for comparison. Figures are p50/p99/max in ms after
``--warmup`` turns; on a shared 2-core machine they move by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import quiet
from domain.agents import Agent
from domain.ids import agent_id
from infra.settings import Settings
from salon.platform import Platform

DEADLINE = 60.0
WORDS = ["Instant ", "replies ", "cost ", "nothing ", "here."]


# -- a model server that answers at once --------------------------------------------------

def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def _answer(request: dict[str, Any]) -> tuple[bytes, str]:
    model = str(request.get("model", "m"))
    usage = {"prompt_tokens": 20, "completion_tokens": len(WORDS), "total_tokens": 25}
    if not request.get("stream"):
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "".join(WORDS)}}], "usage": usage}
        return json.dumps(body).encode(), "application/json"
    parts = [_chunk(model, {"role": "assistant", "content": ""})]
    parts += [_chunk(model, {"content": word}) for word in WORDS]
    parts.append(_chunk(model, {}, "stop"))
    last = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [], "usage": usage}
    parts += [f"data: {json.dumps(last)}\n\n".encode(), b"data: [DONE]\n\n"]
    return b"".join(parts), "text/event-stream"


class InstantModel:
    """The server's connections, so it can close them all and let their handlers end."""

    def __init__(self) -> None:
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection's requests until it closes."""
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        try:
            await _serve(reader, writer)
        finally:
            self.writers.discard(writer)

    async def close(self) -> None:
        """Hang up every connection and wait for the handlers to finish."""
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.gather(*self.handlers, return_exceptions=True)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:                                  # keep-alive: many requests a connection
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body, kind = _answer(json.loads(await reader.readexactly(length) or b"{}"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\nConnection: keep-alive\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


# -- a client that times turns ------------------------------------------------------------

class Client:
    """One WebSocket: requests by id; when each agent message arrived (monotonic ns)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.posted: dict[str, list[int]] = {}
        self.arrived = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            received = time.monotonic_ns()
            frame = json.loads(text)
            if frame.get("type") == "event" and frame["event"].get("kind") == "message_posted":
                self.posted.setdefault(frame["event"]["author_id"], []).append(received)
                self.arrived.set()
            elif frame.get("type") in ("ok", "error") and frame.get("id") in self.replies:
                self.replies.pop(frame["id"]).set_result(frame)

    async def ok(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame``; return its result, raising on an error frame."""
        request_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = future
        await self.ws.send(json.dumps({**frame, "id": request_id}))
        reply = await asyncio.wait_for(future, DEADLINE)
        if reply["type"] != "ok":
            raise RuntimeError(f"{frame['type']} failed: {reply}")
        result: dict[str, Any] = reply["result"]
        return result

    async def message_from(self, author: str, count: int) -> int:
        """When ``author``'s ``count``-th message arrived (waiting for it)."""
        end = time.monotonic() + DEADLINE
        while len(self.posted.get(author, [])) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), max(0.0, end - time.monotonic()))
        return self.posted[author][count - 1]


@dataclass
class Turns:
    """Per-turn figures in ms."""

    turn: list[float]
    provider: list[float]

    @property
    def overhead(self) -> list[float]:
        return [t - p for t, p in zip(self.turn, self.provider, strict=True)]


async def measure(platform: Platform, client: Client, room: str, definition: dict[str, Any],
                  turns: int, warmup: int) -> Turns:
    """Invoke the agent ``warmup + turns`` times, one at a time; keep the last ``turns``."""
    name = str(definition["name"])
    await client.ok({"type": "create_agent", "definition": definition})
    await client.ok({"type": "add_agent", "room": room, "agent": name})
    ids: list[str] = []
    took: list[float] = []
    for index in range(warmup + turns):
        sent = time.monotonic_ns()
        reply = await client.ok({"type": "invoke", "room": room, "agent": name,
                                 "prompt": f"turn {index}"})
        arrived = await client.message_from(name, index + 1)
        ids.append(str(reply["turn_id"]))
        took.append((arrived - sent) / 1e6)
    assert platform.store is not None
    events = await asyncio.to_thread(platform.store.events, agent_id(name))
    # A turn's own model calls only (several with tool rounds): the memory work after a turn
    # (ratings, facts, reflection) records ModelCalled with the same turn id.
    latency: dict[str, float] = {}
    for e in events:
        if isinstance(e, Agent.ModelCalled) and (e.context or {}).get("purpose", "turn") == "turn":
            latency[e.turn_id] = latency.get(e.turn_id, 0.0) + float(e.latency_ms)
    return Turns(turn=took[warmup:], provider=[latency[i] for i in ids[warmup:]])


def _row(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"  {label:<18} p50 {statistics.median(ordered):8.2f}   p99 {p99:8.2f}   "
            f"max {ordered[-1]:8.2f}")


async def run(platform: Platform, ws_url: str, token: str, turns: int, warmup: int) -> None:
    model = InstantModel()
    server = await asyncio.start_server(model.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ws = await connect(ws_url, max_size=None, compression=None)
    client = Client(ws)
    await client.ok({"type": "hello", "token": token})
    room = "bench-turns"
    await client.ok({"type": "create_room", "name": room, "topic": "turn overhead"})
    await client.ok({"type": "join", "room": room})
    agents = {
        "openai-compatible": {"name": "instant", "provider": "openai-compatible",
                              "model": "instant", "base_url": f"http://127.0.0.1:{port}/v1"},
        "scripted": {"name": "scripted", "script": ["".join(WORDS)]},
    }
    print(f"{turns} turns each after {warmup} warm-up turns; ms")
    for label, definition in agents.items():
        figures = await measure(platform, client, room, definition, turns, warmup)
        print(f"{label}:")
        print(_row("turn latency", figures.turn))
        print(_row("provider latency", figures.provider))
        print(_row("overhead", figures.overhead))
    await ws.close()
    client.reader.cancel()
    server.close()
    await model.close()
    await server.wait_closed()


def main() -> None:
    """Parse the options, start a platform under a temp home, measure, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200,
                        help="measured turns per provider (200: enough for a p99)")
    parser.add_argument("--warmup", type=int, default=5, help="turns not measured first")
    options = parser.parse_args()
    quiet()
    with tempfile.TemporaryDirectory(prefix="salon-bench-") as home:
        # Explicit Nones: SALON_* variables in the environment must not point at real servers.
        platform = Platform(Settings(home=Path(home), port=0, demo=False, database_url=None,
                                     redis_url=None, ray_address=None))
        try:
            running = platform.start()
            asyncio.run(run(platform, running.ws_url, running.admin_token, options.turns,
                            options.warmup))
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
