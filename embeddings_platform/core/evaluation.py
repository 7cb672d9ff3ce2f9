"""Retrieval quality on labelled queries: recall@k and nDCG@k at document level.

Labelled queries come from a BEIR source (queries.jsonl + qrels/<split>.tsv) or a canary
file registered with the source (`{"query": ..., "relevant": [doc ids]}` per line). Chunk
hits are folded into documents by their best chunk score before scoring, as BEIR does.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .retrieval import DEFAULT_PROFILE, RetrievalProfile, rank_documents


@dataclass(frozen=True)
class LabelledQuery:
    query_id: str
    text: str
    relevant: dict[str, int]  # doc_id -> relevance grade (> 0)


@dataclass
class EvalResult:
    k: int
    queries: int
    recall: float
    ndcg: float
    per_query: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (recall, ndcg)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR/TREC qrels as tab-separated `query-id, corpus-id, score` (a header line is allowed);
    grades <= 0 are not relevant. A malformed line is an error naming it."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or row[0] == "query-id":
                continue
            if len(row) == 4:  # TREC qrels: query-id, iteration, doc-id, grade
                row = [row[0], row[2], row[3]]
            try:
                query_id, doc_id, grade = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score', got {row!r}"
                ) from None
            if grade > 0:
                qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    """BEIR queries.jsonl: {"_id": ..., "text": ...} per line."""
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                texts[str(record["_id"])] = str(record["text"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with _id and text"
                ) from None
    return texts


def load_labelled(queries_path: Path, qrels_path: Path) -> list[LabelledQuery]:
    """The judged queries of a BEIR-format set (queries without judgements are not scored)."""
    texts = read_queries(queries_path)
    return [
        LabelledQuery(q, texts[q], rel)
        for q, rel in sorted(read_qrels(qrels_path).items())
        if q in texts
    ]


def load_beir_queries(folder: Path, split: str = "test") -> list[LabelledQuery]:
    return load_labelled(folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv")


def write_trec_run(
    path: Path, rankings: Sequence[tuple[str, Sequence[tuple[str, float]]]], name: str
) -> None:
    """A standard TREC run file: `query-id Q0 doc-id rank score run-name` per line."""
    with path.open("w", encoding="utf-8") as handle:
        for query_id, hits in rankings:
            for rank, (doc_id, score) in enumerate(hits, start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {name}\n")


def load_canary(path: Path) -> list[LabelledQuery]:
    """A canary file: one `{"query": ..., "relevant": [doc ids], "id": optional}` per line.

    A malformed line is a ValueError naming the file and line: labelled queries that silently
    lose a line would report a recall nobody asked for.
    """
    queries = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"canary file {path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected an object with 'query' and 'relevant'")
            query = record.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"{where}: 'query' must be a non-empty string")
            relevant = record.get("relevant") or []
            if not isinstance(relevant, list) or not relevant:
                raise ValueError(f"{where}: 'relevant' must be a non-empty list of doc ids")
            queries.append(
                LabelledQuery(str(record.get("id", number)), query, {str(d): 1 for d in relevant})
            )
    return queries


def labelled_queries(source) -> list[LabelledQuery]:
    """The source's labelled queries: its canary file, else what its kind ships, else none."""
    return source.labelled_queries()


def fold_to_documents(chunk_hits: Sequence[tuple[str, float]], k: int) -> list[str]:
    """Best-scoring chunk decides a document's rank; returns the top-k doc ids."""
    best: dict[str, float] = {}
    for doc_id, score in chunk_hits:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    return [d for d, _ in sorted(best.items(), key=lambda item: -item[1])[:k]]


def recall_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    """nDCG with linear gains, as pytrec_eval computes it for BEIR."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def evaluate(
    queries: Sequence[LabelledQuery],
    retrieve: Callable[[Sequence[LabelledQuery]], list[list[str]]],
    k: int = 10,
) -> EvalResult:
    """Score a retrieval function that returns ranked doc ids for each query."""
    if not queries:
        raise ValueError("no labelled queries to evaluate")
    rankings = retrieve(queries)
    per_query = {
        q.query_id: (recall_at_k(r, q.relevant, k), ndcg_at_k(r, q.relevant, k))
        for q, r in zip(queries, rankings)
    }
    recalls = [v[0] for v in per_query.values()]
    ndcgs = [v[1] for v in per_query.values()]
    return EvalResult(k, len(queries), float(np.mean(recalls)), float(np.mean(ndcgs)), per_query)


def table_retriever(
    table,
    embed: Callable[[list[str]], np.ndarray] | None,
    k: int,
    profile: RetrievalProfile = DEFAULT_PROFILE,
):
    """A `retrieve` function over one checked-out LanceDB table (e.g. the pinned serving version),
    ranking documents exactly as search does under `profile`."""

    def retrieve(queries: Sequence[LabelledQuery]) -> list[list[str]]:
        texts = [q.text for q in queries]
        vectors = embed(texts) if profile.uses_vectors else None
        return [
            [hit.doc_id for hit in hits]
            for hits in rank_documents(table, texts, vectors, profile, k)
        ]

    return retrieve
