"""Agents sharing host processes behave like agents with processes of their own."""

from __future__ import annotations

import time

import ray

from actors import directory
from actors.hosts import host_index
from domain.ids import room_id
from salon.platform import Platform
from tests.installations import stop_actors


def test_hosted_agents_answer_through_one_writer_each(platform: Platform, name: str) -> None:
    # A namespace of its own: hosts keep the settings they started with, and one namespace is
    # one installation (its room hosts must hand events to agents the way its gateway does).
    settings = platform.running.settings.model_copy(
        update={"agent_hosts": 2, "namespace": f"hosts-{name}"})
    room = directory.room(name, settings)
    ray.get(room.create.remote("owner"))
    bots = [f"{name}-b{i}" for i in range(6)]
    for bot in bots:
        ray.get(directory.agent(bot, settings).define.remote({"name": bot,
                                                              "script": [f"{bot} here"]}))
        ray.get(room.add_agent.remote(bot, "owner"))
    assert {host_index(b, 2) for b in bots} == {0, 1}, "the names should spread over both hosts"
    ray.get(room.post.remote("owner", " ".join(f"@{b}" for b in bots)))
    host = ray.get_actor("agent-host:0", namespace=settings.namespace)
    hosted = ray.get(host.hosted.remote())
    assert hosted and all(host_index(b, 2) == 0 for b in hosted)

    def replies() -> list[str]:
        info = ray.get(room.info.remote())
        return [e.text for e in platform.store.events(
            room_id(name), 0, info["position"])
            if type(e).__name__ == "MessagePosted" and e.author_id != "owner"]

    try:
        deadline = time.monotonic() + 60
        while sorted(replies()) != sorted(f"{b} here" for b in bots):
            assert time.monotonic() < deadline, f"replies so far: {replies()}"
            time.sleep(0.1)
    finally:
        stop_actors(settings)
