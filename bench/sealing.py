"""What sealing people's words at rest costs: per event, per say, and for a 100k-event replay.

Run from the repository root: ``python -m bench.sealing`` (``--help`` for the sizes; about a
minute on 2 cores). It starts an embedded PostgreSQL and a Valkey in a temp dir and stops
them at the end. Every line is measured twice in the same process, once with the event store
as Salon runs it (personal fields sealed, infra/sealing.py) and once with the same store
opened without a key ring (the mapper eventsourcing would use), and printed side by side with
their ratio:

1. ``encode`` / ``decode``: the mapper alone, one ``MessagePosted`` to a stored event and
   back, in microseconds per event (no database);
2. ``say ack``: ``RoomCore.post`` in this process against the embedded PostgreSQL and Valkey
   (the room actor's code without Ray or the gateway), one message at a time: p50 and p99 of
   the acknowledgement, which waits for the commit and the publish;
3. ``replay``: a room of ``--events`` messages (100,000 by default) read back whole and
   decoded (``EventStore.events``), in events per second.

Read the ratios, not the absolute figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from actors.rooms import RoomCore
from bench import quiet
from domain.ids import new_id
from domain.rooms import Room
from infra.servers import EmbeddedPostgres, EmbeddedValkey
from infra.settings import Settings
from infra.store import EventStore, Salon, postgres_env

TEXT = "a message of ordinary length, about the size people write in a chat room"


class PlainStore(EventStore):
    """The same store without sealing: eventsourcing's own mapper (the baseline only)."""

    def __init__(self, database_url: str, master_key: Path) -> None:
        super().__init__(database_url, create_tables=False, master_key=master_key)
        self.app.close()
        self.app = Salon(env=postgres_env(database_url, create_tables=False))


def mapper_costs(store: EventStore, count: int) -> tuple[float, float]:
    """(µs to encode, µs to decode) one MessagePosted with this store's mapper."""
    room = Room.create(f"bench-{new_id()[:8]}", "ann")
    for _ in range(count):
        room.post("ann", TEXT, request_id=new_id())
    events = [e for e in room.collect_events() if isinstance(e, Room.MessagePosted)]
    mapper = store.app.mapper
    started = time.perf_counter()
    stored = [mapper.to_stored_event(e) for e in events]
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    for record in stored:
        mapper.to_domain_event(record)
    decoded = time.perf_counter() - started
    return encoded / count * 1e6, decoded / count * 1e6


async def say_acks(settings: Settings, store: EventStore, count: int) -> list[float]:
    """Milliseconds from ``RoomCore.post`` to its answer, one message at a time."""
    name = f"bench-say-{new_id()[:8]}"
    core = RoomCore(name, settings, store=store)
    await core.create("ann")
    for _ in range(20):
        await core.post("ann", TEXT, request_id=new_id())
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await core.post("ann", TEXT, request_id=new_id())
        times.append((time.perf_counter() - started) * 1000)
    await core.committer.settle()  # the last deliveries go out before the bus closes
    await core.bus.close()
    return times


def replay_rate(store: EventStore, events: int) -> float:
    """Events per second reading one room of ``events`` messages back whole."""
    room = Room.create(f"bench-replay-{new_id()[:8]}", "ann")
    store.save(room.collect_events())
    for n in range(events):
        room.post("ann", f"{TEXT} {n}", request_id=new_id())
        if n % 1_000 == 999:
            store.app.save(*room.collect_events())  # no snapshots: a replay reads every event
    store.app.save(*room.collect_events())
    started = time.perf_counter()
    read = store.events(room.id)
    seconds = time.perf_counter() - started
    assert len(read) == room.position
    return len(read) / seconds


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mapper-events", type=int, default=20_000)
    parser.add_argument("--says", type=int, default=500)
    parser.add_argument("--events", type=int, default=100_000, help="events of the replay")
    args = parser.parse_args()
    quiet()
    with tempfile.TemporaryDirectory(prefix="salon-bench-sealing-") as tmp:
        home = Path(tmp)
        postgres, valkey = EmbeddedPostgres(home / "pg"), EmbeddedValkey(home / "valkey")
        database_url, redis_url = postgres.start(), valkey.start()
        try:
            key = home / "master.key"
            settings = Settings(home=home).resolved(database_url, redis_url)
            sealed = EventStore(database_url, master_key=key)
            plain = PlainStore(database_url, key)
            stores = {"sealed": sealed, "plain": plain}
            rows: list[tuple[str, str, str, str]] = []
            costs = {k: mapper_costs(s, args.mapper_events) for k, s in stores.items()}
            for i, what in enumerate(("encode", "decode")):
                rows.append((f"{what} one MessagePosted (µs)", f"{costs['plain'][i]:.1f}",
                             f"{costs['sealed'][i]:.1f}",
                             f"{costs['sealed'][i] / costs['plain'][i]:.2f}x"))
            acks = {k: asyncio.run(say_acks(settings, s, args.says)) for k, s in stores.items()}
            for label, q in (("p50", 0.5), ("p99", 0.99)):
                a, b = p(acks["plain"], q), p(acks["sealed"], q)
                rows.append((f"say ack, RoomCore.post {label} (ms)", f"{a:.2f}", f"{b:.2f}",
                             f"{b / a:.2f}x"))
            rates = {k: replay_rate(s, args.events) for k, s in stores.items()}
            rows.append((f"replay of {args.events:,} events (ev/s)", f"{rates['plain']:,.0f}",
                         f"{rates['sealed']:,.0f}", f"{rates['sealed'] / rates['plain']:.2f}x"))
            width = max(len(r[0]) for r in rows)
            print(f"{'':{width}}  {'plain':>10}  {'sealed':>10}  {'sealed/plain':>12}")
            for name, a, b, ratio in rows:
                print(f"{name:{width}}  {a:>10}  {b:>10}  {ratio:>12}")
            print(f"data keys: {sealed.keys.count()}; median of {args.says} says, "
                  f"{statistics.mean(acks['sealed']):.2f} ms mean sealed")
            sealed.close()
            plain.close()
        finally:
            valkey.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
