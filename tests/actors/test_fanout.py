"""A room hands its events to an agent in order, one call at a time, nothing skipped."""

from __future__ import annotations

import asyncio
import random

import ray

from actors.fanout import AgentFanout
from salon.platform import Platform


@ray.remote(num_cpus=0)
class SlowListener:
    """An async actor, like an agent: calls may run interleaved, each takes a random while."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def on_room_events(self, room: str, frames: list[dict], policy: dict) -> int:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(random.uniform(0, 0.01))
        self.seen.extend(int(f["position"]) for f in frames)
        self.in_flight -= 1
        return len(frames)

    async def report(self) -> tuple[list[int], int]:
        return self.seen, self.most_in_flight


def test_batches_reach_an_async_actor_in_order_one_call_at_a_time(platform: Platform,
                                                                   name: str) -> None:
    listener = SlowListener.remote()

    async def drive() -> None:
        fanout = AgentFanout(name, lambda _: listener)
        for position in range(1, 201):
            fanout.send("bot", [{"position": position}], {"mode": "free"})
            if position % 7 == 0:
                await asyncio.sleep(0.002)
        await fanout.settle()

    asyncio.run(drive())
    seen, most = ray.get(listener.report.remote())
    assert seen == list(range(1, 201))
    assert most == 1


def test_a_failing_agent_does_not_stop_delivery_to_the_others(platform: Platform,
                                                               name: str) -> None:
    listener = SlowListener.remote()
    dead = SlowListener.remote()
    ray.get(dead.report.remote())
    ray.kill(dead, no_restart=True)

    async def drive() -> None:
        fanout = AgentFanout(name, lambda agent: listener if agent == "alive" else dead)
        for position in (1, 2, 3):
            fanout.send("dead", [{"position": position}], {})
            fanout.send("alive", [{"position": position}], {})
        await fanout.settle()

    asyncio.run(drive())
    assert ray.get(listener.report.remote())[0] == [1, 2, 3]
