"""Retrieval recall: recall@k, nDCG@k and ragas scores of labelled queries through an index,
compared with a stored baseline."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..config import ChecksConfig
from ..evaluation import LabelledQuery, evaluate, table_retriever
from ..ids import digest
from ..retrieval import RetrievalProfile
from ..store import Store, utcnow, vectors_table_name
from .baselines import get_baseline, record_baseline
from .common import ERROR, OK, WARN, Report, resolve_version, worst
from .query_cache import cached_query_embedder
from .ragas_scores import ragas_id_scores


def labels_sha256(queries: Sequence[LabelledQuery]) -> str:
    payload = json.dumps(
        [[q.query_id, q.text, sorted(q.relevant.items())] for q in queries], sort_keys=True
    )
    return digest(payload, length=16)


@dataclass
class RetrievalReport(Report):
    source: str
    version_id: str
    table_name: str
    table_version: int
    served: bool = False
    queries: int = 0
    k: int = 10
    recall: float = 0.0
    ndcg: float = 0.0
    context_recall: float = 0.0  # ragas IDBasedContextRecall, mean over queries
    context_precision: float = 0.0  # ragas IDBasedContextPrecision, mean over queries
    has_baseline: bool = False
    baseline_recorded: bool = False  # this run set the baseline
    baseline_recall: float = 0.0
    baseline_ndcg: float = 0.0
    recall_drop_points: float = 0.0  # (baseline - current) * 100; negative = improved
    ndcg_drop_points: float = 0.0
    seconds: float = 0.0
    note: str = ""
    profile: str = ""  # the retrieval profile the queries were ranked under
    evaluated: bool = True  # False: no labelled queries, nothing was measured
    severity: str = OK
    problems: list[str] = field(default_factory=list)


def retrieval_recall(
    store: Store,
    source: str,
    version_id: str,
    queries: Sequence[LabelledQuery],
    embed: Callable[[list[str]], np.ndarray],
    thresholds: ChecksConfig = ChecksConfig(),
    *,
    at: str = "served",
    run_id: str = "",
    record: bool = True,
    cache_queries: bool = True,
    profile: RetrievalProfile | None = None,
) -> RetrievalReport:
    """recall@k, nDCG@k and ragas ID-based context recall/precision on labelled queries.

    Retrieval goes through the served table version (or the latest, for a shadow version),
    exactly as serving searches it. The first passing result is stored as the baseline of
    (source, model version); later runs report their drop against it: more than
    `recall_drop_warn_points` is WARN, more than `recall_drop_error_points` ERROR. A changed
    label set starts a new baseline. Query vectors are cached per model version
    (`cached_query_embedder`), so `embed` is called only for queries never seen before.
    Documents are ranked under `profile`, by default the one the pointer serves with.
    """
    started = time.perf_counter()
    t = thresholds
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        report = RetrievalReport(source, version_id, name, 0, k=t.recall_k, severity=ERROR)
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        return report
    version, served = resolve_version(store, source, name, at)
    table = store.open_table(name, version)
    report = RetrievalReport(
        source, version_id, name, int(table.version), served=served, k=t.recall_k
    )
    if not queries:  # nothing to evaluate: its own outcome, not a pass with zeros
        report.evaluated, report.severity = False, WARN
        report.note = (
            f"no labelled queries for source {source!r}; add a canary file "
            "(docs/operator.md#canary-files) or use a BEIR source with qrels"
        )
        return report
    if profile is None:
        pointer = store.pointer(source)
        profile = (
            RetrievalProfile.from_json(pointer.get("profile")) if pointer else RetrievalProfile()
        )
    report.profile = profile.profile_id
    embed_queries = cached_query_embedder(store, version_id, embed) if cache_queries else embed
    inner = table_retriever(table, embed_queries, t.recall_k, profile)
    rankings: list[list[str]] = []

    def retrieve(qs: Sequence[LabelledQuery]) -> list[list[str]]:
        ranked = inner(qs)
        rankings.extend(ranked)
        return ranked

    result = evaluate(queries, retrieve, t.recall_k)
    report.queries, report.recall, report.ndcg = result.queries, result.recall, result.ndcg
    report.context_recall, report.context_precision = ragas_id_scores(rankings, queries)

    labels = digest(
        labels_sha256(queries), profile.profile_id, length=16
    )  # a new profile: new baseline
    baseline = get_baseline(store, source, version_id)
    if baseline is not None and (
        baseline["labels_sha256"] != labels or baseline["k"] != t.recall_k
    ):
        report.note = (
            "labelled queries, k or retrieval profile changed since the baseline; "
            "a new baseline starts"
        )
        baseline = None
    severity = OK
    if report.recall < t.min_recall:
        severity = ERROR
        report.problems.append(
            f"recall@{t.recall_k} {report.recall:.3f} is below the floor {t.min_recall}"
        )
    if baseline is not None:
        report.has_baseline = True
        report.baseline_recall, report.baseline_ndcg = baseline["recall"], baseline["ndcg"]
        report.recall_drop_points = 100 * (baseline["recall"] - report.recall)
        report.ndcg_drop_points = 100 * (baseline["ndcg"] - report.ndcg)
        drop = max(report.recall_drop_points, report.ndcg_drop_points)
        level = (
            ERROR
            if drop > t.recall_drop_error_points
            else WARN
            if drop > t.recall_drop_warn_points
            else OK
        )
        if level != OK:
            report.problems.append(
                f"retrieval dropped {drop:.1f} points below its baseline (recall@{t.recall_k} "
                f"{report.recall:.3f} vs {baseline['recall']:.3f}, "
                f"nDCG {report.ndcg:.3f} vs {baseline['ndcg']:.3f}; "
                f"warn > {t.recall_drop_warn_points}, error > {t.recall_drop_error_points} points)"
            )
        severity = worst(severity, level)
    elif severity == OK and record:
        record_baseline(
            store,
            {
                "source": source,
                "model_version": version_id,
                "check": "retrieval_recall",
                "labels_sha256": labels,
                "k": t.recall_k,
                "queries": report.queries,
                "recall": report.recall,
                "ndcg": report.ndcg,
                "context_recall": report.context_recall,
                "context_precision": report.context_precision,
                "table_version": report.table_version,
                "created_at": utcnow(),
                "run_id": run_id,
            },
        )
        report.has_baseline = report.baseline_recorded = True
        report.baseline_recall, report.baseline_ndcg = report.recall, report.ndcg
    report.severity = severity
    report.seconds = time.perf_counter() - started
    return report
