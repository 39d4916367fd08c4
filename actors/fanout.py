"""Hand a room's saved events to its agents in order, one call in flight per agent.

Ray does not keep the order of calls into an async actor (nor across retries), and an agent
skips frames at or before the newest position it has handled. Two batches sent at once could
land newest first and the older one would be skipped: a mention never answered. So each
agent has one call in flight; what is saved meanwhile waits and goes in the next call,
merged into one batch (fewer calls when the room is busy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
Resolve = Callable[[str], Any]


class AgentFanout:
    """Per-agent ordered delivery of ``on_room_events`` batches from one room actor."""

    def __init__(self, room: str, resolve: Resolve) -> None:
        self.room = room
        self.resolve = resolve
        self.handles: dict[str, Any] = {}
        self.pending: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
        self.senders: dict[str, asyncio.Task[None]] = {}

    def send(self, agent: str, frames: list[dict[str, Any]], policy: dict[str, Any]) -> None:
        """Queue ``frames`` for ``agent``; they follow whatever was queued for it before."""
        queued, _ = self.pending.get(agent, ([], policy))
        self.pending[agent] = (queued + frames, policy)
        sender = self.senders.get(agent)
        if sender is None or sender.done():
            self.senders[agent] = asyncio.get_running_loop().create_task(self._send(agent))

    def idle(self) -> bool:
        """Whether nothing is queued or being handed over."""
        return not self.pending and all(t.done() for t in self.senders.values())

    async def settle(self) -> None:
        """Return once every queued batch has been handed over (or failed)."""
        while self.senders:
            tasks = [t for t in self.senders.values() if not t.done()]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, agent: str) -> None:
        while agent in self.pending:
            frames, policy = self.pending.pop(agent)
            for attempt in (1, 2):
                try:
                    handle = self.handles.get(agent)
                    if handle is None:
                        handle = self.handles[agent] = self.resolve(agent)
                    await handle.on_room_events.remote(self.room, frames, policy)
                    break
                except Exception:  # noqa: BLE001 - one agent's failure never stops the room
                    self.handles.pop(agent, None)
                    if attempt == 2:
                        log.exception("handing %d events of room %s to agent %s failed",
                                      len(frames), self.room, agent)
