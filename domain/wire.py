"""Plain JSON shapes of recorded events, as clients and agents receive them."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from uuid import UUID

# Bookkeeping of the event store, and fields kept server-side only.
_HIDDEN = {"originator_id", "originator_version", "timestamp", "originator_topic", "request_id"}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def kind_of(event: object) -> str:
    """``MessagePosted`` -> ``message_posted``."""
    return _SNAKE.sub("_", type(event).__name__).lower()


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def event_body(event: Any) -> dict[str, Any]:
    """The ``event`` object of a protocol frame: kind, time, then the event's own fields."""
    body: dict[str, Any] = {"kind": kind_of(event), "at": _plain(event.timestamp)}
    for key, value in vars(event).items():
        if key not in _HIDDEN:
            body[key] = _plain(value)
    return body


def event_frame(room: str, event: Any) -> dict[str, Any]:
    """A whole ``event`` frame for ``room``."""
    return {"type": "event", "room": room, "position": int(event.originator_version),
            "event": event_body(event)}


def encode(frame: dict[str, Any]) -> str:
    """The one encoding of a frame, shared by live delivery and backfill."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
