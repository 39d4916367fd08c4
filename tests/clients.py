"""A protocol v1 test client: requests by id, and a record of every event and ephemeral frame."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

DEADLINE = 30.0


class Client:
    """Speaks protocol v1 over a real WebSocket; collects frames as they arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.unmatched: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str | None = None, **options: Any) -> Client:
        ws = await connect(url, max_size=None, **options)
        client = cls(ws)
        if token is not None:
            reply = await client.request({"type": "hello", "token": token})
            assert reply["type"] == "ok", reply
        return client

    async def _read(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "event":
                self.events.append(frame)
            elif kind == "ephemeral":
                self.ephemerals.append(frame)
            elif kind in ("ok", "error") and frame.get("id") in self.replies:
                self.replies.pop(frame["id"]).set_result(frame)
            else:
                self.unmatched.append(frame)
            self.changed.set()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` with a fresh id; return the ok or error frame answering it."""
        frame = {**frame, "id": next(self.ids)}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[frame["id"]] = future
        await self.ws.send(json.dumps(frame))
        return await asyncio.wait_for(future, DEADLINE)

    async def ok(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame``; return its result, failing the test on an error frame."""
        reply = await self.request(frame)
        assert reply["type"] == "ok", f"{frame} -> {reply}"
        result: dict[str, Any] = reply["result"]
        return result

    async def wait_for(self, predicate: Any, what: str, deadline: float = DEADLINE) -> None:
        """Wait until ``predicate(self)`` holds; fail saying what was seen."""
        end = time.monotonic() + deadline
        while not predicate(self):
            remaining = end - time.monotonic()
            if remaining <= 0:
                recent = [(e.get("kind"), e.get("agent"), e.get("error"))
                          for e in self.ephemerals[-10:]]
                raise AssertionError(
                    f"timed out waiting for {what}; saw {len(self.events)} events: "
                    f"{[(e['position'], e['event']['kind']) for e in self.events[-20:]]}; "
                    f"last ephemerals: {recent}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    def positions(self, room: str) -> list[int]:
        return [e["position"] for e in self.events if e["room"] == room]

    def messages(self, room: str) -> list[dict[str, Any]]:
        return [e["event"] for e in self.events
                if e["room"] == room and e["event"]["kind"] == "message_posted"]

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
