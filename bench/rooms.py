"""Ten thousand rooms on a few host processes: what a room costs, passive and active.

Run from the repository root: ``python -m bench.rooms`` (``--help`` for the sizes). It starts a
platform under a temp home (its own PostgreSQL, Valkey and Ray) and stops it at the end.

What is measured, in one run:

1. ``own process``: ``--own`` rooms with ``SALON_ROOM_HOSTS=0``, a Ray actor process each: rooms
   created per second and the machine memory each adds (MemTotal - MemAvailable, before and
   after, divided by the rooms). The baseline every hosted figure is compared with.
2. ``hosted``: ``--rooms`` rooms on ``--hosts`` host processes (``SALON_ROOM_HOSTS``):
   created per second (``--window`` calls in flight), one message posted into each, the
   host processes they take and the hosts' memory (PSS, as each host reads its own
   ``smaps_rollup``) per room while active.
3. ``passivated``: with ``SALON_IDLE_SECONDS=--idle`` every host passivates its idle rooms:
   how long until none is active, and the hosts' memory per room afterwards.
4. ``reactivation``: ``--sample`` passive rooms picked at random get a message, one at a time:
   the first call activates the room from its snapshot (``cold``); a second message right after
   finds it active (``warm``). p50/p99 of each, and cold/warm.

The own-process memory figure is machine-wide and moves with everything else on the machine:
read it as an order of magnitude. Host figures include each host's fixed cost (the Python
interpreter, Ray's worker runtime, the libraries), which is what passivation cannot release.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from actors import directory
from bench.simulate import system_used
from infra.settings import Settings
from salon.platform import Platform

MIB = 1024 * 1024


def windowed(calls: list[Callable[[], Any]], window: int) -> None:
    """Run ``calls`` (each returns an ObjectRef) with at most ``window`` in flight."""
    pending: list[Any] = []
    for make in calls:
        pending.append(make())
        if len(pending) >= window:
            done, pending = ray.wait(pending, num_returns=len(pending) // 2)
            ray.get(done)
    ray.get(pending)


def settle_memory() -> int:
    time.sleep(2.0)
    return system_used()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def named(settings: Settings) -> list[str]:
    return [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
            if e["namespace"] == settings.namespace]


def own_processes(base: Settings, count: int) -> dict[str, float]:
    settings = base.model_copy(update={"namespace": f"{base.namespace}-own", "room_hosts": 0})
    before = settle_memory()
    start = time.perf_counter()
    windowed([lambda i=i: directory.room(f"own-{i}", settings).create.remote("owner")
              for i in range(count)], window=8)
    seconds = time.perf_counter() - start
    per_room = (settle_memory() - before) / count
    for name in named(settings):
        ray.kill(ray.get_actor(name, namespace=settings.namespace), no_restart=True)
    return {"rooms_per_s": count / seconds, "mib_per_room": per_room / MIB,
            "processes": float(count)}


def hosted(base: Settings, count: int, window: int) -> dict[str, Any]:
    settings = base
    start = time.perf_counter()
    windowed([lambda i=i: directory.room(f"room-{i}", settings).create.remote("owner")
              for i in range(count)], window)
    created = time.perf_counter() - start
    start = time.perf_counter()
    windowed([lambda i=i: directory.room(f"room-{i}", settings).post.remote("owner", "hello")
              for i in range(count)], window)
    posted = time.perf_counter() - start
    hosts = [ray.get_actor(n, namespace=settings.namespace) for n in named(settings)
             if n.startswith("room-host:")]
    stats = ray.get([h.stats.remote() for h in hosts])
    return {"rooms_per_s": count / created, "posts_per_s": count / posted,
            "processes": len(hosts), "hosts": hosts,
            "active_cores": sum(s["active"] for s in stats),
            "host_mib": sum(s["pss_bytes"] or 0 for s in stats) / MIB}


def passivation(hosts: list[Any], deadline: float) -> dict[str, float]:
    start = time.perf_counter()
    while True:
        stats = ray.get([h.stats.remote() for h in hosts])
        if all(s["active"] == s["passivating"] == 0 for s in stats):
            break
        if time.perf_counter() - start > deadline:
            raise SystemExit(f"rooms still active after {deadline:g} s: {stats}")
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    time.sleep(2.0)
    stats = ray.get([h.stats.remote() for h in hosts])
    return {"seconds": seconds, "passivated": float(sum(s["passivated"] for s in stats)),
            "host_mib": sum(s["pss_bytes"] or 0 for s in stats) / MIB}


def reactivation(settings: Settings, count: int, sample: int) -> dict[str, float]:
    picked = random.Random(7).sample(range(count), min(sample, count))
    cold, warm = [], []
    for i in picked:
        room = directory.room(f"room-{i}", settings)
        start = time.perf_counter()
        ray.get(room.post.remote("owner", "wake up"))
        cold.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        ray.get(room.post.remote("owner", "still here"))
        warm.append((time.perf_counter() - start) * 1000)
    return {"cold_p50": statistics.median(cold), "cold_p99": quantile(cold, 0.99),
            "warm_p50": statistics.median(warm), "warm_p99": quantile(warm, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Rooms on shared host processes: creation, "
                                                 "memory, passivation and reactivation.")
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--own", type=int, default=30, help="rooms with a process each")
    parser.add_argument("--window", type=int, default=256, help="calls in flight")
    parser.add_argument("--idle", type=float, default=20.0, help="SALON_IDLE_SECONDS")
    parser.add_argument("--sample", type=int, default=300, help="rooms reactivated")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="salon-bench-rooms-") as home:
        platform = Platform(Settings(home=Path(home), port=0, demo=False, database_url=None,
                                     redis_url=None, ray_address=None, room_hosts=args.hosts,
                                     idle_seconds=args.idle, memory_projection=False))
        running = platform.start()
        try:
            settings = running.settings
            own = own_processes(settings, args.own)
            print(f"own process   {args.own:>6} rooms  {own['rooms_per_s']:8.1f} rooms/s  "
                  f"{own['mib_per_room']:7.2f} MiB/room  {args.own} processes", flush=True)
            found = hosted(settings, args.rooms, args.window)
            per_room = found["host_mib"] / args.rooms
            print(f"hosted        {args.rooms:>6} rooms  {found['rooms_per_s']:8.1f} rooms/s  "
                  f"{per_room:7.3f} MiB/room  {found['processes']} host processes, "
                  f"{found['host_mib']:.0f} MiB ({found['active_cores']} rooms active)  "
                  f"posts {found['posts_per_s']:.0f}/s", flush=True)
            print(f"  vs own      creation x{found['rooms_per_s'] / own['rooms_per_s']:.1f}  "
                  f"memory per room x{per_room / own['mib_per_room']:.4f}", flush=True)
            passive = passivation(found["hosts"], deadline=args.idle * 4 + 120)
            print(f"passivated    {passive['passivated']:>6.0f} rooms  in "
                  f"{passive['seconds']:.1f} s after the last call (idle {args.idle:g} s)  "
                  f"hosts {passive['host_mib']:.0f} MiB "
                  f"({passive['host_mib'] / args.rooms:.3f} MiB/room)", flush=True)
            wake = reactivation(settings, args.rooms, args.sample)
            print(f"reactivation  {args.sample:>6} rooms  cold p50 {wake['cold_p50']:.2f} ms "
                  f"p99 {wake['cold_p99']:.2f} ms  warm p50 {wake['warm_p50']:.2f} ms p99 "
                  f"{wake['warm_p99']:.2f} ms  "
                  f"cold/warm x{wake['cold_p50'] / wake['warm_p50']:.1f}", flush=True)
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
