"""One embedding model for the whole installation, shared by every agent as a Ray actor.

Loading all-MiniLM-L6-v2 takes seconds and hundreds of megabytes, so agents never load it
themselves: they ask the ``embedder`` actor, which loads it on first use and keeps an LRU
cache (the agents of one room all embed the same newest message when they recall).

There are two such actors. ``embedder`` answers what a turn waits for (an agent's recall, a
search) at the write path's priority; ``embedder-background`` embeds for the memory projection
at ``SALON_BACKGROUND_NICE``, taking from the turns' cache what a recall embedded already (a
turn's recall and the projection embed the same newest message), on one torch thread, so it
takes at most one core. With one
shared, niced actor a turn's recall queued behind the projection's embedding of every message
and then ran at the background's priority: recall's embed took 30-60 ms of a 64-88 ms turn
(bench/README.md, "Where a turn's time goes").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import ray

from infra.embeddings import MINILM, MiniLMEmbedder
from infra.settings import Settings, below_the_write_path

CACHE = 4096


class EmbedderCore:
    """MiniLM with a cache of recent texts; thread-safe enough for a threaded Ray actor."""

    def __init__(self, cache: int = CACHE) -> None:
        self.model = MiniLMEmbedder()
        self.cache: OrderedDict[str, list[float]] = OrderedDict()
        self.limit = cache

    def cached(self, texts: list[str]) -> list[list[float] | None]:
        """The vectors of ``texts`` already in the cache (None for the others); computes none."""
        return [self.cache.get(text) for text in texts]

    def embed(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for text, vector in zip(missing, self.model.embed(missing), strict=True):
                self.cache[text] = vector
        found = []
        for text in texts:
            vector = self.cache[text] if text in self.cache else self.model.embed([text])[0]
            self.cache[text] = vector
            self.cache.move_to_end(text)
            found.append(vector)
        while len(self.cache) > self.limit:
            self.cache.popitem(last=False)
        return found


class _BackgroundEmbedder(EmbedderCore):
    """The actor's process embeds at ``nice`` (0: the write path's own priority)."""

    def __init__(self, nice: int, cache: int = CACHE) -> None:
        if nice > 0:
            below_the_write_path(nice)
            # One torch thread in the background: a short text's forward pass took 18 ms wall
            # and 37 ms of CPU on two threads, 21 ms and 21 ms on one. A turn's embedder keeps
            # torch's default: with one thread, turns were slower (bench.protocol, p50 29 ->
            # 42 ms), as its recall waits for the embedding.
            import torch

            torch.set_num_threads(1)
        super().__init__(cache)


EmbedderActor = ray.remote(_BackgroundEmbedder)


def embedder_actor(settings: Settings, background: bool = False) -> Any:
    """The installation's embedder actor for turns, or for background work, started if it is
    not running."""
    return EmbedderActor.options(
        name="embedder-background" if background else "embedder",
        namespace=settings.namespace, get_if_exists=True, lifetime="detached",
        max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4,
    ).remote(settings.background_nice if background else 0)


class RemoteEmbedder:
    """The ``Embedder`` interface, answered by the shared actor (blocking: call in a thread)."""

    name = MINILM

    def __init__(self, settings: Settings, background: bool = False) -> None:
        self.settings = settings
        self.background = background
        # Looked up once: Ray restarts an actor behind its handle.
        self._actor: Any = None
        self._turns: Any = None  # a background embedder reads the turns' cache first

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        if self._actor is None:
            self._actor = embedder_actor(self.settings, self.background)
        if not self.background:
            vectors: list[list[float]] = ray.get(self._actor.embed.remote(list(texts)))
            return vectors
        if self._turns is None:
            self._turns = embedder_actor(self.settings)
        found: list[list[float] | None] = ray.get(self._turns.cached.remote(list(texts)))
        missing = [text for text, vector in zip(texts, found, strict=True) if vector is None]
        computed = iter(ray.get(self._actor.embed.remote(missing)) if missing else [])
        return [vector if vector is not None else next(computed) for vector in found]
