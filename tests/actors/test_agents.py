"""Agent actors: a crash mid-turn is closed honestly, and nothing is answered twice."""

from __future__ import annotations

import ray

from actors import directory
from domain.agents import Agent, AgentDefinition
from domain.ids import agent_id
from domain.rooms import Room
from domain.wire import event_frame
from salon.platform import Platform


def test_an_agent_restarted_mid_turn_closes_the_turn_and_does_not_repeat_it(
        platform: Platform, name: str) -> None:
    settings = platform.running.settings
    store = platform.store
    bot = f"{name}-bot"
    agent = Agent.define(AgentDefinition(name=bot))
    agent.start_turn("t-cut", name, {"kind": "mention", "position": 4, "by": "alice"})
    store.save(agent.collect_events())  # as if the actor died right after TurnStarted

    actor = directory.agent(bot, settings)
    info = ray.get(actor.info.remote())
    assert info["turns"] == 1
    kinds = [type(e).__name__ for e in store.events(agent_id(bot))]
    assert kinds == ["AgentDefined", "TurnStarted", "TurnFailed"]
    assert store.events(agent_id(bot))[-1].error == "the agent restarted during this turn"

    room = Room.create(name, "alice")
    room.join(bot, "agent")
    room.post("alice", f"old question @{bot}")
    frames = [event_frame(name, e) for e in room.collect_events()]
    assert frames[-1]["position"] == 4
    assert ray.get(actor.on_room_events.remote(name, frames)) == 0, "answered position 4 again"
    assert store.get(Agent, agent_id(bot), "agent").open_turns() == []
