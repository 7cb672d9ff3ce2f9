"""ANN recall: recall@k of the vector index against exact search on the same table version."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..config import ChecksConfig
from ..index_maintenance import request_retrain
from ..indexing import served_plan, tuned, vector_index
from ..store import Store, vectors_table_name
from .common import ERROR, OK, Report, resolve_version


@dataclass
class AnnRecallReport(Report):
    source: str
    version_id: str
    table_name: str
    table_version: int
    index_type: str = "exact"
    has_ann_index: bool = False
    rows: int = 0
    unindexed_rows: int = 0
    sample: int = 0
    k: int = 10
    recall: float = 0.0  # mean recall@k of the index against exact search
    min_query_recall: float = 0.0
    floor: float = 0.95
    ann_ms: float = 0.0  # mean latency per query
    exact_ms: float = 0.0
    seconds: float = 0.0
    note: str = ""
    evaluated: bool = True  # False: exact search or an empty table, nothing to compare
    severity: str = OK
    problems: list[str] = field(default_factory=list)


def ann_recall(
    store: Store,
    source: str,
    version_id: str,
    thresholds: ChecksConfig = ChecksConfig(),
    *,
    at: str = "served",
    seed: int = 0,
    configure: Callable[[Any], Any] | None = None,
) -> AnnRecallReport:
    """Recall@k of the vector index against exact search, on the same table version.

    A sample of stored vectors are the queries (the query's own row is excluded from both
    result lists); ties at the k-th exact distance count as hits. Without an ANN index the
    search is exact, so recall is 1.0 by construction and `note` says so.
    ANN queries use the serving query settings (nprobes, refine_factor: core/indexing.py) unless
    `configure` overrides them.
    """
    started = time.perf_counter()
    t = thresholds
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        report = AnnRecallReport(
            source, version_id, name, 0, severity=ERROR, floor=t.ann_recall_floor
        )
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        return report
    version, _ = resolve_version(store, source, name, at)
    table = store.open_table(name, version)
    k = t.ann_k
    report = AnnRecallReport(
        source, version_id, name, int(table.version), k=k, floor=t.ann_recall_floor
    )
    report.rows = table.count_rows()
    index = vector_index(table)
    if index is None or report.rows == 0:
        report.note = (
            "no ANN index (rows below serving.ann_min_rows): search is exact, "
            "so there is no approximation to measure"
            if report.rows
            else "empty table: no vectors to query with"
        )
        report.evaluated = False
        report.seconds = time.perf_counter() - started
        return report
    report.has_ann_index = True
    report.index_type = str(index.index_type)
    try:
        report.unindexed_rows = int(table.index_stats(index.name).num_unindexed_rows)
    except Exception:  # noqa: BLE001 - stats are informative only
        report.unindexed_rows = 0
    dataset = table.to_lance()
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(report.rows, size=min(t.ann_sample, report.rows), replace=False))
    sample = dataset.take(picks.tolist(), columns=["chunk_id", "vector"])
    report.sample = sample.num_rows
    ids = sample.column("chunk_id").to_pylist()
    vectors = [np.asarray(v, dtype=np.float32) for v in sample.column("vector").to_pylist()]
    # NaN/zero vectors are consistency's finding; they have no meaningful neighbours
    keep = [i for i, v in enumerate(vectors) if np.isfinite(v).all() and np.any(v)]
    ids, vectors = [ids[i] for i in keep], [vectors[i] for i in keep]
    recalls = []
    ann_seconds = exact_seconds = 0.0
    if vectors:
        # one batched exact scan for all queries: a flat scan per query costs ~1 s at 1M rows
        t0 = time.perf_counter()
        exact_all = (
            table.search(vectors if len(vectors) > 1 else vectors[0], vector_column_name="vector")
            .metric("cosine")
            .bypass_vector_index()
            .select(["chunk_id", "_distance"])
            .limit(k + 1)
            .to_arrow()
        )
        exact_seconds = time.perf_counter() - t0
        query_index = (
            exact_all.column("query_index").to_pylist()
            if "query_index" in exact_all.column_names
            else [0] * exact_all.num_rows
        )
        exact_by_query: dict[int, list[tuple[str, float]]] = {}
        for qi, cid, dist in zip(
            query_index,
            exact_all.column("chunk_id").to_pylist(),
            exact_all.column("_distance").to_pylist(),
        ):
            exact_by_query.setdefault(qi, []).append((cid, dist))
    plan = served_plan(table)  # the serving query settings, read once for the whole sample
    for qi, (chunk_id, query) in enumerate(zip(ids, vectors)):
        t1 = time.perf_counter()
        ann_query = (
            table.search(query, vector_column_name="vector")
            .metric("cosine")
            .select(["chunk_id", "_distance"])
            .limit(k + 1)
        )
        approx = (configure(ann_query) if configure else tuned(ann_query, plan, k + 1)).to_list()
        ann_seconds += time.perf_counter() - t1
        exact = sorted(
            (h for h in exact_by_query.get(qi, []) if h[0] != chunk_id), key=lambda h: h[1]
        )[:k]
        approx = [h for h in approx if h["chunk_id"] != chunk_id][:k]
        if not exact:
            continue
        cutoff = exact[-1][1] + 1e-6
        exact_ids = {cid for cid, _ in exact}
        hits = sum(1 for h in approx if h["chunk_id"] in exact_ids or h["_distance"] <= cutoff)
        recalls.append(min(1.0, hits / len(exact)))
    report.sample = len(recalls)
    if not recalls:  # every sampled vector NaN or zero: consistency reports those
        report.evaluated = False
        report.note = "no usable vector in the sample (NaN or zero-norm: see consistency)"
        report.seconds = time.perf_counter() - started
        return report
    report.recall = float(np.mean(recalls))
    report.min_query_recall = float(np.min(recalls))
    report.ann_ms = 1000 * ann_seconds / len(recalls)
    report.exact_ms = 1000 * exact_seconds / len(recalls)
    if report.recall < t.ann_recall_floor:
        report.severity = ERROR
        report.problems.append(
            f"ANN recall@{k} {report.recall:.3f} is below the floor {t.ann_recall_floor} "
            f"({report.index_type}, {report.sample} sampled queries); "
            "the next serving_index run retrains the index if rows joined it since its training; "
            "a freshly trained one needs other query settings (nprobes/refine_factor)"
        )
        if configure is None:  # measured at the serving settings: the index itself is at fault
            request_retrain(store, name, report.table_version, report.problems[-1])
    report.seconds = time.perf_counter() - started
    return report
