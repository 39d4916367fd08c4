"""Group commit: events produced while a save is in flight go into the next save together.

Delivery (``after``: publishing, handing events to agents) of one batch runs while the next
batch is saved, never before its own save and always in save order; at most one delivery is
outstanding. py-spy over ``bench.append`` showed the next save waiting for the previous
batch's Valkey round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

Save = Callable[[list[Any]], Awaitable[None]]
After = Callable[[list[Any]], Awaitable[None]]
Reset = Callable[[], Awaitable[None]]
log = logging.getLogger(__name__)


class GroupCommitter:
    """Serialises saves of one stream, batching whatever queued up behind the running save."""

    def __init__(self, save: Save, after: After, reset: Reset) -> None:
        self._save, self._after, self._reset = save, after, reset
        self._queue: list[tuple[list[Any], asyncio.Future[None]]] = []
        self._running = False
        self._settled: list[asyncio.Future[None]] = []
        self._delivering: asyncio.Task[None] | None = None

    def idle(self) -> bool:
        """Whether nothing is being saved or delivered."""
        return not self._running and not self._queue and \
            (self._delivering is None or self._delivering.done())

    async def settle(self) -> None:
        """Return once every event handed in so far is saved (or failed) and delivered."""
        if self._running:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._settled.append(future)
            await future
        if self._delivering is not None:
            await asyncio.shield(self._delivering)

    async def _deliver(self, previous: asyncio.Task[None] | None, events: list[Any]) -> None:
        if previous is not None:
            await asyncio.shield(previous)  # in save order; it never raises
        try:
            await self._after(events)
        except Exception:  # noqa: BLE001 - delivery is best effort; the log has them
            log.exception("delivering %d saved events failed", len(events))

    async def commit(self, events: list[Any]) -> None:
        """Return once ``events`` are durable (or raise why they are not)."""
        if not events:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((events, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                events = [e for group, _ in batch for e in group]
                try:
                    await self._save(events)
                except Exception as error:  # noqa: BLE001 - every waiter must hear why
                    # Later commands were built on the failed events: fail them and reload.
                    waiting, self._queue = batch + self._queue, []
                    await self._reset()
                    # Commands that queued during the reload were built on the stale state too.
                    waiting, self._queue = waiting + self._queue, []
                    for _, future in waiting:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
                # At most one delivery runs beside the next save: a stalled Valkey slows the
                # saves down rather than piling up deliveries in memory.
                if self._delivering is not None:
                    await asyncio.shield(self._delivering)
                self._delivering = asyncio.get_running_loop().create_task(
                    self._deliver(self._delivering, events))
        finally:
            self._running = False
            waiting, self._settled = self._settled, []
            for future in waiting:
                if not future.done():
                    future.set_result(None)
