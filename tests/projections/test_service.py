"""The service: each projection in a Ray actor of its own, surviving a kill, rebuilt on demand."""

from __future__ import annotations

import time

import ray

from domain.ids import room_id
from domain.rooms import Room
from infra.store import EventStore
from projections import service, threads
from projections.registry import PROJECTIONS
from projections.service import ProjectionSettings
from projections.views import Reader
from tests.projections.conftest import wait_until


def _settled(projections: service.Projections) -> list[dict]:
    rows = projections.status()
    return rows if all(r["running"] and r["pending"] == 0 for r in rows) else []


def test_projection_hosts_follow_the_log_survive_a_kill_and_rebuild(
        platform, database_url: str, schema: str, name: str) -> None:
    store: EventStore = platform.store
    room = Room.create(name, "alice")
    room.post("alice", "first")
    store.save(room.collect_events())
    config = ProjectionSettings(schema_prefix=f"{schema}_", jobs_prefix=f"test:{name}",
                                plan_every_seconds=3600)
    t0 = time.monotonic()
    projections = service.start(platform.running.settings, config)
    reader = Reader(database_url, config.schema("threads"))
    try:
        rows = wait_until(lambda: _settled(projections), "every projection to catch up", 60)
        print("settled", time.monotonic() - t0)
        assert sorted(r["name"] for r in rows) == sorted(PROJECTIONS)
        hosts = {n: projections.host(n) for n in PROJECTIONS}
        schemas = {n: ray.get(h.status.remote())["schema"] for n, h in hosts.items()}
        assert schemas == {n: f"{schema}_{n}" for n in PROJECTIONS}
        assert threads.thread(reader, name)["message_count"] == 1

        # Killed outright, Ray restarts the host; it resumes from its tracking record.
        ray.kill(hosts["threads"], no_restart=False)
        room.post("alice", "second")
        store.save(room.collect_events())
        wait_until(lambda: threads.thread(reader, name)["message_count"] == 2,
                   "the restarted threads host to apply the new message", 60)

        print("restarted", time.monotonic() - t0)
        head = store.app.recorder.max_notification_id()
        rebuilt = projections.rebuild("audit")
        assert rebuilt["name"] == "audit"
        wait_until(lambda: [r for r in projections.status()
                            if r["name"] == "audit" and r["position"] >= head],
                   "the audit log to be rebuilt", 60)
        print("rebuilt", time.monotonic() - t0)
        assert store.exists(room_id(name))
    finally:
        reader.close()
        projections.stop()
        print("stopped", time.monotonic() - t0)
    assert projections.host("threads") is None
