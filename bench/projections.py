"""How fast projections catch up with the log, against how fast the log can be read at all.

Run from the repository root: ``python -m bench.projections`` (``--help`` for the sizes). It
starts an embedded PostgreSQL in a temp dir (stopped at the end), records a log of rooms with
messages and replies and agents taking turns (a model call and a tool call each), then, in one
process run so every figure shares one machine state:

1. ``raw read``: the application recorder's ``select_notifications``, pages of ``--page``
   stored events, from position 0 to the head: the floor of any catch-up;
2. ``read + decode``: the same, each turned into its domain event by the application's
   mapper (what every projection pays before applying anything);
3. one line per projection: a ``Runner`` on a fresh schema, from ``start()`` until its view
   has applied every event it reads (``--batch`` events per transaction);
4. with ``--stock``, eventsourcing's own ``ProjectionRunner`` on the threads projection:
   one transaction per event, to show what batching buys.

``events`` is how many events a line read or applied (a projection reads only its topics;
``audit`` reads all); ``ev/s`` is that over the wall-clock time; ``log ev/s`` is the whole
log's length over the same time (how fast the projection passes over the log), and ``x raw``
divides that by the first line's rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import per_second, quiet
from domain.agents import Agent, AgentDefinition
from domain.rooms import Room
from infra.servers import EmbeddedPostgres
from infra.store import EventStore, Salon, postgres_env
from projections.registry import PROJECTIONS
from projections.runner import Runner


@dataclass(frozen=True)
class Figure:
    """One line: ``events`` read or applied in ``seconds``, over a log of ``log`` events."""

    label: str
    events: int
    seconds: float
    log: int

    @property
    def rate(self) -> float:
        return per_second(self.events, self.seconds)

    @property
    def log_rate(self) -> float:
        return per_second(self.log, self.seconds)


def record_log(store: EventStore, events: int, rooms: int = 20) -> int:
    """Record about ``events`` events: half room messages, half agent turns; returns the head."""
    per_room = max(events // 2 // rooms, 1)
    turns = max(events // 2 // 4 // rooms, 1)  # four events a turn
    for r in range(rooms):
        room = Room.create(f"bench-{r}", "alice")
        room.join(f"bot-{r}", "agent")
        previous = None
        for n in range(per_room):
            previous, _ = room.post("alice" if n % 2 else f"bot-{r}",
                                    f"message {n} about ferns, shade and watering in room {r}",
                                    reply_to=previous if n % 3 else None)
            if n % 200 == 199:
                store.save(room.collect_events())
        store.save(room.collect_events())
        agent = Agent.define(AgentDefinition(name=f"bot-{r}"))
        for n in range(turns):
            agent.start_turn(f"t{n}", f"bench-{r}", {"kind": "mention", "position": n + 3,
                                                     "by": "alice"})
            agent.record_model_call(f"t{n}", "scripted", "echo", {"positions": [n]},
                                    {"text": "ferns"}, 100 + n, 20, 0.0004, 30.0 + n % 50)
            agent.record_tool_call(f"t{n}", "calculator", {"n": n}, str(n), "ok", 1.0)
            agent.complete_turn(f"t{n}", None)
            if n % 50 == 49:
                store.save(agent.collect_events())
        store.save(agent.collect_events())
    return int(store.app.recorder.max_notification_id() or 0)


def read_log(database_url: str, page: int, decode: bool, log: int) -> Figure:
    """Read every stored event in pages (and decode each one)."""
    app = Salon(env=postgres_env(database_url))
    try:
        start, count = time.perf_counter(), 0
        after = 0
        while True:
            found = app.recorder.select_notifications(after, page, inclusive_of_start=False)
            if not found:
                break
            if decode:
                for notification in found:
                    app.mapper.to_domain_event(notification)
            count += len(found)
            after = found[-1].id
        return Figure("read + decode" if decode else "raw read", count,
                      time.perf_counter() - start, log)
    finally:
        app.close()


def catch_up(database_url: str, name: str, batch: int, log: int, head: int) -> Figure:
    """A projection's runner on a fresh schema, from start until caught up with ``head``."""
    cls = PROJECTIONS[name]
    schema = f"bench_{name}"
    runner = Runner(cls, database_url, schema, batch_size=batch)
    try:
        start = time.perf_counter()
        runner.start()
        runner.wait_for(head, timeout=3600)
        seconds = time.perf_counter() - start
        return Figure(f"projection {name}", runner.applied, seconds, log)
    finally:
        runner.close()
        _drop(database_url, schema)


def stock_runner(database_url: str, log: int, head: int) -> Figure:
    """eventsourcing's ProjectionRunner on the threads projection: one transaction per event."""
    from eventsourcing.projection import ProjectionRunner

    from projections.threads import Threads
    from projections.views import datastore_env

    schema = "bench_stock"
    env = datastore_env(database_url, schema)
    env_named = {**env, **{f"{Threads.name.upper()}_{k}": v for k, v in env.items()}}
    start = time.perf_counter()
    runner = ProjectionRunner(application_class=Salon, projection_class=Threads,
                              view_class=Threads.view_class, env=env_named)
    try:
        with runner:
            runner.wait(_last_topic_event(database_url, Threads.topics, head), timeout=3600)
            seconds = time.perf_counter() - start
        applied = _count(database_url, Threads.topics, head)
        return Figure("eventsourcing ProjectionRunner (threads)", applied, seconds, log)
    finally:
        _drop(database_url, schema)


def _last_topic_event(database_url: str, topics: tuple[str, ...], head: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(notification_id) FROM salon_events WHERE topic = ANY(%s) "
                           "AND notification_id <= %s", (list(topics), head)).fetchone()
    return int(row[0] or 0) if row else 0


def _count(database_url: str, topics: tuple[str, ...], head: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM salon_events WHERE topic = ANY(%s) "
                           "AND notification_id <= %s", (list(topics), head)).fetchone()
    return int(row[0]) if row else 0


def _drop(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def report(figures: list[Figure]) -> None:
    """Print the table."""
    raw = figures[0].rate
    print()
    print(f"{'line':<44}{'events':>9}{'seconds':>9}{'ev/s':>10}{'log ev/s':>10}{'x raw':>7}")
    for f in figures:
        print(f"{f.label:<44}{f.events:>9,}{f.seconds:>9.2f}{f.rate:>10,.0f}"
              f"{f.log_rate:>10,.0f}{f.log_rate / raw if raw else 0:>7.2f}")
    caught = [f for f in figures if f.label.startswith("projection ")]
    if caught and raw:
        slowest = min(caught, key=lambda f: f.log_rate)
        print(f"\nslowest catch-up: {slowest.label[11:]} at {slowest.log_rate:,.0f} log ev/s; "
              f"raw event-store read {raw:,.0f} ev/s; ratio {slowest.log_rate / raw:.3f}")


def main(argv: list[str] | None = None) -> None:
    """Parse the sizes, start PostgreSQL, record the log, measure, print, stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the log")
    parser.add_argument("--page", type=int, default=500, help="events per read of the log")
    parser.add_argument("--batch", type=int, default=500, help="events per projection commit")
    parser.add_argument("--stock", action="store_true",
                        help="also time eventsourcing's ProjectionRunner (slow: per event)")
    args = parser.parse_args(argv)
    quiet()
    with tempfile.TemporaryDirectory(prefix="salon-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg")
        database_url = postgres.start()
        store = EventStore(database_url)
        try:
            print(f"recording about {args.events:,} events …", flush=True)
            head = record_log(store, args.events)
            log = _count_all(database_url)
            steps: list[Callable[[], Figure]] = [
                lambda: read_log(database_url, args.page, False, log),
                lambda: read_log(database_url, args.page, True, log),
                *[(lambda n=n: catch_up(database_url, n, args.batch, log, head))
                  for n in PROJECTIONS]]
            if args.stock:
                steps.append(lambda: stock_runner(database_url, log, head))
            figures = []
            for step in steps:
                figure = step()
                print(f"  measured {figure.label}: {figure.rate:,.0f} ev/s", flush=True)
                figures.append(figure)
            report(figures)
        finally:
            store.close()
            postgres.stop()


def _count_all(database_url: str) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM salon_events").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
