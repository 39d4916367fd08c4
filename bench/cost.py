"""Where the machine's CPU goes per say and per agent turn, by process, through the protocol.

Run from the repository root: ``python -m bench.cost`` (about 2 minutes; ``--help``). A full
Platform runs in a child process as ``salon up`` runs it. One client says, one frame at a
time, for ``--seconds``; then says ``@agent`` (a ``scripted`` agent that answers at once) one
turn at a time for as long. Around each phase the CPU time (user + system, from
``/proc/PID/stat``) of every process on the machine is read, so the table shows, per say and
per turn, how many milliseconds of CPU each kind of process spent: the gateway, the room
hosts, the agent, PostgreSQL, Valkey, the read models (projections, jobs, the embedders),
Ray's own daemons and this benchmark's client. A latency target on 2 cores cannot be met
while the work one operation sets off costs more CPU than its target: that is what this
shows. ``--no-read-models`` turns the projections and the memory projection off for a run
to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import lift_limits, quiet
from bench.fanout import Client, platform_at
from domain.ids import new_id

TICK = os.sysconf("SC_CLK_TCK")
GROUPS = (  # (substring of the command line, group), first match wins
    ("spawn_main", "gateway + platform process"),
    ("ray::Host", "room hosts"),
    ("ray::AgentCore", "agent"),
    ("ray::ProjectionHost", "read models: projections"),
    ("ray::JobHost", "read models: jobs"),
    ("_BackgroundEmbedder", "read models: embedders"),
    ("postgres", "postgresql"),
    ("valkey", "valkey"),
    ("bench.cost", "benchmark client"),
    ("ray", "ray daemons (gcs, raylet, dashboard)"),
)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (CPU ticks so far, group) for every process we can read."""
    found: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                line = cmd.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        group = next((g for key, g in GROUPS if key in line), "other")
        found[int(entry)] = (int(fields[11]) + int(fields[12]), group)
    return found


def cpu_by_group(before: dict[int, tuple[int, str]],
                 after: dict[int, tuple[int, str]]) -> Counter[str]:
    """CPU seconds spent between two readings, per group."""
    spent: Counter[str] = Counter()
    for pid, (ticks, group) in after.items():
        spent[group] += (ticks - before.get(pid, (0, group))[0]) / TICK
    return spent


async def _says(client: Client, room: str, seconds: float) -> list[float]:
    took: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.perf_counter()
        await client.ok({"type": "say", "room": room, "text": f"message {len(took)}"})
        took.append((time.perf_counter() - started) * 1e3)
    return took


async def _turns(client: Client, room: str, agent: str, seconds: float) -> list[float]:
    replies: asyncio.Queue[int] = asyncio.Queue()
    client.on_message = lambda event, at: replies.put_nowait(at) \
        if event.get("author_id") == agent else None
    took: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sent = time.monotonic_ns()
        await client.ok({"type": "say", "room": room, "text": f"@{agent} turn {len(took)}"})
        arrived = await asyncio.wait_for(replies.get(), 60)
        took.append((arrived - sent) / 1e6)
    client.on_message = None
    return took


def _table(what: str, took: list[float], seconds: float, spent: Counter[str]) -> list[str]:
    count = len(took)
    total = sum(spent.values())
    lines = [f"\n{what}: {count} in {seconds:.0f} s ({count / seconds:.0f}/s), latency p50 "
             f"{statistics.median(took):.2f} ms; the machine's CPU per {what.rstrip('s')}: "
             f"{total / count * 1e3:.1f} ms ({total / seconds:.0%} of one core)",
             "| process | CPU ms per operation | share |", "| --- | --- | --- |"]
    for group, secs in spent.most_common():
        if secs * 1e3 / count >= 0.05:
            lines.append(f"| {group} | {secs / count * 1e3:.2f} | {secs / total:.0%} |")
    return lines


async def measure(url: str, token: str, seconds: float, settle: float) -> list[str]:
    client = await Client.open(url, token)
    try:
        await asyncio.sleep(settle)
        room = f"cost-{new_id()[:8]}"
        await client.ok({"type": "create_room", "name": room})
        await _says(client, room, 2)  # warm the room's host
        before = _processes()
        started = time.monotonic()
        says = await _says(client, room, seconds)
        lines = _table("says", says, time.monotonic() - started, cpu_by_group(before,
                                                                               _processes()))
        turn_room = f"cost-turn-{new_id()[:8]}"
        agent = f"bot-{new_id()[:8]}"
        await client.ok({"type": "create_room", "name": turn_room})
        await client.ok({"type": "create_agent", "definition": {"name": agent,
                                                                "script": ["at once"]}})
        await client.ok({"type": "add_agent", "room": turn_room, "agent": agent})
        await client.ok({"type": "join", "room": turn_room})
        await _turns(client, turn_room, agent, 3)  # warm the agent and its memory
        await asyncio.sleep(settle / 3)
        before = _processes()
        started = time.monotonic()
        turns = await _turns(client, turn_room, agent, seconds)
        lines += _table("turns", turns, time.monotonic() - started,
                        cpu_by_group(before, _processes()))
        return lines
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds to let a fresh platform settle before measuring")
    parser.add_argument("--no-read-models", action="store_true",
                        help="run without the projections and the memory projection")
    options = parser.parse_args()
    quiet()
    lift_limits()
    if options.no_read_models:
        os.environ["SALON_PROJECTIONS_ENABLED"] = "false"
        os.environ["SALON_MEMORY_PROJECTION"] = "false"
    with tempfile.TemporaryDirectory(prefix="salon-bench-cost-") as tmp:
        print("  starting a platform (child process) ...", flush=True)
        with platform_at(Path(tmp) / "home", False) as (url, token, _):
            lines = asyncio.run(measure(url, token, options.seconds, options.settle))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
