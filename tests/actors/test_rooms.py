"""Room actors: snapshots, recovery after a crash, and group commit, on the real stack."""

from __future__ import annotations

import ray

from actors import directory
from domain.ids import room_id
from domain.rooms import Room
from salon.platform import Platform


def test_a_room_is_snapshotted_every_n_events_and_recovers_after_a_crash(
        platform: Platform, name: str) -> None:
    settings = platform.running.settings
    interval = settings.snapshot_interval
    room = directory.room(name, settings)
    ray.get(room.create.remote("owner"))
    results = ray.get([room.post.remote("owner", f"m{i}", request_id=f"r{i}")
                       for i in range(3 * interval)])
    positions = [r["position"] for r in results]
    assert sorted(positions) == list(range(3, 3 + 3 * interval))
    snapshots = list(platform.store.app.snapshots.get(room_id(name)))
    assert snapshots, "no snapshot was taken"
    assert all(s.originator_version >= interval for s in snapshots)

    # A crash of the process that holds the room (its host, by default: every room on it).
    ray.kill(directory.process("room", name, settings), no_restart=False)
    again = ray.get(room.post.remote("owner", "after the crash", request_id="r-after"))
    assert again["position"] == 3 + 3 * interval
    repeated = ray.get(room.post.remote("owner", "m0", request_id="r0"))
    assert repeated == results[0], "a retried request posted again"
    rebuilt = platform.store.get(Room, room_id(name), "room")
    assert rebuilt.position == again["position"]
    assert len(rebuilt.message_ids) == 3 * interval + 1


def test_concurrent_posts_are_group_committed_in_fewer_saves(platform: Platform,
                                                             name: str) -> None:
    settings = platform.running.settings
    room = directory.room(name, settings)
    ray.get(room.create.remote("owner"))
    results = ray.get([room.post.remote("owner", f"m{i}") for i in range(200)])
    assert sorted(r["position"] for r in results) == list(range(3, 203))
    with platform.store.app.recorder.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT count(DISTINCT xmin::text) AS commits FROM salon_events "
            "WHERE originator_id = %s", (room_id(name),)).fetchone()
    assert rows["commits"] < 200, "every post was committed on its own"
