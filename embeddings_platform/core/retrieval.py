"""How queries are answered: a retrieval profile, and ranking documents with it.

A profile is vector search, full-text search, or both fused by reciprocal-rank fusion over
document-folded hits (the default). It changes answers, so it is part of what serves and
migrates like a model version. Everything that scores retrieval (search, the recall check,
the migration gate, `evaluate`, benchmarks) ranks through `rank_documents`, so what is
measured is what users get.

Measured on SciFact's MiniLM table (test nDCG@10): vector 0.651, full text 0.688, hybrid
with RRF k = 60 over 100 chunks per list 0.709 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from pydantic.dataclasses import dataclass as settings

from .filters import text_query
from .indexing import served_plan, tuned
from .registry import STRICT, KnownKeys, PositiveInt

Mode = Literal["vector", "fts", "hybrid"]
MODES: tuple[str, ...] = ("vector", "fts", "hybrid")
ID_COLUMNS = ["doc_id", "chunk_id"]  # what ranking reads of every candidate
PREFIX_PER_DOCUMENT = 3  # chunks asked per wanted document before a vector list goes deeper


@settings(config=STRICT, kw_only=True)
class RetrievalProfile(KnownKeys):
    """How a source's queries are answered (`serving.retrieval` for new sources; the pointer
    records the one that serves, and `migrate --mode` changes it through the gate)."""

    mode: Mode = "hybrid"
    rrf_k: PositiveInt = 60  # reciprocal-rank fusion constant: score = sum of 1 / (rrf_k + rank)
    depth: PositiveInt = 100  # chunks fetched per list before folding into documents

    @property
    def profile_id(self) -> str:
        return self.mode if self.mode != "hybrid" else f"hybrid-rrf{self.rrf_k}-d{self.depth}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> "RetrievalProfile":
        """The profile a pointer recorded (pointers written before profiles: vector search)."""
        if not raw:
            return cls(mode="vector")
        return cls(**json.loads(raw))

    @property
    def uses_vectors(self) -> bool:
        return self.mode in ("vector", "hybrid")


DEFAULT_PROFILE = RetrievalProfile()


@dataclass
class DocumentHit:
    """A document's place in a ranking, represented by its best chunk."""

    doc_id: str
    score: float
    row: dict[str, Any] = field(default_factory=dict)  # the best chunk's selected columns
    vector_rank: int | None = None
    text_rank: int | None = None


def _fold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunk hits (best first) -> one row per document, at its best chunk's position."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["doc_id"] not in seen:
            seen.add(row["doc_id"])
            out.append(row)
    return out


def _vector_lists(table, vectors: Sequence[np.ndarray], depth: int) -> list[list[dict]]:
    """Chunk hits per query vector (ids, score, row id), best first; one multi-vector search per
    block of 256."""
    plan = served_plan(table)
    lists: list[list[dict]] = [[] for _ in vectors]
    for start in range(0, len(vectors), 256):
        block = [np.asarray(v, dtype=np.float32) for v in vectors[start : start + 256]]
        query = (
            table.search(block if len(block) > 1 else block[0], vector_column_name="vector")
            .metric("cosine")
            .select([*ID_COLUMNS, "_distance"])
            .with_row_id(True)
            .limit(depth)
        )
        result = tuned(query, plan, depth).to_arrow()
        index = (
            result.column("query_index").to_pylist()
            if "query_index" in result.column_names
            else [0] * result.num_rows
        )
        for i, row in zip(index, result.select([*ID_COLUMNS, "_rowid", "_distance"]).to_pylist()):
            row["_score"] = 1.0 - float(row.pop("_distance"))  # cosine similarity
            lists[start + i].append(row)
    for hits in lists:
        hits.sort(key=lambda r: -r["_score"])
    return lists


def _vector_prefixes(table, vectors, depth: int, k: int) -> list[list[dict]]:
    """Vector-only ranking needs the first k documents of each list, not the whole list: ask for
    PREFIX_PER_DOCUMENT * k chunks first and go to full depth only for a query whose prefix
    holds fewer than k documents (reading ids of 100 candidates was a fifth of a query at 1M)."""
    prefix = min(depth, PREFIX_PER_DOCUMENT * k)
    lists = _vector_lists(table, vectors, prefix)
    short = [
        i for i, hits in enumerate(lists) if len(hits) == prefix < depth and len(_fold(hits)) < k
    ]
    if short:
        deeper = _vector_lists(table, [vectors[i] for i in short], depth)
        for i, hits in zip(short, deeper):
            lists[i] = hits
    return lists


def _text_list(table, text: str, depth: int) -> list[dict]:
    """Full-text (BM25) chunk hits (ids, score, row id), best first. The query is data: a
    MatchQuery is tokenised as terms, never parsed as query syntax (a quoted phrase would need
    a positional index)."""
    if not text.strip():
        return []
    result = (
        table.search(text_query(text), query_type="fts")
        .select([*ID_COLUMNS, "_score"])
        .with_row_id(True)
        .limit(depth)
        .to_arrow()
    )
    rows = result.select([*ID_COLUMNS, "_rowid", "_score"]).to_pylist()
    return sorted(rows, key=lambda r: -float(r["_score"]))


def _attach(
    table, ranked: list[list[DocumentHit]], columns: list[str], constant: Sequence[str]
) -> None:
    """Fill in the other columns of the chunks that represent the returned documents: read for
    those k rows by row id, not for every candidate of every list (at 1M rows, reading text and
    lineage for 100 candidates was a third of a query's time). `constant` columns hold one
    value per table version: read from one row, once per version and process."""
    wanted = [c for c in columns if c not in ID_COLUMNS]
    row_ids = sorted({h.row["_rowid"] for hits in ranked for h in hits})
    if not wanted or not row_ids:
        return
    per_row = [c for c in wanted if c not in constant]
    fixed = _per_version(table, [c for c in wanted if c in constant])
    by_id: dict[int, dict] = {}
    if per_row:
        found = table.take_row_ids(row_ids).select(per_row).with_row_id().to_arrow()
        by_id = {r.pop("_rowid"): r for r in found.select([*per_row, "_rowid"]).to_pylist()}
    for hits in ranked:
        for hit in hits:
            hit.row.update(by_id[hit.row["_rowid"]] if per_row else {}, **fixed)


_PER_VERSION: dict[tuple[str, int, tuple[str, ...]], dict] = {}


def _per_version(table, columns: list[str]) -> dict:
    if not columns:
        return {}
    key = (table.uri, table.version, tuple(columns))
    if key not in _PER_VERSION:
        if len(_PER_VERSION) > 1024:  # one entry per served version: cleared, never stale
            _PER_VERSION.clear()
        rows = table.search().select(columns).limit(1).to_arrow().to_pylist()
        _PER_VERSION[key] = rows[0] if rows else dict.fromkeys(columns)
    return _PER_VERSION[key]


def rank_documents(
    table,
    texts: Sequence[str],
    vectors: Sequence[np.ndarray] | None,
    profile: RetrievalProfile,
    k: int,
    columns: Sequence[str] = ("doc_id", "chunk_id"),
    constant: Sequence[str] = (),
) -> list[list[DocumentHit]]:
    """The top-k documents for each query under `profile`, from one checked-out table.

    `vectors` (one per text) are needed for vector and hybrid modes. An empty table ranks
    nothing. Ties in fused scores are broken by doc id, so rankings are deterministic.
    `constant`: columns the caller knows hold one value in this table version.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    columns = list(dict.fromkeys([*ID_COLUMNS, *columns]))
    if table.count_rows() == 0:
        return [[] for _ in texts]
    depth = max(profile.depth, k)
    if profile.uses_vectors and (vectors is None or len(vectors) != len(texts)):
        raise ValueError(f"{profile.mode} retrieval needs one query vector per query")
    by_vector = None
    if profile.mode == "vector":
        by_vector = _vector_prefixes(table, vectors, depth, k)
    elif profile.uses_vectors:
        by_vector = _vector_lists(table, vectors, depth)
    out: list[list[DocumentHit]] = []
    for i, text in enumerate(texts):
        vector_docs = _fold(by_vector[i]) if by_vector is not None else []
        text_docs = _fold(_text_list(table, text, depth)) if profile.mode != "vector" else []
        if profile.mode == "vector":
            hits = [
                DocumentHit(r["doc_id"], r["_score"], r, vector_rank=n)
                for n, r in enumerate(vector_docs, 1)
            ]
        elif profile.mode == "fts":
            hits = [
                DocumentHit(r["doc_id"], float(r["_score"]), r, text_rank=n)
                for n, r in enumerate(text_docs, 1)
            ]
        else:
            hits = _fuse(vector_docs, text_docs, profile.rrf_k)
        out.append(hits[:k])
    _attach(table, out, columns, constant)
    return out


def _fuse(vector_docs: list[dict], text_docs: list[dict], rrf_k: int) -> list[DocumentHit]:
    fused: dict[str, DocumentHit] = {}
    for rank, row in enumerate(vector_docs, 1):
        fused[row["doc_id"]] = DocumentHit(
            row["doc_id"], 1.0 / (rrf_k + rank), row, vector_rank=rank
        )
    for rank, row in enumerate(text_docs, 1):
        hit = fused.get(row["doc_id"])
        if hit is None:
            fused[row["doc_id"]] = DocumentHit(
                row["doc_id"], 1.0 / (rrf_k + rank), row, text_rank=rank
            )
        else:
            hit.score += 1.0 / (rrf_k + rank)
            hit.text_rank = rank
    return sorted(fused.values(), key=lambda h: (-h.score, h.doc_id))
