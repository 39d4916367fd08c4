"""Room invariants, with no server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.ids import room_id
from domain.rooms import MAX_TEXT, Room, parse_mentions


def test_a_new_room_is_found_by_name_and_its_owner_is_a_member() -> None:
    room = Room.create("lobby", "alice", topic="hi")
    assert room.id == room_id("lobby")
    assert room.members == {"alice": {"kind": "human", "role": "owner"}}
    assert room.position == 2
    assert [type(e).__name__ for e in room.collect_events()] == ["RoomCreated", "MemberJoined"]


@pytest.mark.parametrize("name", ["", "Lobby", "a b", "-x", "x" * 65, "é"])
def test_bad_room_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid, match="room name"):
        Room.create(name, "alice")


def test_posting_needs_membership_text_and_a_known_reply() -> None:
    room = Room.create("lobby", "alice")
    with pytest.raises(Forbidden, match="not a member"):
        room.post("bob", "hi")
    with pytest.raises(Invalid, match="needs text"):
        room.post("alice", "   ")
    with pytest.raises(Invalid, match="at most"):
        room.post("alice", "x" * (MAX_TEXT + 1))
    with pytest.raises(NotFound, match="not in room"):
        room.post("alice", "hi", reply_to="nope")
    first, _ = room.post("alice", "hi")
    room.post("alice", "answer", reply_to=first)
    room.archive()
    with pytest.raises(Conflict, match="archived"):
        room.post("alice", "late")


def test_the_same_client_msg_id_from_the_same_member_posts_once() -> None:
    room = Room.create("lobby", "alice")
    room.join("bob", "human")
    first = room.post("alice", "hi", client_msg_id="c1")
    again = room.post("alice", "hi again", client_msg_id="c1")
    other = room.post("bob", "hi", client_msg_id="c1")
    assert again == first and other != first
    kinds = [type(e).__name__ for e in room.collect_events()]
    assert kinds.count("MessagePosted") == 2


def test_mentions_are_parsed_once_each_in_order() -> None:
    assert parse_mentions("@Ada hi @bo and @ada, mail a@b.c") == ["ada", "bo"]


def test_agent_streak_counts_agent_messages_in_a_row() -> None:
    room = Room.create("lobby", "alice")
    room.join("bot", "agent")
    room.post("bot", "one")
    room.post("bot", "two")
    assert room.agent_streak == 2
    room.post("alice", "human")
    assert room.agent_streak == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.text(min_size=1, max_size=20)
                          .filter(str.strip), st.none() | st.sampled_from(["k1", "k2", "k3"])),
                max_size=40))
def test_positions_are_gapless_and_replay_rebuilds_the_same_room(posts: list) -> None:
    room = Room.create("lobby", "alice")
    room.join("bob", "human")
    for author, text, key in posts:
        room.post(author, text, client_msg_id=key)
    events = room.collect_events()
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    rebuilt = None
    for e in events:
        rebuilt = e.mutate(rebuilt)
    assert rebuilt is not None
    assert rebuilt.__dict__ == room.__dict__
