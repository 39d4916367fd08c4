"""Virtual actors: rooms and agents on shared hosts are passivated when idle and come back from
the log; timed agents' reminders outlive passivation and restarts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray

from actors import directory
from actors.hosts import host_index
from actors.reminders import Reminders, reminder_book
from domain.ids import room_id
from domain.rooms import Room
from infra.settings import Settings
from salon.platform import Platform
from tests.installations import stop_actors


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def hosted(platform: Platform, name: str) -> Iterator[Settings]:
    """The session's servers, with rooms and agents on two hosts each in a namespace of their
    own, passivated after 0.3 s idle."""
    assert platform.running is not None
    settings = platform.running.settings.model_copy(update={
        "namespace": f"virtual-{name}", "room_hosts": 2, "agent_hosts": 2,
        "idle_seconds": 0.3})
    yield settings
    stop_actors(settings)


def room_host(settings: Settings, room: str) -> Any:
    return ray.get_actor(f"room-host:{host_index(room, 2)}", namespace=settings.namespace)


def messages(platform: Platform, room: str) -> list[tuple[int, str, str]]:
    assert platform.store is not None
    return [(int(e.originator_version), e.author_id, e.text)
            for e in platform.store.events(room_id(room))
            if isinstance(e, Room.MessagePosted)]


def test_a_passivated_room_comes_back_from_its_log_with_one_writer(
        platform: Platform, hosted: Settings, name: str) -> None:
    room = directory.room(name, hosted)
    ray.get(room.create.remote("owner"))
    first = ray.get(room.post.remote("owner", "before the nap"))
    host = room_host(hosted, name)
    assert name in ray.get(host.hosted.remote())
    # Nobody calls it: the host passivates it and snapshots its stream.
    wait_for(lambda: ray.get(host.stats.remote())["passivated"] >= 1,
             "the room to be passivated")
    assert name not in ray.get(host.hosted.remote())
    assert platform.store is not None
    assert platform.store.snapshot(room_id(name), first["position"]) is False, \
        "passivation should have snapshotted the room at its head"
    # No room actor of its own was ever started: the room lives on the host.
    assert directory.running("room", name, hosted) is not None
    with pytest.raises(ValueError):
        ray.get_actor(f"room:{name}", namespace=hosted.namespace)

    # Many calls at once reactivate it once: every post lands exactly once, gapless, in the
    # order each caller saw its own.
    answers = ray.get([directory.room(name, hosted).post.remote("owner", f"after {i}")
                       for i in range(40)])
    positions = sorted(a["position"] for a in answers)
    assert positions == list(range(first["position"] + 1, first["position"] + 41))
    said = messages(platform, name)
    assert [text for _, _, text in said] == ["before the nap"] + \
        [f"after {i}" for i in sorted(range(40), key=lambda i: answers[i]["position"])]
    # A repeated client_msg_id after another passivation still answers the first post.
    again = ray.get(room.post.remote("owner", "once", client_msg_id="m-1"))
    wait_for(lambda: ray.get(host.stats.remote())["passivated"] >= 2, "a second passivation")
    assert ray.get(room.post.remote("owner", "once", client_msg_id="m-1")) == again
    assert [text for _, _, text in messages(platform, name)].count("once") == 1


def test_a_room_is_not_passivated_while_a_call_is_in_flight(platform: Platform,
                                                            hosted: Settings, name: str) -> None:
    room = directory.room(name, hosted)
    head = ray.get(room.create.remote("owner"))
    host = room_host(hosted, name)
    # Passivation asked for again and again while posts are in flight: a core dropped in the
    # middle of a call would leave two writers, and one's posts would fail on a conflict.
    posts = [room.post.remote("owner", f"m{i}") for i in range(60)]
    forced = [host.passivate.remote(name) for _ in range(60)]
    answers = ray.get(posts)
    ray.get(forced)
    assert sorted(a["position"] for a in answers) == list(range(head + 1, head + 61))
    assert sorted(text for _, _, text in messages(platform, name)) == \
        sorted(f"m{i}" for i in range(60))


def test_many_rooms_share_two_host_processes(hosted: Settings, name: str) -> None:
    rooms = [f"{name}-r{i}" for i in range(120)]
    ray.get([directory.room(r, hosted).create.remote("owner") for r in rooms])
    ray.get([directory.room(r, hosted).post.remote("owner", "hi") for r in rooms])
    named = {e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
             if e["namespace"] == hosted.namespace}
    assert named == {"room-host:0", "room-host:1"}, named
    hosts = [ray.get_actor(f"room-host:{i}", namespace=hosted.namespace) for i in (0, 1)]

    def passive() -> list[dict[str, Any]] | None:
        stats = ray.get([h.stats.remote() for h in hosts])
        return stats if all(s["active"] == s["passivating"] == 0 for s in stats) else None

    stats = wait_for(passive, "every room to be passivated")
    assert sum(s["passivated"] for s in stats) >= len(rooms)
    # Each comes back from its log, with what it held.
    infos = ray.get([directory.room(r, hosted).info.remote() for r in rooms])
    assert [i["name"] for i in infos] == rooms
    assert all(i["position"] == infos[0]["position"] and "owner" in i["members"]
               for i in infos)


def run_reminders(settings: Settings, until: Callable[[], Any], what: str) -> Any:
    """Run the platform's reminders loop for this installation until ``until`` holds."""
    stop = Reminders(settings, poll=0.1).start()
    try:
        return wait_for(until, what)
    finally:
        stop()


def said_by(platform: Platform, room: str, author: str) -> list[str]:
    return [text for _, who, text in messages(platform, room) if who == author]


def agent_in_room(settings: Settings, room: str, definition: dict[str, Any]) -> Any:
    """Define an agent, open ``room`` (owned by ``owner``) and add the agent; its handle."""
    agent = directory.agent(definition["name"], settings)
    ray.get(agent.define.remote(definition))
    handle = directory.room(room, settings)
    ray.get(handle.create.remote("owner"))
    ray.get(handle.add_agent.remote(definition["name"], "owner"))
    return agent


def test_an_idle_timer_fires_after_the_agent_was_passivated(platform: Platform,
                                                            hosted: Settings,
                                                            name: str) -> None:
    bot = f"{name}-host"
    agent_in_room(hosted, name, {"name": bot, "idle_after_seconds": 1.5,
                                 "script": ["Quiet in here. Anyone?"]})
    room = directory.room(name, hosted)
    ray.get(room.post.remote("owner", "hello, then silence"))
    agents = ray.get_actor(f"agent-host:{host_index(bot, 2)}", namespace=hosted.namespace)
    book = reminder_book(hosted)
    # The agent saw the message, wrote its reminder and was passivated before it was due.
    wait_for(lambda: bot in book.due(time.time() + 60), "the agent's reminder row")
    wait_for(lambda: bot not in ray.get(agents.hosted.remote()), "the agent's passivation")
    assert said_by(platform, name, bot) == []
    # Only the reminders loop can wake it now: it does when the timer is due.
    run_reminders(hosted, lambda: said_by(platform, name, bot), "the idle turn")
    assert said_by(platform, name, bot) == ["Quiet in here. Anyone?"]
    # Fired once: the row is due never again until someone speaks.
    wait_for(lambda: bot not in book.due(time.time() + 3600), "the row to be due never")


def test_a_schedule_fires_after_the_agent_process_was_killed(platform: Platform, name: str,
                                                             ) -> None:
    assert platform.running is not None
    settings = platform.running.settings.model_copy(update={"namespace": f"restart-{name}"})
    bot = f"{name}-clock"
    agent_in_room(settings, name, {"name": bot, "every_seconds": 1.0, "script": ["tick"]})
    try:
        wait_for(lambda: said_by(platform, name, bot), "the first scheduled turn")
        # Killed for good (as a restart of the installation does): no process, no ticker.
        ray.kill(ray.get_actor(f"agent:{bot}", namespace=settings.namespace),
                 no_restart=True)
        wait_for(lambda: directory.running("agent", bot, settings) is None, "the agent to die")
        before = len(said_by(platform, name, bot))
        time.sleep(1.5)
        assert len(said_by(platform, name, bot)) == before, "nothing should tick while dead"
        run_reminders(settings, lambda: len(said_by(platform, name, bot)) > before,
                      "a scheduled turn after the restart")
    finally:
        stop_actors(settings)


def test_a_paused_agent_is_never_due(platform: Platform, hosted: Settings, name: str) -> None:
    bot = f"{name}-sleeper"
    agent = agent_in_room(hosted, name, {"name": bot, "every_seconds": 0.5, "script": ["zzz"]})
    book = reminder_book(hosted)
    wait_for(lambda: bot in book.due(time.time() + 60), "the reminder row")
    ray.get(agent.pause.remote("admin", True))
    assert bot not in book.due(time.time() + 3600)
    ray.get(agent.resume.remote("admin", True))
    wait_for(lambda: bot in book.due(time.time() + 60), "the row to be due again")


def test_an_agent_activated_by_a_call_follows_the_rooms_overrides(platform: Platform,
                                                                   hosted: Settings,
                                                                   name: str) -> None:
    bot = f"{name}-planner"
    agent = agent_in_room(hosted, name, {"name": bot, "script": ["plan A"]})
    room = directory.room(name, hosted)
    ray.get(room.override_agent.remote(bot, {"script": ["plan B"]}, "owner"))
    agents = ray.get_actor(f"agent-host:{host_index(bot, 2)}", namespace=hosted.namespace)
    wait_for(lambda: ray.get(agents.stats.remote())["passivated"] >= 1
             and bot not in ray.get(agents.hosted.remote()), "the agent's passivation")
    # Woken by a call, not by a delivery: the agent asks the room for its rules.
    ray.get(agent.invoke.remote(name, "owner"))
    wait_for(lambda: said_by(platform, name, bot), "the invoked turn")
    assert said_by(platform, name, bot) == ["plan B"]
