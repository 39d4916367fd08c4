"""Threads: reply chains, full-text search, stats, archive, forks, from the real log."""

from __future__ import annotations

import pytest

from domain.errors import Forbidden, NotFound
from domain.ids import room_id
from domain.rooms import Room
from infra.store import EventStore
from projections import threads
from projections.archive import set_archived
from projections.runner import Runner
from projections.threads import Threads
from projections.views import Reader


def test_threads_follow_the_log_with_chains_search_stats_and_archive(
        platform, database_url: str, schema: str, name: str) -> None:
    store: EventStore = platform.store
    bob = f"{name}-bob"
    room = Room.create(name, "alice", topic="gardening")
    room.join(bob, "human")
    room.join("fern", "agent")
    root, _ = room.post("alice", "How do I grow tomatoes on a balcony?")
    answer, _ = room.post("fern", "Tomatoes need six hours of sun and a deep pot.", reply_to=root)
    follow, _ = room.post(bob, "Which pot size, exactly?", reply_to=answer)
    room.post(bob, "Unrelated: lovely weather for basil. ✓")
    store.save(room.collect_events())

    runner = Runner(Threads, database_url, schema, batch_size=3).start()
    reader = Reader(database_url, schema)
    try:
        runner.wait_for()
        row = threads.thread(reader, name)
        texts = [m.text for m in store.events(room_id(name)) if hasattr(m, "text")]
        assert row["message_count"] == 4
        assert row["bytes"] == sum(len(t.encode()) for t in texts)
        assert row["members"] == 3 and row["topic"] == "gardening"
        assert row["archived"] is False and row["forked_from"] is None

        assert [m["message_id"] for m in threads.chain(reader, name, follow)] == \
            [root, answer, follow]
        tree = threads.replies(reader, name, root)
        assert [(m["message_id"], m["depth"]) for m in tree] == [(root, 0), (answer, 1),
                                                                  (follow, 2)]
        found = threads.search(reader, "tomato pots", room=name)
        assert [m["message_id"] for m in found] == [answer]
        assert threads.search(reader, '"lovely weather"', room=name)[0]["author_id"] == bob
        assert threads.usage(reader, author=bob) == {
            "messages": 2, "bytes": sum(len(t.encode()) for t in texts[2:])}
        with pytest.raises(NotFound):
            threads.chain(reader, name, "no-such-message")

        # Live: the owner archives the thread (it leaves the listing), then unarchives it.
        with pytest.raises(Forbidden):
            set_archived(store, name, True, by=bob)
        assert set_archived(store, name, True, by="alice")["changed"] is True
        assert set_archived(store, name, True, by="admin", is_admin=True)["changed"] is False
        runner.wait_for()
        assert threads.thread(reader, name)["archived"] is True
        assert name not in _listed(reader, archived=False)
        assert name in _listed(reader, archived=True)
        set_archived(store, name, False, by="alice")
        runner.wait_for()
        assert threads.thread(reader, name)["archived"] is False
        assert name in _listed(reader, archived=False)

        # Closing the room archives its thread too; a fork of its first five positions.
        room.archive()
        store.save(room.collect_events())
        parent = store.events(room_id(name))
        fork = Room.fork(f"{name}-f", parent[:5], "carol")
        store.save(fork.collect_events())
        runner.wait_for()
        closed = threads.thread(reader, name)
        assert (closed["archived"], closed["closed"]) == (True, True)
        forked = threads.thread(reader, f"{name}-f")
        assert forked["forked_from"] == name and forked["forked_at"] == 5
        assert forked["message_count"] == 1  # position 5 is the first message
        assert forked["archived"] is False
    finally:
        reader.close()
        runner.close()


def _listed(reader: Reader, archived: bool) -> list[str]:
    return [t["name"] for t in threads.listing(reader, archived=archived, limit=100_000)]
