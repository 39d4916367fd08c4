"""Names people type, and the stable stream ids derived from them."""

from __future__ import annotations

import re
import uuid

from domain.errors import Invalid

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NAMESPACE = uuid.UUID("5a1d0c3e-7d1b-4c55-9a3f-2f8e1c0b7a11")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid handle, else raise Invalid saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise Invalid(
            f"{what} name {name!r} is not valid: use 1-64 lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    return name


def room_id(name: str) -> uuid.UUID:
    """The stream id of the room called ``name``."""
    return uuid.uuid5(_NAMESPACE, f"room:{check_name(name, 'room')}")


def agent_id(name: str) -> uuid.UUID:
    """The stream id of the agent called ``name``."""
    return uuid.uuid5(_NAMESPACE, f"agent:{check_name(name, 'agent')}")


def user_id(name: str) -> uuid.UUID:
    """The stream id of the user called ``name``."""
    return uuid.uuid5(_NAMESPACE, f"user:{check_name(name, 'user')}")


def new_id() -> str:
    """A fresh random id for messages, turns and requests."""
    return uuid.uuid4().hex
