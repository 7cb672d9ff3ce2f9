"""One million real MiniLM vectors served by the product: index build, search latency, recall.

    .venv/bin/python benchmarks/bench_scale.py            # about 25 minutes on 2 cores
    .venv/bin/python benchmarks/bench_scale.py --rows 30000 --base synthetic    # a smoke run

Data: the all-MiniLM-L6-v2 vectors of SciFact's chunks that bench_migration.py made (run
first by `make bench`; this script runs it if its output is missing), repeated to 1,000,000
rows with a small perturbation (Gaussian noise, sigma 0.01 per dimension, renormalised;
copy 0 is the original). Every row has the product's vectors schema (core/store.vectors_schema):
the text and lineage of the SciFact chunk it repeats. Queries: 100 SciFact test queries
embedded by MiniLM (the gate's query-vector cache). `--base synthetic` (clustered random
vectors) only checks that the script works on a machine without that output.

The index is built in the run, as the serving_index asset builds it (core/pipeline.
build_serving_index: the vector index core/indexing.ann_plan picks, the full-text index, the
consistency check, the serving pointer moved to the indexed version), and its time is reported.
`--reuse-index` keeps the last run's table and index instead and says when they were built.
Searches go through core/serving.search, as the CLI and the API call it: through the serving
pointer, every column of each hit. Baseline: exact (flat) search of the same pinned version,
the same columns, in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import OUT, ROOT, bench_main, machine, peak_rss_mb, timed  # noqa: E402

sys.path.insert(0, str(ROOT))

import lancedb  # noqa: E402

from embeddings_platform.core.config import ServingConfig  # noqa: E402
from embeddings_platform.core.indexing import served_plan  # noqa: E402
from embeddings_platform.core.pipeline import build_serving_index  # noqa: E402
from embeddings_platform.core.serving import open_served_table, search  # noqa: E402
from embeddings_platform.core.store import (  # noqa: E402
    CHUNKS,
    Store,
    chunks_table_name,
    utcnow,
    vectors_schema,
    vectors_table_name,
)

MIGRATION_DB = OUT / "migration" / "lancedb"
WORK = OUT / "scale"
MINILM_TABLE = "vectors__scifact__minilm-e64ca78dc7"
SOURCE = "scale"
K = 10
QUERIES = 100  # an exact search over 1M rows takes about a second each


def minilm_base() -> tuple[pa.Table, np.ndarray]:
    """SciFact's MiniLM rows (every column) and MiniLM query vectors."""
    if not (MIGRATION_DB / f"{MINILM_TABLE}.lance").exists():
        import bench_migration

        bench_migration.main([])
    db = lancedb.connect(str(MIGRATION_DB))
    rows = db.open_table(MINILM_TABLE).to_arrow()
    version = rows.column("model_version")[0].as_py()
    cached = db.open_table("check_query_vectors").to_arrow().to_pylist()
    queries = np.asarray(
        [r["vector"] for r in cached if r["model_version"] == version], dtype=np.float32
    )
    return rows, queries[:QUERIES]


def synthetic_base(dim: int = 384, n: int = 2000, queries: int = 20) -> tuple[pa.Table, np.ndarray]:
    """Clustered random rows in the vectors schema, for smoke runs only."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, dim))
    vectors = centers[rng.integers(0, 40, n)] + rng.normal(scale=0.3, size=(n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    now = utcnow()
    rows = [
        {
            "chunk_id": f"s{i}",
            "doc_id": f"d{i // 3}",
            "source": SOURCE,
            "chunk_index": i % 3,
            "text": f"synthetic chunk {i} of document {i // 3}",
            "chunk_sha256": f"c{i}",
            "doc_sha256": f"d{i // 3}",
            "model_name": "synthetic",
            "model_version": "synthetic-384",
            "chunking_strategy": "synthetic",
            "source_snapshot": "synthetic",
            "created_at": now,
            "run_id": "bench",
            "metadata_json": "{}",
            "vector": v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    picks = vectors[rng.choice(n, queries, replace=False)]
    picks = picks + rng.normal(scale=0.05, size=(queries, dim))
    picks /= np.linalg.norm(picks, axis=1, keepdims=True)
    return pa.Table.from_pylist(rows, schema=vectors_schema(dim)), picks.astype(np.float32)


def write_table(store: Store, base: pa.Table, rows: int, rng: np.random.Generator):
    """`rows` rows: copies of the base rows, each copy's vectors perturbed, appended in blocks,
    and their chunks (the consistency check compares the counts before serving)."""
    dim = base.schema.field("vector").type.list_size
    version = base.column("model_version")[0].as_py()
    schema = vectors_schema(dim)
    base = base.select(schema.names).cast(schema)
    vectors = np.asarray(base.column("vector").to_pylist(), dtype=np.float32)
    table = store.table(vectors_table_name(SOURCE, version), schema, "chunk_id")
    strategy = base.column("chunking_strategy")[0].as_py()
    chunks = store.table(chunks_table_name(SOURCE, strategy), CHUNKS, "chunk_id")
    written, copy = 0, 0
    while written < rows:
        n = min(len(vectors), rows - written)
        block = vectors[:n].copy()
        if copy:
            block += rng.normal(0, 0.01, block.shape).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        part = base.slice(0, n)
        block = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), dim)
        for name, column in (
            ("chunk_id", pa.array([f"c{copy}-{i}" for i in range(n)])),
            ("source", pa.array([SOURCE] * n)),
            ("vector", block),
        ):
            part = part.set_column(schema.get_field_index(name), schema.field(name), column)
        table.add(part)
        chunks.add(part.select(CHUNKS.names).cast(CHUNKS))
        written += n
        copy += 1
    return table, version


def serve_search(store: Store, queries: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
    """core/serving.search for each query (the query vector stands in for the model)."""
    ids, latencies = [], []
    for q in queries:
        start = time.perf_counter()
        hits = search(store, SOURCE, "", K, lambda _version, q=q: q)
        latencies.append(time.perf_counter() - start)
        ids.append([h.chunk_id for h in hits])
    return ids, np.asarray(latencies) * 1000


def table_search(store: Store, queries: np.ndarray, configure):
    """The pinned version searched with other query settings, every column like search."""
    _, table = open_served_table(store, SOURCE)
    ids, latencies = [], []
    for q in queries:
        start = time.perf_counter()
        query = table.search(q, vector_column_name="vector").metric("cosine").limit(K)
        rows = configure(query).to_list()
        latencies.append(time.perf_counter() - start)
        ids.append([r["chunk_id"] for r in rows])
    return ids, np.asarray(latencies) * 1000


def build(rows: int, base_kind: str) -> tuple[Store, dict]:
    """Write the table, then index and serve it as serving_index does, timed."""
    base, _ = minilm_base() if base_kind == "minilm" else synthetic_base()
    if WORK.exists():
        shutil.rmtree(WORK)
    store = Store(str(WORK))
    rng = np.random.default_rng(0)
    (_, version), write_seconds = timed(write_table, store, base, rows, rng)
    rss_before = peak_rss_mb()
    dim = base.schema.field("vector").type.list_size
    index, build_seconds = timed(
        build_serving_index,
        store,
        SOURCE,
        version,
        ServingConfig(),
        "bench",
        True,
        expected_dimension=dim,
    )
    assert index.pointer_moved and index.rows == rows, index
    return store, {
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "model_version": version,
        "index_type": index.index_type,
        "table_version": index.table_version,
        "write_seconds": write_seconds,
        "build_seconds": build_seconds,
        "peak_rss_mb_before_build": rss_before,
        "peak_rss_mb_after_build": peak_rss_mb(),
    }


def run(rows: int, base_kind: str, reuse: bool = False) -> dict:
    """`reuse`: keep the table and index of the last run (its write and build figures) and
    re-measure only the searches, e.g. after changing the query settings."""
    _, queries = minilm_base() if base_kind == "minilm" else synthetic_base()
    if reuse:
        built = json.loads((OUT / "scale.json").read_text())["build"]
        store = Store(str(WORK))
        assert store.pointer(SOURCE) and built["rows"] == rows, "nothing to reuse: build first"
        print(
            f"reusing the table and index built at {built['built_at']} "
            f"({built['build_seconds']:.0f} s to build)",
            flush=True,
        )
    else:
        store, built = build(rows, base_kind)
    exact_ids, exact_ms = table_search(store, queries, lambda q: q.bypass_vector_index())
    ann_ids, ann_ms = serve_search(store, queries)
    raw_ids, raw_ms = table_search(store, queries, lambda q: q)  # the index, LanceDB's defaults
    pct = lambda a, p: float(np.percentile(a, p))  # noqa: E731

    def recall(ids: list[list[str]]) -> float:
        return float(np.mean([len(set(a) & set(e)) / K for a, e in zip(ids, exact_ids)]))

    _, served = open_served_table(store, SOURCE)
    return {
        "command": ".venv/bin/python benchmarks/bench_scale.py  (also in: make bench)",
        "machine": machine(),
        "rows": rows,
        "base": base_kind,
        "dimension": int(queries.shape[1]),
        "queries": int(len(queries)),
        "plan": served_plan(served).__dict__,
        "build": built,
        "index_reused": reuse,
        "exact_p50_ms": pct(exact_ms, 50),
        "exact_p99_ms": pct(exact_ms, 99),
        "ann_p50_ms": pct(ann_ms, 50),
        "ann_p99_ms": pct(ann_ms, 99),
        "recall_at_10": recall(ann_ids),
        "default_query_p50_ms": pct(raw_ms, 50),
        "default_query_p99_ms": pct(raw_ms, 99),
        "default_query_recall_at_10": recall(raw_ids),
    }


def render(r: dict) -> str:
    p, b = r["plan"], r["build"]
    exact = r["exact_p50_ms"]
    target = "meets" if r["recall_at_10"] >= 0.95 else "MISSES"
    rows = [
        ("exact (flat scan, baseline)", r["exact_p50_ms"], r["exact_p99_ms"], "1.000"),
        (
            "`search` (ANN, serving settings)",
            r["ann_p50_ms"],
            r["ann_p99_ms"],
            f"**{r['recall_at_10']:.3f}** (target >= 0.95: {target})",
        ),
        (
            "ANN, LanceDB default query settings",
            r["default_query_p50_ms"],
            r["default_query_p99_ms"],
            f"{r['default_query_recall_at_10']:.3f}",
        ),
    ]
    table = "\n".join(
        f"| {name} | {p50:.1f} | {p99:.1f} | {recall} | {p50 / exact:.3f} |"
        for name, p50, p99, recall in rows
    )
    reused = (
        f" Index reused from the run of {b['built_at']} (--reuse-index): this run measured "
        "the searches only."
        if r.get("index_reused")
        else ""
    )
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: {r["rows"]:,} rows of
dimension {r["dimension"]} in the product's vectors schema: the all-MiniLM-L6-v2 vectors of
SciFact's chunks (with their text and lineage), repeated with Gaussian noise (sigma 0.01 per
dimension, renormalised); {r["queries"]} SciFact test queries embedded by MiniLM. Index:
`{p["index_type"]}`, {p["num_partitions"]} partitions (core/indexing.ann_plan), built by
build_serving_index at {b["built_at"]}; queries probe {p["nprobes"]} partitions and re-rank
{p["refine_factor"]} x k on full vectors. Searches: core/serving.search through the serving
pointer, every column of each hit. Baseline: exact search of the same pinned version, same
columns, same run.

| search | p50 ms | p99 ms | recall@10 vs exact | latency vs exact (p50) |
| --- | ---: | ---: | ---: | ---: |
{table}

build_serving_index (vector and full-text index, consistency check, pointer move):
{b["build_seconds"]:.1f} s (writing the {b["rows"]:,} rows: {b["write_seconds"]:.1f} s).{reused}
Peak RSS of the process: {b["peak_rss_mb_before_build"]:.0f} MB before the build,
{b["peak_rss_mb_after_build"]:.0f} MB after it.
"""


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument(
            "--base",
            choices=["minilm", "synthetic"],
            default="minilm",
            help="synthetic: random vectors, to check the script (never a result)",
        )
        parser.add_argument(
            "--reuse-index",
            action="store_true",
            help="keep the last run's table and index; measure the searches",
        )

    title = "Scale: one million vectors, ANN against exact search (issue 8)"
    return bench_main(
        argv,
        __doc__,
        "scale",
        title,
        lambda args: run(args.rows, args.base, args.reuse_index),
        render,
        arguments,
        smoke=lambda args: args.rows != 1_000_000 or args.base != "minilm",
    )


if __name__ == "__main__":
    raise SystemExit(main())
