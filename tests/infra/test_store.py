"""The event store's recorder: one round trip per save, ids issued in commit order."""

from __future__ import annotations

import threading

import psycopg

from domain.errors import Conflict
from domain.rooms import Room
from infra.store import OrderedFunctionRecorder
from salon.platform import Platform


def test_saves_wait_for_the_table_lock_so_ids_follow_commit_order(
        platform: Platform, name: str) -> None:
    store = platform.store
    assert store is not None and isinstance(store.app.recorder, OrderedFunctionRecorder)
    room = Room.create(name, "ann")
    store.save(room.collect_events())
    room.post("ann", "while the table is locked")
    saved = threading.Event()
    failed: list[BaseException] = []

    def save() -> None:
        try:
            store.save(room.collect_events())
        except BaseException as error:  # noqa: BLE001 - reported below
            failed.append(error)
        saved.set()

    with psycopg.connect(store.database_url) as other:
        # ROW SHARE conflicts with the EXCLUSIVE lock the recorder's function takes, not with
        # the ROW EXCLUSIVE lock a plain INSERT takes: only a save that locks the table waits.
        other.execute(f"LOCK TABLE {store.table} IN ROW SHARE MODE")
        writer = threading.Thread(target=save)
        writer.start()
        assert not saved.wait(1.0), "a save did not take the table lock"
        other.rollback()
    writer.join(30)
    assert saved.is_set() and not failed, failed
    texts = [e.text for e in store.events(room.id) if isinstance(e, Room.MessagePosted)]
    assert texts == ["while the table is locked"]


def test_a_stale_version_is_a_conflict_and_the_stream_is_unchanged(
        platform: Platform, name: str) -> None:
    store = platform.store
    assert store is not None
    room = Room.create(name, "ann")
    store.save(room.collect_events())
    stale = store.get(Room, room.id, name)
    room.post("ann", "first")
    store.save(room.collect_events())
    stale.post("ann", "second, from a stale copy")
    try:
        store.save(stale.collect_events())
        raise AssertionError("a stale save was accepted")
    except Conflict as conflict:
        assert "stream moved on" in conflict.message
    assert [e.text for e in store.events(room.id) if isinstance(e, Room.MessagePosted)] == \
        ["first"]
