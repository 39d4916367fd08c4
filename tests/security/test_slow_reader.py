"""A peer that never reads is cut off (close code 4008) instead of growing the gateway's memory;
the other clients of the room keep receiving everything. The figures (memory, other clients'
delivery p99) are in ``bench.slow_reader``."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from gateway.auth import Accounts
from gateway.server import Gateway
from salon.platform import Platform, Running
from tests.clients import Client


async def test_a_reader_that_never_reads_is_disconnected(
        salon: Running, platform: Platform, name: str) -> None:
    # Posts come fast now (says pipeline); the frame rate limit is not what this tests.
    settings = salon.settings.model_copy(update={"send_queue_frames": 64,
                                                 "frames_per_second": 1e6, "frame_burst": 10**6})
    gateway = Gateway(settings, platform.store, Accounts(platform.store))
    port = await gateway.start("127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/v1/ws"
    try:
        admin = await Client.open(url, salon.admin_token)
        await admin.ok({"type": "create_room", "name": name})
        slow_name = f"{name}-sloth"
        token = (await admin.ok({"type": "create_token", "user": slow_name}))["token"]
        # max_queue=1: the client library stops reading the socket after one unread frame.
        slow = await connect(url, max_queue=1, max_size=None)
        await slow.send(json.dumps({"type": "hello", "token": token, "id": 1}))
        await slow.send(json.dumps({"type": "join", "room": name, "id": 2}))
        await admin.ok({"type": "join", "room": name})

        def connected() -> int:
            return gateway.connections.count(slow_name)

        await admin.wait_for(lambda _: connected() == 1, "the slow reader's hello")
        text = "x" * 15_000
        posted = 0
        while connected() and posted < 3_000:
            await asyncio.gather(*(admin.ok({"type": "say", "room": name, "text": text})
                                   for _ in range(20)))
            posted += 20
        # Cut off (the close handshake is given a second, then the connection is aborted).
        await admin.wait_for(lambda _: connected() == 0,
                             f"the slow reader cut off after {posted} posts of 15 kB")
        # The reader that reads saw every post, in order, gapless.
        await admin.wait_for(lambda c: len(c.messages(name)) == posted, "every post")
        positions = admin.positions(name)
        assert positions == list(range(positions[0], positions[0] + len(positions)))
        await admin.close()
        slow.transport.abort()
    finally:
        await gateway.stop()
