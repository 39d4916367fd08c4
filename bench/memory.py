"""Long-term memory retrieval over 100k memories: latency with HNSW, and its recall@10.

Run from the repository root: ``python -m bench.memory`` (``--help`` for the sizes). It starts
an embedded PostgreSQL (with pgvector) under a temp dir and stops it at the end; it takes a
couple of minutes on 2 cores, most of it building the HNSW index.

What it does:

1. creates the memory projection's tables (``infra/memories.py``) and fills ``salon_memories``
   with ``--memories`` rows of one agent, each a random unit vector of 384 dimensions (normal
   coordinates, normalised: uniform on the sphere), random importance and access times.
   Random vectors keep the run fast and are the hard case for HNSW (no clusters to exploit);
   real sentence embeddings cluster and usually reach a higher recall;
2. builds the HNSW index (cosine, pgvector's defaults m=16, ef_construction=64) and times it;
3. for ``--queries`` random unit queries, measures the latency of
   - ``hnsw top-10``: ``ORDER BY embedding <=> q LIMIT 10`` through the index, and
   - ``retrieve top-10``: ``MemoryStore.retrieve``, the full path agents use (candidates by
     relevance, recency and importance, scored in Python by recency + importance + relevance),
   at ``hnsw.ef_search`` 40 (the default) and the larger values given by ``--ef``;
4. computes recall@10 of the HNSW top-10 against exact search (a sequential scan, index off).

Latencies are wall-clock per query from this process over a Unix socket, p50 and p99.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from infra.embeddings import DIMENSIONS, parse_vector, vector_literal
from infra.memories import MemoryStore, create_tables
from infra.servers import EmbeddedPostgres

SCHEMA = "bench_memory"
AGENT = "bench"


def fill(conn: psycopg.Connection[Any], count: int, seed: int, clusters: int,
         spread: float) -> float:
    """Insert ``count`` memories with random unit embeddings; returns seconds taken.

    With ``clusters`` > 0 each embedding is a random centre plus normal noise of ``spread``
    per coordinate, normalised (topics, as real embeddings have); with 0, uniform on the sphere.
    """
    started = time.perf_counter()
    conn.execute(f"DROP INDEX IF EXISTS {SCHEMA}.salon_memories_embedding")
    conn.execute("SELECT setseed(%s)", (seed / 2 ** 31,))
    conn.execute(f"CREATE TEMP TABLE centres AS SELECT c, ARRAY(SELECT random_normal() + 0 * c "
                 f"FROM generate_series(1, {DIMENSIONS}))::vector AS v "
                 "FROM generate_series(0, %s) AS c", (max(clusters, 1) - 1,))
    noise = f"ARRAY(SELECT random_normal() * %s + 0 * i FROM generate_series(1, {DIMENSIONS}))"
    centre = "(SELECT v FROM centres WHERE c = i %% %s)" if clusters > 0 else \
        f"array_fill(0, ARRAY[{DIMENSIONS}])::vector"
    conn.execute(f"""
        INSERT INTO {SCHEMA}.salon_memories (id, agent_id, kind, content, embedding,
            importance, importance_source, created_at, last_accessed_at)
        SELECT gen_random_uuid(), %s, 'episodic', 'memory ' || i,
               l2_normalize({centre} + {noise}::vector),
               ceil(random() * 10) / 10, 'heuristic', t, t
        FROM generate_series(1, %s) AS i,
             LATERAL (SELECT now() - random() * interval '90 days' + 0 * i * interval '1 s') AS a(t)
    """, (AGENT, *((max(clusters, 1),) if clusters > 0 else ()),
          spread if clusters > 0 else 1.0, count))
    conn.execute(f"ANALYZE {SCHEMA}.salon_memories")
    return time.perf_counter() - started


def queries_like(conn: psycopg.Connection[Any], count: int, clusters: int,
                 spread: float) -> list[list[float]]:
    """Random unit queries drawn the way the memories were (near a random centre, or not)."""
    centre = "(SELECT v FROM centres WHERE c = p.pick) + " if clusters > 0 else ""
    rows = conn.execute(
        f"SELECT l2_normalize({centre}ARRAY(SELECT random_normal() * %s + 0 * q "
        f"FROM generate_series(1, {DIMENSIONS}))::vector)::text "
        "FROM generate_series(1, %s) AS q, "
        "LATERAL (SELECT floor(random() * %s)::int + 0 * q) AS p(pick)",
        (spread if clusters > 0 else 1.0, count, max(clusters, 1))).fetchall()
    return [parse_vector(r[0]) for r in rows]


def build_index(conn: psycopg.Connection[Any], ef_construction: int) -> float:
    """Build the HNSW index (m=16); returns seconds taken."""
    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    conn.execute(f"CREATE INDEX salon_memories_embedding ON {SCHEMA}.salon_memories "
                 f"USING hnsw (embedding vector_cosine_ops) WITH (m = 16, "
                 f"ef_construction = {int(ef_construction)})")
    return time.perf_counter() - started


def top10(conn: psycopg.Connection[Any], query: str, exact: bool) -> tuple[list[str], float]:
    """Ids of the 10 nearest memories and the seconds the query took."""
    with conn.transaction():
        if exact:
            conn.execute("SET LOCAL enable_indexscan = off")
        started = time.perf_counter()
        rows = conn.execute(f"SELECT id::text FROM {SCHEMA}.salon_memories WHERE agent_id = %s "
                            "ORDER BY embedding <=> %s::vector LIMIT 10",
                            (AGENT, query)).fetchall()
        elapsed = time.perf_counter() - started
    return [r[0] for r in rows], elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description="Memory retrieval latency and recall@10.")
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=50,
                        help="queries compared with exact search for recall@10")
    parser.add_argument("--ef", type=int, nargs="*", default=[100],
                        help="hnsw.ef_search values to try besides the default 40")
    parser.add_argument("--ef-construction", type=int, default=64,
                        help="HNSW build quality (pgvector's and the memory table's default: 64)")
    parser.add_argument("--clusters", type=int, default=1_000,
                        help="random topic centres the vectors gather around; 0: uniform")
    parser.add_argument("--spread", type=float, default=1.0,
                        help="per-coordinate noise around a centre (1.0: cosine ~0.7 to it)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="salon-bench-memory-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg")
        url = postgres.start()
        try:
            # Prepared statements' generic plans cannot see the query vector: plan each query.
            with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
                run(conn, url, args)
        finally:
            postgres.stop()


def run(conn: psycopg.Connection[Any], url: str, args: argparse.Namespace) -> None:
    """Fill, index, measure and print."""
    create_tables(conn, SCHEMA)
    filled = fill(conn, args.memories, args.seed, args.clusters, args.spread)
    shape = f"around {args.clusters:,} random centres (spread {args.spread})" \
        if args.clusters > 0 else "uniform on the sphere"
    print(f"memories: {args.memories:,} random unit vectors ({DIMENSIONS} dims) {shape}, "
          f"one agent, inserted in {filled:.1f} s")
    built = build_index(conn, args.ef_construction)
    print(f"HNSW index (m=16, ef_construction={args.ef_construction}) built in {built:.1f} s")
    vectors = queries_like(conn, args.queries, args.clusters, args.spread)
    queries = [vector_literal(v) for v in vectors]
    plan = conn.execute(
        f"EXPLAIN SELECT id FROM {SCHEMA}.salon_memories WHERE agent_id = %s "
        "ORDER BY embedding <=> %s::vector LIMIT 10", (AGENT, queries[0])).fetchall()
    used = "salon_memories_embedding" in " ".join(r[0] for r in plan)
    print(f"the top-10 query {'uses' if used else 'does NOT use'} the HNSW index")
    exact: dict[str, list[str]] = {}
    exact_times = []
    for query in queries[:args.exact_queries]:
        exact[query], elapsed = top10(conn, query, exact=True)
        exact_times.append(elapsed)
    print(f"exact top-10 (sequential scan): p50 {percentile(exact_times, .5) * 1e3:.1f} ms "
          f"over {len(exact_times)} queries")
    print(f"{'ef_search':>9} | {'hnsw p50':>9} {'hnsw p99':>9} | "
          f"{'retrieve p50':>12} {'retrieve p99':>12} | {'recall@10':>9}")
    store = MemoryStore(url, SCHEMA, max_size=1)
    try:
        for query in queries[:20]:  # warm the index into shared buffers
            top10(conn, query, exact=False)
        for ef in [40, *args.ef]:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            times, hits = [], []
            for query in queries:
                found, elapsed = top10(conn, query, exact=False)
                times.append(elapsed)
                if query in exact:
                    hits.append(len(set(found) & set(exact[query])) / 10)
            with store.pool.connection() as pooled:
                pooled.execute(f"SET hnsw.ef_search = {int(ef)}")
            full = []
            for vector in vectors:
                started = time.perf_counter()
                store.retrieve(AGENT, vector, k=10)
                full.append(time.perf_counter() - started)
            print(f"{ef:>9} | {percentile(times, .5) * 1e3:>6.2f} ms "
                  f"{percentile(times, .99) * 1e3:>6.2f} ms | "
                  f"{percentile(full, .5) * 1e3:>9.2f} ms {percentile(full, .99) * 1e3:>9.2f} ms"
                  f" | {statistics.mean(hits):>9.3f}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
