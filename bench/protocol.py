"""The speed table of issue 14, measured through the public protocol, with its raw baseline.

Run from the repository root: ``python -m bench.protocol`` (``--help`` for the sizes); about
two minutes on 2 cores. A full Platform (PostgreSQL, Valkey, Ray, gateway) runs in a child
process under a temp home, as ``salon up`` runs it; every client is a real WebSocket client in
this process. The per-user frame rate limit is lifted for the run (it would cap the pipelined
rows at 100 frames/s), and so is the connection limit per user (100 clients share the admin
token). One run measures, in this order:

- ``raw commit``: psycopg on the platform's own PostgreSQL, one ``INSERT`` of a small row then
  ``COMMIT``, row after row on one connection: the floor of a durable write. It is measured
  at the start and again at the end; the table divides by the mean of the two.
- ``say, one at a time``: one connection, each ``say`` awaited (``ok``) before the next: p50
  and p99 of ``say`` -> ``ok``, and that p50 as a multiple of one raw commit.
- ``say, pipelined``: one connection keeps ``--window`` ``say`` frames in flight into one room:
  acknowledged messages per second, as a multiple of raw commits per second.
- ``8 rooms at once``: 8 connections, each pipelining into its own room, all at once: the
  total acknowledged per second.
- ``agent turn``: a person says ``@agent`` in a room; the time until the agent's message
  (``scripted`` provider, which answers at once) arrives as an event on the same connection.
- ``fan-out to 100``: 100 connections joined to one room, one ``say`` every 20 ms from one of
  them: the time from the ``say`` frame sent to each client's ``message_posted`` event.

The last row of issue 14's table (``bench.simulate``) is measured by ``python -m
bench.simulate``. On a shared 2-core machine figures move by tens of percent between runs;
ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import lift_limits, per_second, quiet
from bench.fanout import Client, platform_at, quantile, run_for
from domain.ids import new_id

RAW_TABLE = "bench_protocol_raw"


# -- the floor ------------------------------------------------------------------------------

@dataclass
class Raw:
    """One raw INSERT+COMMIT run."""

    per_second: float
    p50_ms: float


def raw_commits(database_url: str, rows: int) -> Raw:
    """``rows`` INSERT + COMMIT pairs on one connection."""
    took: list[float] = []
    with psycopg.connect(database_url) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} (id bigserial PRIMARY KEY, "
                     "body text NOT NULL)")
        conn.commit()
        started = time.perf_counter()
        for i in range(rows):
            before = time.perf_counter()
            conn.execute(f"INSERT INTO {RAW_TABLE} (body) VALUES (%s)", (f"row {i}",))
            conn.commit()
            took.append((time.perf_counter() - before) * 1e3)
        seconds = time.perf_counter() - started
    return Raw(per_second(rows, seconds), statistics.median(took))


# -- the protocol paths ------------------------------------------------------------------------

async def _room(client: Client, prefix: str) -> str:
    name = f"{prefix}-{new_id()[:8]}"
    await client.ok({"type": "create_room", "name": name})
    return name


async def sequential(url: str, token: str, says: int) -> list[float]:
    """``say`` -> ``ok`` in ms, one at a time."""
    client = await Client.open(url, token)
    try:
        room = await _room(client, "seq")
        took = []
        for i in range(says + 10):
            started = time.perf_counter()
            await client.ok({"type": "say", "room": room, "text": f"message {i}"})
            took.append((time.perf_counter() - started) * 1e3)
        return took[10:]
    finally:
        await client.close()


async def _pipeline(client: Client, room: str, says: int, window: int) -> None:
    """``says`` frames into ``room``, at most ``window`` unanswered at once."""
    slots = asyncio.Semaphore(window)
    pending = []

    async def one(i: int) -> None:
        try:
            await client.ok({"type": "say", "room": room, "text": f"message {i}"})
        finally:
            slots.release()

    for i in range(says):
        await slots.acquire()
        pending.append(asyncio.get_running_loop().create_task(one(i)))
    await asyncio.gather(*pending)


async def pipelined(url: str, token: str, connections: int, says: int, window: int) -> float:
    """Acknowledged ``say`` per second, in total, from ``connections`` into as many rooms."""
    clients = [await Client.open(url, token) for _ in range(connections)]
    try:
        rooms = [await _room(c, "pipe") for c in clients]
        await asyncio.gather(*(_pipeline(c, r, 20, window) for c, r in zip(clients, rooms,
                                                                            strict=True)))
        started = time.perf_counter()
        await asyncio.gather(*(_pipeline(c, r, says, window) for c, r in zip(clients, rooms,
                                                                             strict=True)))
        return per_second(connections * says, time.perf_counter() - started)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def turns(url: str, token: str, count: int) -> list[float]:
    """``say "@agent …"`` sent -> the agent's message event received, in ms."""
    client = await Client.open(url, token)
    try:
        room = await _room(client, "turn")
        agent = f"bot-{new_id()[:8]}"
        await client.ok({"type": "create_agent", "definition": {
            "name": agent, "script": ["at once"]}})
        await client.ok({"type": "add_agent", "room": room, "agent": agent})
        await client.ok({"type": "join", "room": room})
        replies: asyncio.Queue[int] = asyncio.Queue()
        client.on_message = lambda event, at: replies.put_nowait(at) \
            if event.get("author_id") == agent else None
        took = []
        for i in range(count + 5):
            sent = time.monotonic_ns()
            await client.ok({"type": "say", "room": room, "text": f"@{agent} turn {i}"})
            arrived = await asyncio.wait_for(replies.get(), 60)
            took.append((arrived - sent) / 1e6)
        return took[5:]
    finally:
        await client.close()


# -- the table ------------------------------------------------------------------------------

def _row(path: str, now: str, ratio: str, target: str, met: bool) -> str:
    return f"| {path} | {now} | {ratio} | {target} | {'yes' if met else 'no'} |"


async def measure(url: str, token: str, database_url: str, options: argparse.Namespace,
                  ) -> list[str]:
    # A fresh platform is busy for a while (projections catch up, the embedder loads).
    print(f"  settling for {options.settle:g} s ...", flush=True)
    await asyncio.sleep(options.settle)
    print("  raw commits ...", flush=True)
    await asyncio.to_thread(raw_commits, database_url, options.raw // 4)  # warm-up
    first = await asyncio.to_thread(raw_commits, database_url, options.raw)
    print("  say, one at a time ...", flush=True)
    seq = await sequential(url, token, options.says)
    print("  say, pipelined ...", flush=True)
    one = await pipelined(url, token, 1, options.pipelined, options.window)
    print("  8 rooms at once ...", flush=True)
    eight = await pipelined(url, token, 8, options.pipelined // 4, options.window)
    print("  agent turns ...", flush=True)
    turn = await turns(url, token, options.turns)
    print("  fan-out to 100 clients ...", flush=True)
    fan = [p for p in await run_for(url, token, 100, options.fanout, 50.0, 60.0)
           if p.mode.startswith("paced")][0]
    last = await asyncio.to_thread(raw_commits, database_url, options.raw)
    rate = (first.per_second + last.per_second) / 2
    commit = (first.p50_ms + last.p50_ms) / 2
    p50, p99 = quantile(seq, 0.5), quantile(seq, 0.99)
    turn50 = quantile(turn, 0.5)
    fan50, fan99 = quantile(fan.latencies_ms, 0.5), quantile(fan.latencies_ms, 0.99)
    return [
        f"raw INSERT+COMMIT on the platform's PostgreSQL: {rate:,.0f} commits/s, p50 "
        f"{commit:.2f} ms (start {first.per_second:,.0f}/s, end {last.per_second:,.0f}/s)",
        "",
        "| path | now | x raw | target | met |",
        "| --- | --- | --- | --- | --- |",
        _row("`say` acknowledged, one at a time", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
             f"{p50 / commit:.1f}x one commit", "p50 <= 5x one raw commit", p50 <= 5 * commit),
        _row("`say` pipelined from one connection", f"{one:,.0f}/s", f"{one / rate:.2f}x",
             ">= 1x raw commits/s", one >= rate),
        _row("8 connections into 8 rooms at once", f"{eight:,.0f}/s in total",
             f"{eight / rate:.2f}x", ">= 2x raw commits/s", eight >= 2 * rate),
        _row("agent turn (`@agent` -> its message, scripted)", f"p50 {turn50:.1f} ms",
             f"{turn50 / commit:.0f}x one commit", "p50 <= 10 ms", turn50 <= 10),
        _row("fan-out to 100 clients, say -> delivery", f"p50 {fan50:.1f} ms, p99 "
             f"{fan99:.1f} ms", f"{fan50 / commit:.0f}x one commit", "p99 <= 10 ms",
             fan99 <= 10),
    ] + ([f"\nWRONG DELIVERIES in the fan-out: {fan.faults}"] if fan.faults else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=int, default=2_000, help="raw INSERT+COMMIT rows, twice")
    parser.add_argument("--says", type=int, default=500, help="sequential says measured")
    parser.add_argument("--pipelined", type=int, default=2_000,
                        help="says pipelined from one connection (8 rooms: a quarter each)")
    parser.add_argument("--window", type=int, default=32,
                        help="says in flight per connection (the gateway allows 32)")
    parser.add_argument("--turns", type=int, default=100, help="agent turns measured")
    parser.add_argument("--fanout", type=int, default=200, help="messages to 100 clients")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds to let a fresh platform settle before measuring")
    options = parser.parse_args()
    quiet()
    # The per-user frame limit (100/s by default) would cap the pipelined rows far below the
    # database; this measures the platform, so the child's limit is lifted.
    lift_limits()
    with tempfile.TemporaryDirectory(prefix="salon-bench-protocol-") as tmp:
        print("  starting a platform (child process) ...", flush=True)
        with platform_at(Path(tmp) / "home", False) as (url, token, database_url):
            lines = asyncio.run(measure(url, token, database_url, options))
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
