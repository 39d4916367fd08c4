"""Archiving and unarchiving a thread: recorded in the room's ``Thread`` stream, shown by the
threads view (archived threads leave the default listing; the room itself stays open).

The thread stream has two writers (this command and the title/summary jobs); optimistic
concurrency guards it, and a command that lost the race loads the stream again and retries.
"""

from __future__ import annotations

from typing import Any

from domain import policy
from domain.errors import Conflict
from domain.ids import room_id
from domain.policy import Principal
from domain.rooms import Room
from domain.threads import Thread, thread_id
from infra.store import EventStore

ATTEMPTS = 3


def set_archived(store: EventStore, room: str, archived: bool, by: str,
                 is_admin: bool = False) -> dict[str, Any]:
    """Archive (or unarchive) room ``room``'s thread as ``by`` (its owner or an admin)."""
    found = store.get(Room, room_id(room), f"room {room!r} does not exist; `salon rooms list` "
                      "shows the rooms")
    policy.require_room_owner(Principal.acting(by, is_admin), found.facts(), "archive its thread")
    for attempt in range(ATTEMPTS):
        thread = store.get(Thread, thread_id(room), room) if store.exists(thread_id(room)) \
            else Thread.open(room)
        changed = thread.archive(by) if archived else thread.unarchive(by)
        try:
            store.save(thread.collect_events())
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return {"room": room, "archived": archived, "changed": changed}
    raise AssertionError("unreachable")
