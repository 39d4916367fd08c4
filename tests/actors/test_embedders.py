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
