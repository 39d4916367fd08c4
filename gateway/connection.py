"""One WebSocket connection: ``hello`` first, then each frame dispatched to its handler.

The connection only reads, dispatches and writes; what a frame does, and who may do it, is in
``gateway/handlers/`` and ``domain/policy.py``. Frames run concurrently, except that frames for
the same room (or the same agent) keep their order: a frame starts once the one before it in
its lane is answered, but a ``say`` after a ``say`` starts as soon as that one is queued in
the room's order (``gateway/posting.py``), so one connection can pipeline says into one room.
Replies carry their request's ``id`` and may complete out of order. At most ``max_in_flight``
requests are open at once (the socket is not read meanwhile), and at most
``send_queue_frames`` frames wait for a slow reader: past that the reader is disconnected with
close code 4008 rather than held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from domain.errors import Invalid, RateLimited, SalonError, Unauthenticated, Unavailable
from domain.policy import Principal
from gateway import protocol as p
from gateway.handlers import HANDLERS, in_order
from gateway.services import Services
from gateway.subscriptions import Subscription

log = logging.getLogger(__name__)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_TOO_MANY = 4429
# Bytes a peer's socket may have unsent before its frames queue for the writer task.
WRITE_NOW_LIMIT = 64 * 1024


class TooSlow(Exception):
    """The peer does not read what it is sent."""


class Registry:
    """The open connections of this gateway, by user: so a revoked token's close at once."""

    def __init__(self) -> None:
        self.by_user: dict[str, set[Connection]] = {}

    def add(self, connection: Connection) -> None:
        assert connection.user is not None
        self.by_user.setdefault(connection.user.name, set()).add(connection)

    def discard(self, connection: Connection) -> None:
        if connection.user is not None:
            found = self.by_user.get(connection.user.name)
            if found is not None:
                found.discard(connection)
                if not found:
                    del self.by_user[connection.user.name]

    def count(self, name: str) -> int:
        return len(self.by_user.get(name, ()))

    async def close_user(self, name: str, reason: str = "token revoked") -> int:
        """Close every connection of ``name`` with 4401; returns how many."""
        found = list(self.by_user.pop(name, ()))
        for connection in found:
            connection.user = None
            await connection.close(CLOSE_UNAUTHENTICATED, reason)
        return len(found)


@dataclass
class _Step:
    """A request's place in its lane: ``placed`` once it holds its place in order (a say in
    its room's queue), ``done`` once it is answered."""

    placed: asyncio.Future[None]
    done: asyncio.Future[None]
    say: bool

    def waits_for(self, previous: _Step) -> asyncio.Future[None]:
        """Says follow a say once it is queued; anything else waits for the answer."""
        return previous.placed if self.say and previous.say else previous.done


def _lane(request: Any) -> str | None:
    """Frames of one lane keep their order: one room, or one agent."""
    room = getattr(request, "room", None)
    if isinstance(room, str):
        return f"room:{room}"
    agent = getattr(request, "agent", None)
    if isinstance(agent, str):
        return f"agent:{agent}"
    return None


class Connection:
    """Request handling for one connection."""

    def __init__(self, ws: ServerConnection, services: Services) -> None:
        self.ws = ws
        self.services = services
        settings = services.settings
        self.user: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue(settings.send_queue_frames)
        self.writing = False  # the writer task holds a frame: later ones queue behind it
        self.slots = asyncio.Semaphore(settings.max_in_flight)
        self.lanes: dict[str, _Step] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.expiry: asyncio.TimerHandle | None = None
        self.closer: asyncio.Task[None] | None = None

    # -- writing ------------------------------------------------------------------------

    def send(self, frame: str) -> None:
        """Queue a frame for the peer; a peer that lets the queue fill is cut off."""
        if self.closing:
            return
        if not self.writing and self.outbox.empty() and self._write_now(frame):
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("closing a connection of %s: it read none of %d queued frames",
                        self.user.name if self.user else "an anonymous peer",
                        self.outbox.maxsize)
            asyncio.get_running_loop().create_task(
                self.close(CLOSE_TOO_SLOW, "too slow: frames were not read"))

    async def asend(self, frame: str) -> None:
        """``send`` for code that expects to await (subscriptions)."""
        self.send(frame)
        if self.closing:
            raise TooSlow()

    def _write_now(self, frame: str) -> bool:
        """Write ``frame`` at once when nothing is queued before it and the socket keeps up.

        websockets' ``broadcast`` writes without awaiting the socket's drain; the frames of a
        peer whose kernel buffer is backed up (past ``WRITE_NOW_LIMIT``) go through the queue
        and the writer task instead, which waits for the drain and bounds what is buffered.
        """
        transport = self.ws.transport
        if transport is None or transport.get_write_buffer_size() > WRITE_NOW_LIMIT:
            return False
        try:
            broadcast([self.ws], frame, raise_exceptions=True)
        except Exception:  # noqa: BLE001 - not open any more: the reader sees the close
            return True
        return True

    async def _write(self) -> None:
        while True:
            frame = await self.outbox.get()
            self.writing = True
            try:
                await self.ws.send(frame)
            finally:
                self.writing = self.outbox.qsize() > 0

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        # A peer that reads nothing never answers the close handshake: give it a second.
        try:
            await asyncio.wait_for(self.ws.close(code, reason),
                                   timeout=1 if code == CLOSE_TOO_SLOW else 5)
        except ConnectionClosed:
            pass
        except TimeoutError:
            self.ws.transport.abort()  # the handshake did not finish: cut the connection
        except Exception:  # noqa: BLE001 - closing anyway
            log.debug("close failed", exc_info=True)
            self.ws.transport.abort()

    # -- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._write())
        try:
            if await self._hello():
                async for text in self.ws:
                    await self.slots.acquire()
                    self._dispatch(text)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            if self.expiry is not None:
                self.expiry.cancel()
            self.services.connections.discard(self)
            for task in list(self.tasks):
                task.cancel()
            for room in list(self.subscriptions):
                await self.unfollow(room)
            writer.cancel()

    async def _hello(self) -> bool:
        """The first frame must be a valid ``hello``; anything else closes the connection."""
        try:
            text = await self.ws.recv()
        except ConnectionClosed:
            return False
        request_id: p.RequestId = None
        try:
            request, request_id = p.parse(text)
            if not isinstance(request, p.Hello):
                raise Unauthenticated("the first frame must be hello with your token")
            user = await asyncio.to_thread(self.services.accounts.authenticate, request.token)
        except SalonError as failure:
            failure = failure if isinstance(failure, Unauthenticated) else \
                Unauthenticated(f"the first frame must be a valid hello: {failure.message}")
            await self._refuse(request_id, failure, CLOSE_UNAUTHENTICATED)
            return False
        if self.services.connections.count(user.name) >= \
                self.services.settings.max_connections_per_user:
            await self._refuse(request_id, RateLimited(
                f"{user.name} has {self.services.settings.max_connections_per_user} "
                "connections open already; close one first"), CLOSE_TOO_MANY)
            return False
        self.user = user
        self.services.connections.add(self)
        if user.expires_at is not None:
            # An expiring token's connection ends when the token does, like a revoked one's.
            delay = max(0.0, user.expires_at - time.time())
            self.expiry = asyncio.get_running_loop().call_later(delay, self._expire)
        self.send(p.ok(request_id, {"user": user.name, "role": user.role}))
        return True

    def _expire(self) -> None:
        self.services.connections.discard(self)
        self.user = None  # nothing more is served while the close handshake runs
        self.closer = asyncio.get_running_loop().create_task(
            self.close(CLOSE_UNAUTHENTICATED, "token expired"))

    async def _refuse(self, request_id: p.RequestId, failure: SalonError, code: int) -> None:
        try:
            await self.ws.send(p.error(request_id, failure))
        except ConnectionClosed:
            pass
        await self.close(code, failure.code)

    def _dispatch(self, text: str | bytes) -> None:
        request_id: p.RequestId = None
        try:
            request, request_id = p.parse(text)
        except p.FrameInvalid as failure:
            self.send(p.error(failure.request_id, failure))
            self.slots.release()
            return
        except SalonError as failure:
            self.send(p.error(None, failure))
            self.slots.release()
            return
        lane = _lane(request)
        loop = asyncio.get_running_loop()
        step = _Step(loop.create_future(), loop.create_future(), isinstance(request, p.Say))
        previous = self.lanes.get(lane) if lane else None
        before = step.waits_for(previous) if previous is not None else None
        if lane:
            self.lanes[lane] = step
        task = loop.create_task(self._handle(request, request_id, before, step, lane))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, request: Any, request_id: p.RequestId,
                      before: asyncio.Future[None] | None, step: _Step,
                      lane: str | None) -> None:
        try:
            if before is not None:
                await asyncio.shield(before)
            in_order.set(step.placed)
            answer = await self._answer(request, request_id)
            if answer is not None:
                self.send(answer)
        finally:
            for future in (step.placed, step.done):
                if not future.done():
                    future.set_result(None)
            if lane and self.lanes.get(lane) is step:
                del self.lanes[lane]
            self.slots.release()

    async def _answer(self, request: Any, request_id: p.RequestId) -> str | None:
        """The reply frame; None when the handler sent its reply itself (``join``)."""
        try:
            user = self.user
            if user is None:
                raise Unauthenticated("this connection is no longer authenticated")
            if isinstance(request, p.Hello):
                raise Invalid("already authenticated; hello comes once, first")
            self.services.limits.frame(user)
            result = await HANDLERS[request.type](request, user, self)
            return None if result is None else p.ok(request_id, result)
        except SalonError as failure:
            return p.error(request_id, failure)
        except Exception:  # noqa: BLE001 - one bad request must not end the connection
            log.exception("request %s failed", getattr(request, "type", "?"))
            return p.error(request_id, Unavailable("internal error; see server log"))

    # -- following rooms ----------------------------------------------------------------

    async def follow(self, room: str) -> Subscription:
        await self.unfollow(room)
        subscription = Subscription(room, self.services.store, self.asend,
                                    self.services.settings.send_queue_frames, self._overflow,
                                    send_now=self.send)
        # Follow before reading the head, so nothing published after the head is missed.
        await self.services.feed.follow(room, subscription.on_frame)
        self.subscriptions[room] = subscription
        return subscription

    def _overflow(self) -> None:
        asyncio.get_running_loop().create_task(
            self.close(CLOSE_TOO_SLOW, "too slow: room events were not read"))

    async def unfollow(self, room: str) -> None:
        subscription = self.subscriptions.pop(room, None)
        if subscription is not None:
            await self.services.feed.unfollow(room, subscription.on_frame)
            await subscription.stop()
