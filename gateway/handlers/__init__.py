"""Frame handlers, one plain function per frame type, grouped by area.

Each handler is ``async (request, principal, connection) -> result``: it asks
``domain.policy`` whether the principal may do this, acts through the actors, and returns the
``ok`` result (or None when it sent its reply itself). The rule of each frame sits next to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

Handler = Callable[[Any, Any, Any], Awaitable[dict[str, Any] | None]]
HANDLERS: dict[str, Handler] = {}

# Set by the connection for each request: resolved once the request holds its place in its
# room's order, so the connection's next frame for that room may start before this one ends.
in_order: ContextVar[asyncio.Future[None] | None] = ContextVar("in_order", default=None)


def queued() -> None:
    """A handler's request now holds its place in order (say: it is in the room's queue)."""
    future = in_order.get()
    if future is not None and not future.done():
        future.set_result(None)


def handles(frame_type: str) -> Callable[[Handler], Handler]:
    """Register the handler of ``frame_type``."""
    def register(handler: Handler) -> Handler:
        assert frame_type not in HANDLERS, f"two handlers for {frame_type}"
        HANDLERS[frame_type] = handler
        return handler
    return register


from gateway.handlers import (  # noqa: E402, F401
    admin,
    agents,
    guards,
    history,
    memory,
    privacy,
    rooms,
)
