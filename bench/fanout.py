"""How long a message takes to reach every WebSocket client in its room, for 10 and 100 clients.

Run from the repository root: ``python -m bench.fanout`` (``--help`` for the knobs). It takes
about 30 s on 2 cores; a full Platform (PostgreSQL, Valkey, Ray, gateway) runs under a temp
home and is stopped at the end. It exits with status 1 if any delivery is lost, repeated or out
of order.

What is measured: for each N, a fresh room is created over a WebSocket authenticated with the
admin token, then N clients connect (``websockets``, all in this process's one asyncio loop),
each sends ``hello`` and ``join``. Client 0 is also the sender: it posts messages whose text is
``time.monotonic_ns()`` taken just before the ``say`` frame is sent. Every client notes the
monotonic time at which each ``message_posted`` event frame reaches its reader, so

    delivery latency = receive time - send time        (one clock, one process)

covers gateway -> Ray room actor -> commit to PostgreSQL -> Redis publish -> gateway feed ->
each connection's subscription -> WebSocket -> client, including the time the one client loop
takes to get round to each frame (with 100 clients that is part of the figure). Two phases
per N, same room and clients, after a 10-message warm-up:

- ``paced``: one ``say`` every 1/``--rate`` s (open loop, replies not awaited): latency at a
  load the system should sustain;
- ``burst``: all ``say`` frames written at once. The gateway handles one connection's frames
  one at a time, so they queue in the sender's session: latency then includes that queue, and
  ``msg/s`` is the most one connection can post.

Columns: ``p50``/``p99``/``max`` delivery latency in ms over all N x M deliveries; ``ack p50``
is the sender's ``say`` -> ``ok`` time; ``deliv/s`` is deliveries (events received, summed
over clients) per second and ``msg/s`` messages per second, both over the span from the first
``say`` sent to the last delivery received. ``lost`` counts deliveries that never came (it
should be 0).

By default the platform runs in a child process, as it does in production (``salon up``), so
its gateway does not share a GIL with the N test clients; ``--inline`` runs it in this
process instead (the clients then slow the gateway down, and the other way round).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import lift_limits, per_second, quiet
from domain.ids import new_id
from infra.settings import Settings
from salon.platform import Platform

REPLY_DEADLINE = 60.0
START_DEADLINE = 180.0


# -- the platform, in a child process or in this one ----------------------------------------

def _platform(home: Path) -> Platform:
    # Explicit Nones: SALON_* variables in the environment must not point at real servers.
    return Platform(Settings(home=home, port=0, demo=False, database_url=None, redis_url=None,
                             ray_address=None))


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def serve(home: str, pipe: Connection) -> None:
    """Child process: start a platform, send (ws_url, admin token), stop when told to."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    quiet()
    platform = _platform(Path(home))
    try:
        running = platform.start()
        pipe.send((running.ws_url, running.admin_token, running.settings.database_url))
        try:
            pipe.recv()  # "stop", or EOFError when the parent is gone
        except EOFError:
            pass
    finally:
        platform.stop()


@contextmanager
def platform_at(home: Path, inline: bool) -> Iterator[tuple[str, str, str]]:
    """A running platform under ``home``: yields (WebSocket URL, admin token, database URL)."""
    if inline:
        platform = _platform(home)
        try:
            running = platform.start()
            yield running.ws_url, running.admin_token, str(running.settings.database_url)
        finally:
            platform.stop()
        return
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve, args=(str(home), theirs), name="salon-bench-platform")
    child.start()
    theirs.close()
    try:
        if not ours.poll(START_DEADLINE):
            raise TimeoutError(f"the platform did not start within {START_DEADLINE:.0f} s")
        try:
            ws_url, token, database_url = ours.recv()
        except EOFError:
            raise RuntimeError("the platform process failed to start; see its log above") \
                from None
        yield str(ws_url), str(token), str(database_url)
    finally:
        try:
            ours.send("stop")
        except OSError:
            pass
        child.join(60)
        if child.is_alive():
            child.terminate()  # SIGTERM: the child still stops its servers on the way out
            child.join(30)
        ours.close()


# -- clients -------------------------------------------------------------------------------

Reply = tuple[dict[str, Any], int]  # the ok or error frame, and when it arrived (monotonic ns)


class Client:
    """One WebSocket: requests by id, and the (sent, received) times of message events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.replies: dict[int, asyncio.Future[Reply]] = {}
        self.deliveries: list[tuple[int, int]] = []
        self.arrived = asyncio.Event()
        # Called with (event, monotonic ns received) for every message_posted event.
        self.on_message: Callable[[dict[str, Any], int], None] | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str) -> Client:
        client = cls(await connect(url, max_size=None, compression=None))
        await client.ok({"type": "hello", "token": token})
        return client

    async def _read(self) -> None:
        async for text in self.ws:
            received = time.monotonic_ns()
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "event":
                event = frame["event"]
                if event.get("kind") == "message_posted":
                    if self.on_message is not None:
                        self.on_message(event, received)
                    elif str(event["text"]).isdigit():
                        self.deliveries.append((int(event["text"]), received))
                        self.arrived.set()
            elif kind in ("ok", "error") and frame.get("id") in self.replies:
                self.replies.pop(frame["id"]).set_result((frame, received))

    async def send(self, frame: dict[str, Any]) -> asyncio.Future[Reply]:
        """Write ``frame`` with a fresh id; the future gets the frame answering it."""
        request_id = next(self.ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = future
        await self.ws.send(json.dumps({**frame, "id": request_id}))
        return future

    async def ok(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` and return its result; raise on an error frame."""
        reply, _ = await asyncio.wait_for(await self.send(frame), REPLY_DEADLINE)
        if reply["type"] != "ok":
            raise RuntimeError(f"{frame['type']} failed: {reply}")
        result: dict[str, Any] = reply["result"]
        return result

    async def wait_for(self, deliveries: int, until: float) -> None:
        """Wait until ``deliveries`` message events arrived, or monotonic time ``until``."""
        while len(self.deliveries) < deliveries and time.monotonic() < until:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), until - time.monotonic())
            except TimeoutError:
                return

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


# -- one phase: M messages from client 0, received by all N --------------------------------

@dataclass
class Phase:
    """What one phase measured."""

    clients: int
    mode: str
    messages: int
    latencies_ms: list[float] = field(default_factory=list)
    acks_ms: list[float] = field(default_factory=list)
    errors: int = 0
    lost: int = 0
    repeated: int = 0
    disordered: int = 0
    seconds: float = 0.0

    @property
    def faults(self) -> str:
        """What went wrong, if anything: every message should reach every client once, in order."""
        found = {"say errors": self.errors, "lost": self.lost, "repeated": self.repeated,
                 "out of order": self.disordered}
        return ", ".join(f"{count} {what}" for what, count in found.items() if count)

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def phase(clients: list[Client], room: str, mode: str, messages: int, rate: float,
                deadline: float) -> Phase:
    """Post ``messages`` from ``clients[0]`` (paced at ``rate``/s, or all at once if 0)."""
    for client in clients:
        client.deliveries.clear()
    sender = clients[0]
    sends: list[tuple[int, asyncio.Future[Reply]]] = []
    first = time.monotonic_ns()
    for i in range(messages):
        if rate > 0:
            due = first + int(i * 1e9 / rate)
            await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
        sent = time.monotonic_ns()
        sends.append((sent, await sender.send({"type": "say", "room": room, "text": str(sent)})))
    until = time.monotonic() + deadline
    replies = await asyncio.wait_for(asyncio.gather(*(future for _, future in sends)), deadline)
    for client in clients:
        await client.wait_for(messages, until)
    result = Phase(len(clients), mode, messages)
    result.errors = sum(1 for frame, _ in replies if frame["type"] != "ok")
    result.acks_ms = [(at - sent) / 1e6 for (sent, _), (_, at) in zip(sends, replies, strict=False)]
    last = first
    for client in clients:
        ours = [(sent, received) for sent, received in client.deliveries if sent >= first]
        texts = [sent for sent, _ in ours]
        result.lost += max(0, messages - len(set(texts)))
        result.repeated += len(texts) - len(set(texts))
        result.disordered += sum(1 for a, b in zip(texts, texts[1:], strict=False) if b < a)
        for sent, received in ours:
            result.latencies_ms.append((received - sent) / 1e6)
            last = max(last, received)
    result.seconds = (last - first) / 1e9
    return result


async def run_for(url: str, token: str, count: int, messages: int, rate: float,
                  deadline: float) -> list[Phase]:
    """A fresh room, ``count`` joined clients, a short warm-up, a paced phase then a burst."""
    room = f"fanout-{count}-{new_id()[:8]}"
    admin = await Client.open(url, token)
    clients: list[Client] = []
    try:
        await admin.ok({"type": "create_room", "name": room})
        started = time.monotonic()
        clients = list(await asyncio.gather(*(Client.open(url, token) for _ in range(count))))
        await asyncio.gather(*(c.ok({"type": "join", "room": room}) for c in clients))
        print(f"  {count} clients connected and joined {room} in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        await phase(clients, room, "warm-up", 10, 0, deadline)
        phases = []
        for mode, pace in ((f"paced {rate:g}/s", rate), ("burst", 0.0)):
            phases.append(await phase(clients, room, mode, messages, pace, deadline))
            print(f"  measured {count} clients, {mode}: {line(phases[-1])}", flush=True)
        return phases
    finally:
        await asyncio.gather(*(c.close() for c in [admin, *clients]), return_exceptions=True)


# -- the table ------------------------------------------------------------------------------

HEADER = (f"{'clients':>7}  {'mode':<12}  {'msgs':>5}  {'deliv':>6}  {'lost':>4}  {'p50 ms':>7}  "
          f"{'p99 ms':>7}  {'max ms':>7}  {'ack p50':>7}  {'deliv/s':>8}  {'msg/s':>6}")


def line(result: Phase) -> str:
    lat = result.latencies_ms
    return (f"{result.delivered:,} deliveries, p50 {quantile(lat, 0.5):.1f} ms, "
            f"p99 {quantile(lat, 0.99):.1f} ms, "
            f"{per_second(result.delivered, result.seconds):,.0f} deliveries/s")


def row(result: Phase) -> str:
    lat = result.latencies_ms
    return (f"{result.clients:>7}  {result.mode:<12}  {result.messages:>5}  "
            f"{result.delivered:>6,}  {result.lost:>4}  {quantile(lat, 0.5):>7.1f}  "
            f"{quantile(lat, 0.99):>7.1f}  {max(lat, default=0.0):>7.1f}  "
            f"{statistics.median(result.acks_ms) if result.acks_ms else 0.0:>7.1f}  "
            f"{per_second(result.delivered, result.seconds):>8,.0f}  "
            f"{per_second(result.messages, result.seconds):>6,.1f}")


async def bench(url: str, token: str, plan: list[tuple[int, int]], rate: float,
                deadline: float) -> list[Phase]:
    results: list[Phase] = []
    for count, messages in plan:
        results += await run_for(url, token, count, messages, rate, deadline)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Delivery latency to N WebSocket clients.")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100],
                        help="room sizes to measure")
    parser.add_argument("--messages", type=int, nargs="+", default=[200, 100],
                        help="messages per phase, one per room size (the last one repeats)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s of the paced phase")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds to wait for a phase's replies and deliveries")
    parser.add_argument("--inline", action="store_true",
                        help="run the platform in this process instead of a child process")
    args = parser.parse_args()
    quiet()
    # 100 clients share the admin token: lift the per-user connection and frame limits, which
    # would refuse them (this measures delivery, not the limits).
    lift_limits()
    counts = [args.messages[min(i, len(args.messages) - 1)] for i in range(len(args.clients))]
    plan = list(zip(args.clients, counts, strict=False))
    with tempfile.TemporaryDirectory(prefix="salon-bench-fanout-") as tmp:
        print(f"  starting a platform ({'in this process' if args.inline else 'child process'})"
              "...", flush=True)
        with platform_at(Path(tmp) / "home", args.inline) as (url, token, _):
            results = asyncio.run(bench(url, token, plan, args.rate, args.deadline))
    print()
    print(f"platform {'in this process' if args.inline else 'in a child process'}; "
          "latency = event frame received - say frame sent")
    print(HEADER)
    for result in results:
        print(row(result))
    faults = [f"{r.clients} clients, {r.mode}: {r.faults}" for r in results if r.faults]
    if faults:
        print("\nWRONG DELIVERIES: " + "; ".join(faults))
        sys.exit(1)


if __name__ == "__main__":
    main()
