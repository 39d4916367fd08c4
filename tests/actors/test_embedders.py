"""Turns embed at the write path's priority; the memory projection's embedding runs below it."""

from __future__ import annotations

import os

import ray

from actors.embedder import RemoteEmbedder, embedder_actor
from salon.platform import Running


def test_a_turns_embedder_is_not_niced_and_the_background_one_is(salon: Running) -> None:
    settings = salon.settings
    for background in (False, True):
        vector = RemoteEmbedder(settings, background).embed(["the same words"])[0]
        assert len(vector) == 384
    turns = embedder_actor(settings)
    background = embedder_actor(settings, background=True)

    def niceness(actor: object) -> int:
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))  # type: ignore[attr-defined]
        return os.getpriority(os.PRIO_PROCESS, pid)

    assert niceness(turns) < niceness(background), "a turn's recall never waits at nice 10"
    assert niceness(background) >= settings.background_nice > 0


def test_the_background_embedder_takes_what_a_turn_embedded_from_its_cache(salon: Running,
                                                                          name: str) -> None:
    settings = salon.settings
    shared, fresh = f"recalled by a turn in {name}", f"only the projection saw {name}"
    turns = embedder_actor(settings)
    background = embedder_actor(settings, background=True)
    recalled = RemoteEmbedder(settings).embed([shared])[0]
    vectors = RemoteEmbedder(settings, background=True).embed([fresh, shared, fresh])
    assert vectors[1] == recalled
    assert vectors[0] == vectors[2] and len(vectors[0]) == 384
    assert ray.get(background.cached.remote([shared, fresh])) == [None, vectors[0]], \
        "the background embedder computed only what the turns' cache did not hold"
    assert ray.get(turns.cached.remote([fresh])) == [None]
