"""Whether agents may remember a person: read from the person's user stream.

The rule itself is ``domain.users.User.consents``; this reads the stream through the event log
port, so the memory service asks it before asking a model for facts about someone. What
people set, see and delete of their consent is ``infra/consent.py``; the memory view applies
the same settings as it follows the log (``projections/memories.py``).
"""

from __future__ import annotations

from domain.errors import NotFound
from domain.ids import check_name, user_id
from domain.users import User
from memory.ports import EventLog


def person(events: EventLog, name: str) -> User | None:
    """``name``'s user stream, or None for a program (or anyone) that has none."""
    try:
        return events.get(User, user_id(check_name(name, "user")), f"user {name!r}")
    except NotFound:
        return None


def consents(events: EventLog, name: str, room: str | None = None) -> bool:
    """Whether agents may remember ``name`` in ``room`` (programs with no user stream, and
    people who never said otherwise: yes)."""
    user = person(events, name)
    return True if user is None else user.consents(room)
