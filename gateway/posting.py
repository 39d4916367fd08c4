"""People's posts leave this gateway in batches: one call in flight per room, in arrival order.

Ray does not keep the order of calls into an async actor (and retries them), so a gateway that
fired one ``post`` call per ``say`` could not pipeline a connection's frames into one room
without reordering them. Instead each room has a queue here: the first ``say`` goes out at
once; those that arrive while it is in flight wait and go together in the next
``RoomActor.post_many`` call (one Ray round trip and one commit for all of them). Each ``say``
is answered alone, with its own result or error. Queues exist only while a room has posts in
flight, and a batch holds at most ``max_batch`` posts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.errors import SalonError, Unavailable
from domain.quotas import Limits

log = logging.getLogger(__name__)
Call = Callable[[Any], Any]  # awaits an actor call (gateway.services.call)


@dataclass
class _Queue:
    actor: Any
    limits: Limits | None = None  # the newest the gateway gave
    waiting: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = field(
        default_factory=list)


class Posters:
    """The per-room queues of one gateway process."""

    def __init__(self, call: Call, max_batch: int = 256) -> None:
        self.call = call
        self.max_batch = max_batch
        self.queues: dict[str, _Queue] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def post(self, room: str, actor: Any, item: dict[str, Any], limits: Limits | None,
             ) -> asyncio.Future[dict[str, Any]]:
        """Queue ``item`` (``RoomActor.post``'s arguments) for ``room``; in order, at once.

        The returned future gets the post's ``{"message_id", "position"}`` or its error.
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        queue = self.queues.get(room)
        if queue is None:
            queue = self.queues[room] = _Queue(actor)
            task = asyncio.get_running_loop().create_task(self._drain(room, queue))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        queue.limits = limits
        queue.waiting.append((item, future))
        return future

    async def _drain(self, room: str, queue: _Queue) -> None:
        try:
            while queue.waiting:
                batch = queue.waiting[:self.max_batch]
                del queue.waiting[:self.max_batch]
                try:
                    answers = await self.call(queue.actor.post_many.remote(
                        [item for item, _ in batch], queue.limits))
                except SalonError as failure:
                    answers = [failure] * len(batch)
                except Exception:  # noqa: BLE001 - every waiting say must get an answer
                    log.exception("posting %d messages to %s failed", len(batch), room)
                    answers = [Unavailable("posting failed; see the server log")] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its connection went away
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            if self.queues.get(room) is queue:
                del self.queues[room]
            for _, future in queue.waiting:  # only if the loop itself was cancelled
                if not future.done():
                    future.set_exception(Unavailable("the gateway is stopping; try again"))
