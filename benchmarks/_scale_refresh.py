"""bench_scale.py's measurements: index builds side by side, then refreshes of 1% of the rows.

Each build and refresh goes through core/pipeline.build_serving_index, as the serving_index
asset runs it: index maintenance, the blocking consistency check, the serving pointer moved.
Recall@10 is measured at the serving query settings (core/indexing.served_plan, as
core/serving.search applies them) against exact search of the same pinned version, on chunk
ids; latency through core/serving.search itself.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np
import pyarrow as pa
from _results import peak_rss_mb, peak_rss_since_reset_mb, reset_peak_rss, timed

from embeddings_platform.core import indexing
from embeddings_platform.core.config import ServingConfig
from embeddings_platform.core.indexing import MAX_DELTAS, served_plan, tuned
from embeddings_platform.core.pipeline import build_serving_index
from embeddings_platform.core.serving import open_served_table, search
from embeddings_platform.core.store import Store, utcnow

SOURCE = "scale"
K = 10


@contextmanager
def default_index(index_type: str):
    """The serving_index step as it runs when `index_type` is indexing's default."""
    saved = indexing.DEFAULT_INDEX_TYPE
    indexing.DEFAULT_INDEX_TYPE = index_type
    try:
        yield
    finally:
        indexing.DEFAULT_INDEX_TYPE = saved


def side(
    uri: str, version: str, dim: int, index_type: str, queries: np.ndarray, rows_per_partition: int
) -> dict:
    """A full build as the step runs with `index_type` as the default, with its recall and
    latency, in a process of its own (bench_scale runs it in a spawned one): its peak memory is
    its own, not the product path's."""
    indexing.ROWS_PER_PARTITION = rows_per_partition
    store = Store(uri)
    with default_index(index_type):
        built = step(store, version, dim)
    built.update(served_quality(store, queries, exact_ids(store, queries)), default=index_type)
    built["peak_rss_mb"] = peak_rss_mb()
    return built


def step(store: Store, version: str, dim: int, merge_deltas: bool = False) -> dict:
    """One serving_index step, timed, with what it did and the memory it took: its peak resident
    memory, and the resident memory it started from (the benchmark's own). `merge_deltas`: the
    run index_merge_sensor requests past indexing.MAX_DELTAS."""
    rss_before = reset_peak_rss()
    report, seconds = timed(
        build_serving_index,
        store,
        SOURCE,
        version,
        ServingConfig(),
        "bench",
        True,
        dim,
        merge_deltas=merge_deltas,
    )
    assert report.pointer_moved or report.maintenance.action == "none", report
    m = report.maintenance
    return {
        "step_seconds": seconds,
        "action": m.action,
        "reason": m.reason,
        "maintenance_seconds": m.seconds,
        "train_seconds": m.train_seconds,
        "check_seconds": report.check_seconds,
        "unindexed_before": m.unindexed_before,
        "unindexed_after": m.unindexed_after,
        "rows_since_training": m.rows_since_training,
        "fragments_compacted": m.fragments_compacted,
        "deltas_after": m.deltas_after,
        "index_type": report.index_type,
        "table_version": report.table_version,
        "peak_rss_mb": peak_rss_mb(),
        "step_rss_before_mb": rss_before,
        "step_peak_rss_mb": peak_rss_since_reset_mb(),
    }


def step_elsewhere(store: Store, version: str, dim: int, merge_deltas: bool = False) -> dict:
    """`step` in a process of its own, as the project's executor runs each Dagster run: its time
    and memory are the step's, not those of this benchmark's searches and data."""
    with get_context("spawn").Pool(1) as pool:
        return pool.apply(
            _step_job, (store.uri, version, dim, merge_deltas, indexing.ROWS_PER_PARTITION)
        )


def _step_job(uri: str, version: str, dim: int, merge_deltas: bool, rows_per_partition: int):
    indexing.ROWS_PER_PARTITION = rows_per_partition
    return step(Store(uri), version, dim, merge_deltas)


def exact_ids(store: Store, queries: np.ndarray) -> list[list[str]]:
    """Exact top-k chunk ids of every query on the pinned version: one batched flat scan."""
    _, table = open_served_table(store, SOURCE)
    result = (
        table.search([q for q in queries], vector_column_name="vector")
        .metric("cosine")
        .bypass_vector_index()
        .select(["chunk_id", "_distance"])
        .limit(K)
        .to_arrow()
    )
    lists: list[list[tuple[float, str]]] = [[] for _ in queries]
    for qi, cid, dist in zip(
        result.column("query_index").to_pylist(),
        result.column("chunk_id").to_pylist(),
        result.column("_distance").to_pylist(),
    ):
        lists[qi].append((dist, cid))
    return [[cid for _, cid in sorted(hits)] for hits in lists]


_EXACT_POOL = None


def exact_elsewhere(store: Store, queries: np.ndarray) -> list[list[str]]:
    """exact_ids in a process of its own, kept for the whole run: a batched flat scan of every
    vector is the benchmark's yardstick, and its memory is not the product's."""
    global _EXACT_POOL
    if _EXACT_POOL is None:
        _EXACT_POOL = get_context("spawn").Pool(1)
    return _EXACT_POOL.apply(_exact_job, (store.uri, queries))


def close_exact_pool() -> None:
    global _EXACT_POOL
    if _EXACT_POOL is not None:
        _EXACT_POOL.close()
        _EXACT_POOL.join()
        _EXACT_POOL = None


def _exact_job(uri: str, queries: np.ndarray) -> list[list[str]]:
    return exact_ids(Store(uri), queries)


def exact_latency(store: Store, queries: np.ndarray) -> np.ndarray:
    """The baseline: exact search of the pinned version, one query at a time, every column."""
    _, table = open_served_table(store, SOURCE)
    ms = []
    for q in queries:
        start = time.perf_counter()
        table.search(q, vector_column_name="vector").metric("cosine").limit(
            K
        ).bypass_vector_index().to_list()
        ms.append(1000 * (time.perf_counter() - start))
    return np.asarray(ms)


def served_quality(store: Store, queries: np.ndarray, exact: list[list[str]]) -> dict:
    """recall@10 at the serving query settings, and latency through core/serving.search."""
    _, table = open_served_table(store, SOURCE)
    plan = served_plan(table)
    recalls = []
    for q, truth in zip(queries, exact):
        query = table.search(q, vector_column_name="vector").metric("cosine").limit(K)
        got = (
            tuned(query, plan, K)
            .select(["chunk_id", "_distance"])
            .to_arrow()
            .column("chunk_id")
            .to_pylist()
        )
        recalls.append(len(set(got) & set(truth)) / K)
    ms = []
    for q in queries:
        start = time.perf_counter()
        search(store, SOURCE, "", K, lambda _version, q=q: q, mode="vector")
        ms.append(1000 * (time.perf_counter() - start))
    return {
        "plan": plan.__dict__,
        "recall_at_10": float(np.mean(recalls)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def reembed(store: Store, table, all_ids: pa.Array, picked, rng: np.random.Generator, round_: int):
    """Give some rows new vectors under the same ids, as a re-embedding refresh does: each takes
    another row's vector plus noise (sigma 0.01, renormalised), created now. In Arrow and numpy
    throughout: Python objects for 10,000 vectors would be the benchmark's memory, not the
    product's."""
    rows = Store.read_in(table, None, {"chunk_id": all_ids.take(picked).to_pylist()})
    donors = all_ids.take(rng.choice(len(all_ids), rows.num_rows, replace=False)).to_pylist()
    donor_rows = Store.read_in(table, ["vector"], {"chunk_id": donors})
    dim = table.schema.field("vector").type.list_size
    vectors = donor_rows.column("vector").combine_chunks().flatten().to_numpy()
    vectors = vectors.reshape(-1, dim) + rng.normal(0, 0.01, (len(vectors) // dim, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    schema, n = table.schema, rows.num_rows
    for name, column in (
        ("vector", pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)),
        ("created_at", pa.array([utcnow()] * n, schema.field("created_at").type)),
        ("run_id", pa.array([f"refresh-{round_}"] * n, schema.field("run_id").type)),
    ):
        rows = rows.set_column(rows.schema.get_field_index(name), schema.field(name), column)
    store.upsert(table, rows.select(schema.names).cast(schema), "chunk_id")


def refreshes(
    store: Store, version: str, dim: int, queries: np.ndarray, rounds: int, share: float
) -> list[dict]:
    """`rounds` refreshes in a row, each re-embedding `share` of the rows, then serving_index."""
    rng = np.random.default_rng(1)
    table = store.table(f"vectors__{SOURCE}__{version}")
    ids = Store.read(table, ["chunk_id"]).column("chunk_id").combine_chunks()  # refreshes keep
    out = []
    for r in range(1, rounds + 1):
        picked = rng.choice(len(ids), max(1, int(len(ids) * share)), False)
        _, write_seconds = timed(reembed, store, table, ids, picked, rng, r)
        result = step_elsewhere(store, version, dim)
        exact = exact_elsewhere(store, queries)
        result.update(served_quality(store, queries, exact))
        result.update(round=r, rows_changed=len(picked), write_seconds=write_seconds)
        if result["deltas_after"] > MAX_DELTAS:  # the merge run the sensor would request now
            merged = step_elsewhere(store, version, dim, merge_deltas=True)
            merged.update(served_quality(store, queries, exact))  # same rows: same exact ids
            result["merge"] = merged
        print(
            f"refresh {r}: {result['action']} in {result['step_seconds']:.1f} s, "
            f"{result['deltas_after']} deltas, recall {result['recall_at_10']:.3f}"
            + (f"; merge run {result['merge']['step_seconds']:.1f} s" if "merge" in result else ""),
            flush=True,
        )
        out.append(result)
    return out
