"""A reader that never reads, in a room receiving many events: is it cut off, does the gateway's
memory stay bounded, and do the other clients' deliveries stay as fast as without it?

Run from the repository root: ``python -m bench.slow_reader`` (``--events``, ``--readers``).
A full Platform runs in this process under a temporary home. Two phases, same process, same
room size: ``baseline`` (N readers) and ``slow`` (the same N readers plus one connection that
sends ``hello`` and ``join`` and then never reads; its client stops reading the socket after
one frame). In each phase the admin posts ``--events`` messages of 2 kB, 50 in flight at a
time; every reader notes when each message arrives. Printed per phase: delivery p50/p99 over
all readers (send -> arrival, one clock), the process's resident memory before and after
(``VmRSS``: gateway, actors' driver side and clients together), and, for ``slow``, whether and
after how many posts the gateway disconnected the slow reader. The ratio line compares the
slow phase's p99 with the baseline's. Exits 1 if the slow reader was never disconnected or a
reader lost an event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench import quiet


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def reader(url: str, token: str, room: str, arrivals: dict[str, float],
                 ready: asyncio.Event) -> Any:
    ws = await connect(url, max_size=None)
    await ws.send(json.dumps({"type": "hello", "token": token, "id": 1}))
    await ws.send(json.dumps({"type": "join", "room": room, "id": 2}))

    async def read() -> None:
        async for text in ws:
            frame = json.loads(text)
            if frame.get("id") == 2:
                ready.set()
            event = frame.get("event") or {}
            if event.get("kind") == "message_posted":
                arrivals[event["text"][:24]] = time.monotonic()

    return ws, asyncio.get_running_loop().create_task(read())


async def phase(url: str, token: str, gateway: Any, room: str, readers: int, events: int,
                slow: bool) -> dict[str, Any]:
    admin = await connect(url, max_size=None)
    await admin.send(json.dumps({"type": "hello", "token": token, "id": 0}))
    await admin.recv()
    await admin.send(json.dumps({"type": "create_room", "name": room, "id": 1}))
    await admin.recv()
    logs: list[dict[str, float]] = [{} for _ in range(readers)]
    ready = [asyncio.Event() for _ in range(readers)]
    clients = [await reader(url, token, room, logs[i], ready[i]) for i in range(readers)]
    for event in ready:
        await event.wait()
    sloth = None
    if slow:
        sloth = await connect(url, max_queue=1, max_size=None)
        await sloth.send(json.dumps({"type": "hello", "token": token, "id": 1}))
        await sloth.send(json.dumps({"type": "join", "room": room, "id": 2}))
    before = rss_mib()
    sent: dict[str, float] = {}
    cut_at = None
    replies: asyncio.Queue[str] = asyncio.Queue()

    async def acks() -> None:
        async for text in admin:
            await replies.put(text)

    ack_task = asyncio.get_running_loop().create_task(acks())
    count = refused = 0
    while count < events:
        batch = min(50, events - count)
        for _ in range(batch):
            key = f"{count:08d}-{time.monotonic_ns()}"[:24].ljust(24, "-")
            sent[key] = time.monotonic()
            await admin.send(json.dumps({"type": "say", "room": room, "id": 10 + count,
                                         "text": key + "x" * 2_000}))
            count += 1
        for _ in range(batch):
            reply = json.loads(await replies.get())
            if reply.get("type") == "error":
                refused += 1
        if slow and cut_at is None and sum(len(v) for v in
                                           gateway.connections.by_user.values()) <= readers + 1:
            cut_at = count
    deadline = time.monotonic() + 60
    while any(len(log) < events for log in logs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    after = rss_mib()
    latencies = sorted((log[k] - sent[k]) * 1000 for log in logs for k in log if k in sent)
    lost = readers * events - len(latencies)
    if lost:
        order = sorted(sent)
        for i, log in enumerate(logs):
            missing = [n for n, k in enumerate(order) if k not in log]
            if missing:
                print(f"reader {i} missed {len(missing)} posts, "
                      f"numbers {missing[0]}..{missing[-1]}", file=sys.stderr)
    for ws, task in clients:
        task.cancel()
        await ws.close()
    ack_task.cancel()
    await admin.close()
    if sloth is not None:
        sloth.transport.abort()
    return {"p50": statistics.median(latencies), "p99": latencies[int(len(latencies) * .99)],
            "before": before, "after": after, "lost": lost, "cut_at": cut_at, "refused": refused}


async def run(platform: Any, readers: int, events: int) -> int:
    running = platform.running
    gateway = platform.gateway
    results = {}
    for label, slow in (("baseline", False), ("slow", True)):
        results[label] = await phase(running.ws_url, running.admin_token, gateway,
                                     f"bench-slow-{label}", readers, events, slow)
    print(f"\n{readers} readers, {events:,} events of 2 kB per phase")
    print(f"{'phase':10} {'p50 ms':>8} {'p99 ms':>8} {'RSS before':>11} {'RSS after':>10} "
          f"{'lost':>5} {'slow reader cut after':>22}")
    for label, r in results.items():
        cut = "-" if label == "baseline" else (f"{r['cut_at']:,} posts" if r["cut_at"]
                                               else "never")
        print(f"{label:10} {r['p50']:8.2f} {r['p99']:8.2f} {r['before']:9.0f} MiB "
              f"{r['after']:8.0f} MiB {r['lost']:5} {cut:>22}")
    ratio = results["slow"]["p99"] / results["baseline"]["p99"]
    print(f"p99 with a slow reader / without: {ratio:.2f}x")
    refused = sum(r["refused"] for r in results.values())
    if refused:
        print(f"{refused} posts were refused (see the gateway's log)")
    failed = results["slow"]["cut_at"] is None or refused or \
        any(r["lost"] for r in results.values())
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--readers", type=int, default=10)
    options = parser.parse_args()
    quiet()
    from infra.settings import Settings
    from salon.platform import Platform

    with tempfile.TemporaryDirectory() as home:
        # One admin posts as fast as it can: the per-principal frame rate is not under test.
        platform = Platform(Settings(home=Path(home), port=0, demo=False, database_url=None,
                                     redis_url=None, ray_address=None,
                                     frames_per_second=1e6, frame_burst=1_000_000))
        platform.start()
        try:
            status = asyncio.run(run(platform, options.readers, options.events))
        finally:
            platform.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
