"""Embedders: offline MiniLM, and the OpenAI adapter against a local wire-format server."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from domain.errors import Invalid, Unavailable
from infra.embeddings import (
    DIMENSIONS,
    MiniLMEmbedder,
    OpenAIEmbedder,
    embedder_for,
    minilm_path,
    parse_vector,
    vector_literal,
)


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_minilm_loads_offline_by_path_and_embeds_in_batches(embedder: MiniLMEmbedder) -> None:
    assert (minilm_path() / "model.safetensors").exists()
    texts = ["the cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing"]
    vectors = MiniLMEmbedder(batch_size=2).embed(texts)
    assert len(vectors) == 3 and all(len(v) == DIMENSIONS for v in vectors)
    assert all(abs(math.sqrt(dot(v, v)) - 1) < 1e-5 for v in vectors)
    one_by_one = [embedder.embed([t])[0] for t in texts]
    assert all(max(abs(a - b) for a, b in zip(x, y, strict=True)) < 1e-5
               for x, y in zip(vectors, one_by_one, strict=True))
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2]) + 0.2
    assert embedder.embed([]) == []
    assert parse_vector(vector_literal(vectors[0])) == vectors[0]


class EmbeddingsServer(BaseHTTPRequestHandler):
    """Speaks OpenAI's ``POST /v1/embeddings``: float or base64 vectors, shuffled order."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers["Authorization"],
                                    "body": body})
        if body["model"] == "broken":
            self._send(400, {"error": {"message": "no such model", "type": "invalid"}})
            return
        data = []
        for index, text in enumerate(body["input"]):
            vector = [float(len(text) + i % 7) for i in range(body.get("dimensions", 1536))]
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding: Any = base64.b64encode(packed).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        data.reverse()
        self._send(200, {"object": "list", "data": data, "model": body["model"],
                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    EmbeddingsServer.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    thread.join(timeout=10)


def test_openai_adapter_speaks_the_embeddings_wire_format(server: str) -> None:
    adapter = OpenAIEmbedder(model="text-embedding-3-small", api_key="sk-test", base_url=server,
                             batch_size=2)
    vectors = adapter.embed(["a", "bbb", "cc"])
    assert len(EmbeddingsServer.requests) == 2, "three texts in batches of two"
    first = EmbeddingsServer.requests[0]
    assert first["path"] == "/v1/embeddings" and first["auth"] == "Bearer sk-test"
    assert first["body"]["input"] == ["a", "bbb"] and first["body"]["dimensions"] == DIMENSIONS
    assert all(len(v) == DIMENSIONS and abs(math.sqrt(dot(v, v)) - 1) < 1e-6 for v in vectors)
    expected = [float(n + i % 7) for n in (1, 3, 2) for i in range(DIMENSIONS)]
    norms = [math.sqrt(sum(x * x for x in expected[j * DIMENSIONS:(j + 1) * DIMENSIONS]))
             for j in range(3)]
    for j, vector in enumerate(vectors):  # in input order, although the server shuffled
        assert vector[0] == pytest.approx(expected[j * DIMENSIONS] / norms[j], rel=1e-6)
    with pytest.raises(Unavailable, match="failed"):
        OpenAIEmbedder(model="broken", api_key="sk-test", base_url=server).embed(["x"])


def test_embedder_choice_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(embedder_for("minilm"), MiniLMEmbedder)
    with pytest.raises(Invalid, match="unknown embedder"):
        embedder_for("word2vec")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Unavailable, match="OPENAI_API_KEY"):
        embedder_for("openai:text-embedding-3-small")
