"""The knowledge base behind ``search_knowledge_base``: documents chunked into pgvector.

``ingest`` splits a document into overlapping chunks of about ``CHUNK_CHARS`` characters
(paragraphs first, then sentences, then hard cuts), embeds them in one batch and stores them
in ``salon_knowledge`` (HNSW index, cosine); ingesting a title again replaces its chunks.
``search`` returns the ``k`` chunks of a collection nearest to a query, with their cosine
similarity as ``score``.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from domain import policy
from domain.errors import Invalid, NotFound
from domain.policy import Principal
from infra.embeddings import DIMENSIONS, Embedder, MiniLMEmbedder, vector_literal
from infra.memories import check_schema
from infra.store import EventStore

CHUNK_CHARS = 800
OVERLAP_CHARS = 120
MAX_DOCUMENT = 5_000_000
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

TABLE = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.salon_knowledge (
    collection text NOT NULL,
    title text NOT NULL,
    chunk_index integer NOT NULL,
    chunk text NOT NULL,
    embedding vector({dims}) NOT NULL,
    PRIMARY KEY (collection, title, chunk_index)
);
CREATE INDEX IF NOT EXISTS salon_knowledge_embedding ON {s}.salon_knowledge
    USING hnsw (embedding vector_cosine_ops);
CREATE TABLE IF NOT EXISTS {s}.salon_knowledge_access (
    collection text PRIMARY KEY,
    owner text NOT NULL,
    readers text[] NOT NULL DEFAULT '{{}}'
)
"""

Target = EventStore | psycopg.Connection[Any] | str


def chunks(text: str, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, each starting with the last
    ``overlap`` characters of the one before (cut at a word boundary)."""
    if size <= overlap:
        raise Invalid("a chunk must be longer than its overlap")
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= size:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE.split(paragraph):
            while len(sentence) > size:
                cut = sentence.rfind(" ", 0, size)
                cut = cut if cut > size // 2 else size
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + 1 + len(piece) <= size:
            packed[-1] = f"{packed[-1]} {piece}"
        else:
            packed.append(piece)
    result: list[str] = []
    for i, chunk in enumerate(packed):
        if i and overlap:
            tail = packed[i - 1][-overlap:]
            tail = tail[tail.find(" ") + 1:] if " " in tail else tail
            if len(tail) + 1 + len(chunk) <= size:
                chunk = f"{tail} {chunk}"
        result.append(chunk)
    return result


class KnowledgeBase:
    """Documents in collections, chunked and embedded, searchable by meaning."""

    def __init__(self, target: Target, schema: str = "public",
                 embedder: Embedder | None = None) -> None:
        self.schema = check_schema(schema)
        self.embedder = embedder or MiniLMEmbedder()
        self._own = not isinstance(target, psycopg.Connection)
        if isinstance(target, psycopg.Connection):
            self.conn: psycopg.Connection[Any] = target
        else:
            url = target if isinstance(target, str) else target.database_url
            self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row,
                                        prepare_threshold=None)
        with self.conn.transaction():
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            for statement in TABLE.format(s=self.schema, dims=DIMENSIONS).split(";"):
                if statement.strip():
                    self.conn.execute(statement)  # type: ignore[arg-type, unused-ignore]

    def close(self) -> None:
        """Close the connection if this knowledge base opened it."""
        if self._own:
            self.conn.close()

    def ingest(self, collection: str, title: str, text: str) -> int:
        """Store ``text`` under ``title`` in ``collection`` (replacing it); returns chunks."""
        if not _NAME.match(collection):
            raise Invalid(f"collection name {collection!r} is not valid: use 1-100 letters, "
                          "digits, '.', '-' or '_'")
        if not title.strip() or len(title) > 500:
            raise Invalid("a document needs a title of 1-500 characters")
        if len(text) > MAX_DOCUMENT:
            raise Invalid(f"a document has at most {MAX_DOCUMENT} characters")
        pieces = chunks(text)
        if not pieces:
            raise Invalid(f"document {title!r} has no text")
        vectors = self.embedder.embed(pieces)
        table = f"{self.schema}.salon_knowledge"
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE collection = %s AND title = %s",
                           (collection, title))
            cursor.executemany(
                f"INSERT INTO {table} (collection, title, chunk_index, chunk, embedding) "
                "VALUES (%s, %s, %s, %s, %s::vector)",
                [(collection, title, i, piece, vector_literal(vector))
                 for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))])
        return len(pieces)

    def claim(self, collection: str, owner: str) -> str:
        """Make ``owner`` the owner of a new collection; returns the collection's owner."""
        table = f"{self.schema}.salon_knowledge_access"
        with self.conn.transaction():
            self.conn.execute(f"INSERT INTO {table} (collection, owner) VALUES (%s, %s) "
                              "ON CONFLICT (collection) DO NOTHING", (collection, owner))
            row = self.conn.execute(f"SELECT owner FROM {table} WHERE collection = %s",
                                    (collection,)).fetchone()
        assert row is not None
        return str(row["owner"] if isinstance(row, dict) else row[0])

    def access(self, collection: str) -> tuple[str, list[str]] | None:
        """(owner, readers) of a collection; None when nobody owns it (no document yet)."""
        row = self.conn.execute(
            f"SELECT owner, readers FROM {self.schema}.salon_knowledge_access "
            "WHERE collection = %s", (collection,)).fetchone()
        if row is None:
            return None
        owner, readers = (row["owner"], row["readers"]) if isinstance(row, dict) else row
        return str(owner), list(readers)

    def share(self, collection: str, readers: list[str]) -> None:
        """Set who besides the owner (and admins) may search ``collection`` ('*': everyone)."""
        done = self.conn.execute(
            f"UPDATE {self.schema}.salon_knowledge_access SET readers = %s "
            "WHERE collection = %s", (sorted(set(readers)), collection))
        if done.rowcount == 0:
            raise NotFound(f"collection {collection!r} has no documents yet; add one first")

    def may_read(self, collection: str, user: str, is_admin: bool = False) -> bool:
        """Admins, the owner, and the readers the owner named (the policy's rule)."""
        found = self.access(collection)
        owner, readers = found if found is not None else ("", [])
        return policy.may_read_collection(Principal.acting(user, is_admin), owner, list(readers))

    def search(self, collection: str, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` chunks of ``collection`` nearest ``query``: title, chunk, score (cosine)."""
        if not query.strip():
            raise Invalid("a knowledge base search needs a query")
        vector = vector_literal(self.embedder.embed([query])[0])
        with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = cursor.execute(
                f"SELECT title, chunk, chunk_index, 1 - (embedding <=> %s::vector) AS score "
                f"FROM {self.schema}.salon_knowledge WHERE collection = %s "
                "ORDER BY embedding <=> %s::vector LIMIT %s",
                (vector, collection, vector, max(1, min(k, 50)))).fetchall()
        return [{"title": r["title"], "chunk": r["chunk"], "score": float(r["score"])}
                for r in rows]

    def documents(self, collection: str) -> list[dict[str, Any]]:
        """Titles in ``collection`` and how many chunks each has."""
        with self.conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                f"SELECT title, count(*) AS chunks FROM {self.schema}.salon_knowledge "
                "WHERE collection = %s GROUP BY title ORDER BY title", (collection,)).fetchall()
        return [dict(r) for r in rows]


def ingest(target: Target, collection: str, title: str, text: str,
           embedder: Embedder | None = None, schema: str = "public") -> int:
    """Chunk, embed and store a document; returns how many chunks."""
    kb = KnowledgeBase(target, schema, embedder)
    try:
        return kb.ingest(collection, title, text)
    finally:
        kb.close()


def search(target: Target, collection: str, query: str, k: int = 5,
           embedder: Embedder | None = None, schema: str = "public") -> list[dict[str, Any]]:
    """The ``k`` chunks of ``collection`` nearest ``query``."""
    kb = KnowledgeBase(target, schema, embedder)
    try:
        return kb.search(collection, query, k)
    finally:
        kb.close()
