"""How fast one room's log grows, from a bare INSERT+COMMIT up to the room actor.

Run from the repository root: ``python -m bench.append`` (``--help`` for the sizes). It takes
about a minute on 2 cores and starts two PostgreSQL servers, a Valkey and a local Ray, all
under a temp dir, all stopped at the end.

What is measured, in one process run so every figure shares one machine state:

1. ``raw insert+commit``: psycopg on one connection, ``INSERT`` of one small row then
   ``COMMIT``, row after row, into a plain table of an embedded PostgreSQL started in a temp
   dir. The floor of a durable write: one WAL flush per row. Every figure is divided by it.
2. ``eventsourcing direct``: ``EventStore.save`` of one ``MessagePosted`` event of a ``Room``
   per call, same PostgreSQL, same process: the domain method, eventsourcing's transaction
   (pool check, table lock, insert) and a snapshot every ``snapshot_interval`` events.
3. The real stack: a full ``Platform`` (its own PostgreSQL, Valkey, Ray and gateway under a
   temp home). A room is created with ``directory.room(...).create``, then messages are
   posted with ``RoomActor.post`` from this (driver) process:

   - ``room actor (pipelined)``: windows of ``--window`` calls in flight at once, each window
     awaited with ``ray.get``. Posts that arrive while a save is running are committed
     together (group commit), so this may beat one commit per event;
   - ``room actor (sequential)``: one call at a time: every event pays a Ray round trip and a
     commit of its own.

   Three diagnostic kinds of line explain those two:

   - ``actor ping, no write``: the same call pattern with the actor's no-op ``ping``: what
     Ray alone costs per call, the ceiling for anything that goes through an actor;
   - ``RoomActor code, no Ray``: the same room code (``RoomCore``, the plain class behind
     ``RoomActor``), instantiated in this process and awaited directly, against the platform's
     PostgreSQL and Valkey: the actor's own cost (group commit, saves, Redis publish);
   - ``raw insert+commit (platform's PostgreSQL)``: the first line again, on the platform's
     server with Ray and everything up, to show how much the two servers and the load differ.

How to read it: ``ev/s`` is events made durable per wall-clock second, the median of
``--repeat`` runs (``range`` gives the slowest and fastest run); ``ms/ev`` is its inverse;
``x raw`` divides by the first line (above 1x: batching beats one commit per event); ``cpu``
is how busy the whole machine's CPUs were during those runs (every process, ours or not: near
100% means CPU-bound, or that someone else is busy). For actor lines, ``commits`` counts the
transactions that wrote those events (rows of one transaction share its ``xmin``), so
``ev/commit`` shows the group commit at work.
On a shared machine figures move by tens of percent from run to run: compare lines of one run.
Rooms start empty here; in an old room every save costs more, as each snapshot (one per
``snapshot_interval`` events) holds every message id the room has ever had.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import ray

from actors import directory
from actors.rooms import RoomCore
from bench import per_second, quiet
from domain.ids import new_id, room_id
from domain.rooms import Room
from infra.servers import EmbeddedPostgres
from infra.settings import Settings
from infra.store import EventStore
from salon.platform import Platform

AUTHOR = "bench"
TEXT = "the quick brown fox jumps over the lazy dog"
RAW_TABLE = "bench_raw"
HEADLINES = ("eventsourcing direct", "room actor (pipelined)", "room actor (sequential)")


@dataclass(frozen=True)
class Figure:
    """One line of the table: ``events`` made durable per run, timed over several runs."""

    label: str
    events: int
    seconds: list[float]
    cpu: float | None = None  # share of the machine's CPU time busy during the runs
    note: str = ""

    @property
    def rate(self) -> float:
        return per_second(self.events, statistics.median(self.seconds))

    @property
    def spread(self) -> str:
        rates = sorted(per_second(self.events, s) for s in self.seconds)
        return f"{rates[0]:,.0f}-{rates[-1]:,.0f}"

    def noted(self, note: str) -> Figure:
        return replace(self, note=note)


@dataclass(frozen=True)
class Run:
    """One way of posting: ``count`` posts per repeat, ``window`` of them in flight."""

    variant: str
    count: int
    window: int


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far, from Linux's /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:9]]  # guest time is in user
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def measure(label: str, events: int, repeat: int, run: Callable[[], None]) -> Figure:
    """Time ``run`` (which makes ``events`` events durable) ``repeat`` times."""
    seconds = []
    ticks = cpu_ticks()
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return announced(Figure(label, events, seconds, busy(ticks, cpu_ticks())))


async def measure_async(label: str, events: int, repeat: int,
                        run: Callable[[], Awaitable[None]]) -> Figure:
    """``measure`` for a coroutine function."""
    seconds = []
    ticks = cpu_ticks()
    for _ in range(repeat):
        start = time.perf_counter()
        await run()
        seconds.append(time.perf_counter() - start)
    return announced(Figure(label, events, seconds, busy(ticks, cpu_ticks())))


def announced(figure: Figure) -> Figure:
    print(f"  measured {figure.label}: {figure.rate:,.0f} ev/s", flush=True)
    return figure


# -- 1. raw psycopg -------------------------------------------------------------------------

def raw_inserts(database_url: str, rows: int, repeat: int) -> Figure:
    """One INSERT + COMMIT per row on one connection."""
    insert = f"INSERT INTO {RAW_TABLE} (body) VALUES (%s)"
    with psycopg.connect(database_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(f"CREATE TABLE {RAW_TABLE} (id bigserial PRIMARY KEY, body text NOT NULL)")
        conn.commit()

        def run(count: int) -> None:
            for _ in range(count):
                conn.execute(insert, (TEXT,))
                conn.commit()

        try:
            run(100)  # warm the connection and the table
            return measure("raw insert+commit", rows, repeat, partial(run, rows))
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE {RAW_TABLE}")
            conn.commit()


# -- 2. eventsourcing, no actor -------------------------------------------------------------

def direct_saves(database_url: str, events: int, repeat: int,
                 pre_ping: bool = False) -> Figure:
    """``EventStore.save`` of one MessagePosted per call, for one Room."""
    store = EventStore(database_url, pre_ping=pre_ping)
    try:
        room = Room.create(f"bench-direct-{new_id()[:8]}", AUTHOR)
        store.save(room.collect_events())

        def run(count: int) -> None:
            for _ in range(count):
                room.post(AUTHOR, TEXT, request_id=new_id())
                store.save(room.collect_events())

        run(20)  # warm the pool and the prepared statements
        label = "eventsourcing direct" + (" (pre-ping)" if pre_ping else "")
        return measure(label, events, repeat, partial(run, events))
    finally:
        store.close()


# -- 3. the room actor, through a full platform ----------------------------------------------

def batches(database_url: str, stream: UUID, after: int, up_to: int) -> list[int]:
    """Sizes of the transactions that wrote versions ``(after, up_to]`` of ``stream``.

    Rows written by one transaction share its ``xmin``: the group commit seen from the
    database, without touching the server code.
    """
    sql = ("SELECT count(*) FROM salon_events WHERE originator_id = %s "
           "AND originator_version > %s AND originator_version <= %s "
           "GROUP BY xmin::text ORDER BY min(originator_version)")
    with psycopg.connect(database_url) as conn:
        return [int(row[0]) for row in conn.execute(sql, (stream, after, up_to)).fetchall()]


def commits_note(sizes: list[int]) -> str:
    total = sum(sizes)
    return f"{len(sizes):,} commits, {total / len(sizes):.1f} ev/commit (max {max(sizes)})"


def ray_posts(actor: Any, count: int, window: int) -> None:
    """``count`` posts, ``window`` calls in flight at a time (1 = sequential)."""
    for start in range(0, count, window):
        ray.get([actor.post.remote(AUTHOR, TEXT, request_id=new_id())
                 for _ in range(min(window, count - start))])


def ray_pings(actor: Any, count: int, window: int) -> None:
    """Like ``ray_posts`` with the no-op ``ping``: what Ray alone costs per call."""
    for start in range(0, count, window):
        ray.get([actor.ping.remote() for _ in range(min(window, count - start))])


def ray_figures(settings: Settings, runs: list[Run], repeat: int) -> list[Figure]:
    """The room actor through Ray, called from this driver process; then Ray's own cost."""
    assert settings.database_url is not None
    name = f"bench-{new_id()[:8]}"
    actor = directory.room(name, settings)
    ray.get(actor.create.remote(AUTHOR))
    ray_posts(actor, 200, 200)  # warm the actor, its pool and its Redis connection
    figures = []
    for run in runs:
        before = int(ray.get(actor.head.remote()))
        figure = measure(f"room actor ({run.variant})", run.count, repeat,
                         partial(ray_posts, actor, run.count, run.window))
        after = int(ray.get(actor.head.remote()))
        sizes = batches(settings.database_url, room_id(name), before, after)
        assert sum(sizes) == run.count * repeat, f"{figure.label}: events went missing"
        figures.append(figure.noted(commits_note(sizes)))
    for run in runs:
        figure = measure(f"actor ping, no write ({run.variant})", run.count, repeat,
                         partial(ray_pings, actor, run.count, run.window))
        figures.append(figure.noted("Ray alone: calls/s, nothing written"))
    return figures


async def in_process_figures(settings: Settings, runs: list[Run], repeat: int) -> list[Figure]:
    """The same room code called directly in this process: its cost without Ray.

    Uses ``RoomCore``, the plain class behind ``RoomActor``, with the platform's PostgreSQL
    and Valkey, on a room of its own.
    """
    assert settings.database_url is not None
    name = f"bench-plain-{new_id()[:8]}"
    actor = RoomCore(name, settings)

    async def posts(count: int, window: int) -> None:
        for start in range(0, count, window):
            await asyncio.gather(*(actor.post(AUTHOR, TEXT, request_id=new_id())
                                   for _ in range(min(window, count - start))))

    try:
        await actor.create(AUTHOR)
        await posts(200, 200)
        figures = []
        for run in runs:
            before = int(await actor.head())
            figure = await measure_async(f"RoomActor code, no Ray ({run.variant})", run.count,
                                         repeat, partial(posts, run.count, run.window))
            after = int(await actor.head())
            sizes = batches(settings.database_url, room_id(name), before, after)
            figures.append(figure.noted(commits_note(sizes)))
        return figures
    finally:
        await actor.bus.close()
        actor.store.close()


def platform_figures(home: Path, runs: list[Run], raw_rows: int, repeat: int) -> list[Figure]:
    """Start a Platform under ``home``, measure the room actor, stop the platform."""
    # Explicit Nones: SALON_* variables in the environment must not point at real servers.
    platform = Platform(Settings(home=home, port=0, demo=False, database_url=None,
                                 redis_url=None, ray_address=None))
    try:
        print("  starting a platform (PostgreSQL, Valkey, Ray, gateway)...", flush=True)
        settings = platform.start().settings
        assert settings.database_url is not None
        figures = ray_figures(settings, runs, repeat)
        figures += asyncio.run(in_process_figures(settings, runs, repeat))
        raw = raw_inserts(settings.database_url, raw_rows, repeat)
        figures.append(replace(raw, label="raw insert+commit (platform's PostgreSQL)",
                               note="the first line again, with Ray and all up"))
        return figures
    finally:
        platform.stop()


# -- the table ------------------------------------------------------------------------------

def report(baseline: Figure, figures: list[Figure], window: int, repeat: int) -> None:
    lines = [baseline, *figures]
    width = max(len(f.label) for f in lines)
    print()
    print(f"median of {repeat} runs; pipelined = windows of {window} calls in flight")
    print(f"{'':{width}}  {'events':>6}  {'ev/s':>6}  {'range':>11}  {'ms/ev':>5}  "
          f"{'x raw':>5}  {'cpu':>4}")
    for figure in lines:
        cpu = "" if figure.cpu is None else f"{figure.cpu:.0%}"
        print(f"{figure.label:{width}}  {figure.events:>6,}  {figure.rate:>6,.0f}  "
              f"{figure.spread:>11}  {1000 / figure.rate:>5.2f}  "
              f"{figure.rate / baseline.rate:>4.2f}x  {cpu:>4}  {figure.note}")
    print()
    for figure in figures:
        if figure.label not in HEADLINES:
            continue
        print(f"{figure.label}: {figure.rate:,.0f} ev/s = "
              f"{figure.rate / baseline.rate:.2f}x raw insert+commit ({baseline.rate:,.0f} ev/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description="How fast one room's log grows.")
    parser.add_argument("--raw", type=int, default=2_000, help="rows for raw INSERT+COMMIT")
    parser.add_argument("--direct", type=int, default=1_000, help="EventStore.save calls")
    parser.add_argument("--pipelined", type=int, default=2_000, help="pipelined actor posts")
    parser.add_argument("--window", type=int, default=200, help="actor calls in flight")
    parser.add_argument("--sequential", type=int, default=300, help="sequential actor posts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per line (median shown)")
    args = parser.parse_args()
    quiet()
    runs = [Run("pipelined", args.pipelined, args.window), Run("sequential", args.sequential, 1)]
    with tempfile.TemporaryDirectory(prefix="salon-bench-append-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg")
        try:
            print("  starting an embedded PostgreSQL...", flush=True)
            database_url = postgres.start()
            baseline = raw_inserts(database_url, args.raw, args.repeat)
            figures = [direct_saves(database_url, args.direct, args.repeat),
                       direct_saves(database_url, args.direct, args.repeat, pre_ping=True)]
        finally:
            postgres.stop()
        figures += platform_figures(Path(tmp) / "home", runs, args.raw, args.repeat)
    report(baseline, figures, args.window, args.repeat)


if __name__ == "__main__":
    main()
