"""Frame parsing: typed requests or precise errors, with no server."""

from __future__ import annotations

import json

import pytest

from domain.errors import Invalid
from gateway import protocol as p


def test_a_valid_say_frame_parses_with_its_id() -> None:
    request, request_id = p.parse(json.dumps(
        {"type": "say", "room": "lobby", "text": "hi", "client_msg_id": "c1", "id": 7}))
    assert isinstance(request, p.Say) and request_id == 7 and request.client_msg_id == "c1"


@pytest.mark.parametrize(("frame", "message"), [
    ("not json", "must be JSON"),
    ("[1, 2]", "JSON object"),
    ('{"type": "dance"}', "unknown frame type 'dance'"),
    ('{"room": "x"}', "unknown frame type None"),
    ('{"type": "say", "room": "lobby"}', "text: Field required"),
    ('{"type": "say", "room": "lobby", "text": 5}', "text: Input should be a valid string"),
    ('{"type": "say", "room": "Lobby!", "text": "x"}', "room: String should match"),
    ('{"type": "join", "room": "lobby", "since": "3"}', "since"),
    ('{"type": "join", "room": "lobby", "since": -1}', "since"),
    ('{"type": "say", "room": "lobby", "text": "x", "extra": 1}', "extra: Extra inputs"),
    ('{"type": "history", "room": "lobby", "limit": 100000}', "limit"),
])
def test_malformed_frames_say_what_is_wrong(frame: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        p.parse(frame)


def test_an_oversized_text_is_refused_with_the_limit() -> None:
    with pytest.raises(Invalid, match="too long"):
        p.parse(json.dumps({"type": "say", "room": "lobby", "text": "x" * 2_000_000, "id": 3}))


def test_errors_keep_the_request_id_when_there_is_one() -> None:
    with pytest.raises(p.FrameInvalid) as caught:
        p.parse(json.dumps({"type": "say", "room": "lobby", "id": "abc"}))
    assert caught.value.request_id == "abc"
    frame = json.loads(p.error(caught.value.request_id, caught.value))
    assert frame == {"type": "error", "id": "abc", "code": "invalid",
                     "message": caught.value.message}
