"""Agents, users, turn triggers and the wire form, with no server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.agents import Agent, AgentDefinition
from domain.errors import Conflict, Invalid
from domain.ids import agent_id, user_id
from domain.rooms import Room
from domain.turns import Manners, RoomView, triggers_for
from domain.users import User, hash_token, token_user
from domain.wire import event_frame

NOW = 2_000_000_000.0


def test_an_agent_records_a_whole_turn() -> None:
    agent = Agent.define(AgentDefinition(name="ada", opening_line="hi"))
    assert agent.id == agent_id("ada")
    agent.start_turn("t1", "lobby", {"kind": "mention", "position": 7, "by": "alice"})
    agent.record_model_call("t1", "scripted", "scripted-echo", {"positions": [7]},
                            {"text": "hello", "tool_calls": []}, 10, 2, 0.0, 1.5)
    agent.complete_turn("t1", "m1")
    assert agent.handled == {"lobby": 7} and agent.open_turns() == []
    with pytest.raises(Conflict, match="not open"):
        agent.complete_turn("t1", "m1")
    kinds = [type(e).__name__ for e in agent.collect_events()]
    assert kinds == ["AgentDefined", "TurnStarted", "ModelCalled", "TurnCompleted"]


def test_a_failed_turn_is_closed_with_its_reason() -> None:
    agent = Agent.define(AgentDefinition(name="ada"))
    agent.start_turn("t1", "lobby", {"kind": "invoke", "position": None, "by": "alice"})
    agent.fail_turn("t1", "boom")
    assert agent.open_turns() == []
    assert type(agent.collect_events()[-1]).__name__ == "TurnFailed"


def test_definitions_are_validated() -> None:
    with pytest.raises(ValidationError, match="agent name"):
        AgentDefinition(name="Not OK")
    with pytest.raises(ValidationError, match="extra"):
        AgentDefinition.model_validate({"name": "ada", "colour": "blue"})
    assert "You are ada, a tutor." in AgentDefinition(name="ada", role="a tutor").system_prompt()


def test_tokens_name_their_user_and_only_hashes_are_recorded() -> None:
    user = User.register("alice", "admin")
    assert user.id == user_id("alice") and user.is_admin
    token = user.issue_token("laptop")
    assert token_user(token) == "alice" and user.accepts(token)
    assert not user.accepts(token + "x")
    recorded = repr([e.__dict__ for e in user.collect_events()])
    assert token not in recorded and hash_token(token) in recorded
    user.revoke_token(hash_token(token))
    assert not user.accepts(token)
    with pytest.raises(Invalid):
        token_user("no-dot")
    with pytest.raises(Invalid, match="role"):
        User.register("bob", "king")


def frames_of(room: Room) -> list[dict]:
    return [event_frame(room.name, e) for e in room.collect_events()]


def test_agents_answer_mentions_open_on_joining_and_never_repeat() -> None:
    room = Room.create("lobby", "alice")
    room.join("ada", "agent")
    room.post("alice", "hello @ada")
    room.post("alice", "hello @bo")
    room.post("ada", "I answer @ada myself?")
    frames = frames_of(room)
    view = RoomView()
    found = triggers_for(Manners("ada", opening_line="hi all"), "lobby", frames, view, NOW)
    assert [(t.kind, t.position, t.by) for t in found] == [("joined", 3, None),
                                                          ("mention", 4, "alice")]
    assert triggers_for(Manners("ada"), "lobby", frames, view, NOW) == []


def test_agent_chains_end_at_the_streak_cap() -> None:
    room = Room.create("lobby", "alice")
    room.join("ada", "agent")
    room.join("bo", "agent")
    for i in range(5):
        room.post("bo" if i % 2 == 0 else "ada", "@ada @bo")
    frames = frames_of(room)
    view = RoomView(policy={"max_agent_streak": 3})
    answered = [t.position for t in triggers_for(Manners("ada"), "lobby", frames, view, NOW)]
    streaks = {f["position"]: f["event"].get("agent_streak") for f in frames}
    assert answered and all(streaks[p] < 3 for p in answered)


def test_wire_frames_hide_store_bookkeeping_and_server_side_keys() -> None:
    room = Room.create("lobby", "alice")
    room.post("alice", "hi", request_id="secret-key")
    frame = frames_of(room)[-1]
    assert frame["position"] == 3 and frame["room"] == "lobby"
    body = frame["event"]
    assert body["kind"] == "message_posted" and body["text"] == "hi"
    assert "request_id" not in body and "originator_id" not in body and "at" in body


def test_a_script_line_that_is_not_a_valid_template_is_refused_when_defined() -> None:
    from domain.definitions import build

    with pytest.raises(ValueError, match="script line 2 is not a valid reply template"):
        build({"name": "parrot", "script": ["fine {text}", "oops {"]})
    tool_then_reply = ['{"tool": "calculator", "arguments": {"expression": "1+1"}}',
                       "it is {result}, {author}"]
    assert build({"name": "parrot", "script": tool_then_reply}).script == tool_then_reply
