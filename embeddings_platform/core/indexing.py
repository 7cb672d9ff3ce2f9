"""Which vector index a table gets, how it is queried, and how its indexes are kept current.

Below `serving.ann_min_rows` search is exact (a flat scan is fast and has recall 1.0 at that
size). Above it: IVF_SQ, an IVF partitioning of 8-bit scalar-quantised vectors (DEFAULT_INDEX_TYPE
says why). Queries probe enough partitions and re-rank a few times k on the full-precision
vectors (refine) so recall@10 stays above 0.95; the figures behind these numbers are in
benchmarks/RESULTS.md ("scale").

Rows written after an index was built are searched by a flat scan until they join it (LanceDB
does so for vector and full-text search alike; `fast_search` would skip them and is never used).
`add_unindexed` puts them in a small delta index next to the trained one, without retraining:
LanceDB's default merge of new rows into an IVF_HNSW_SQ index rebuilt every graph (49 s at
100k x 384 here), a delta took 0.2 s, and merging a few deltas with each other 1.6 s.

Each delta costs a query about a millisecond at 1M rows, so they are merged with each other
(`merge_delta_indexes`), but not on a refresh's path: at 1M, merging 8 deltas of 10k rows took 1.7 s
(vector 0.7, full text 1.0) against a 0.7 s refresh step. Past MAX_DELTAS, a sensor asks for a
serving_index run that merges them and pins the merged version (defs/index_merges.py); a
refresh merges them itself only past DELTA_HARD_LIMIT, when that sensor is not running.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lancedb.index import FTS, IvfFlat, IvfHnswSq, IvfPq, IvfRq, IvfSq

MAX_DELTAS = 8  # delta indexes past which a merge run is requested (the trained one is not merged)
DELTA_HARD_LIMIT = 32  # past this a refresh merges them itself (the merge sensor is off)


@dataclass(frozen=True)
class AnnPlan:
    index_type: str  # "FLAT" (no index, exact) or a LanceDB index type
    num_partitions: int = 0  # IVF lists
    nprobes: int = 0  # lists searched per query
    refine_candidates: int = 0  # candidates re-ranked on full vectors per query (0: off)

    @property
    def exact(self) -> bool:
        return self.index_type == "FLAT"

    def refine_factor(self, limit: int) -> int:
        """LanceDB's refine factor for a query of `limit` rows: the same number of candidates
        re-ranked whatever the limit (a factor fixed per plan made a 100-deep hybrid list
        re-rank 2,000 rows, most of a query's time at 1M)."""
        if not self.refine_candidates:
            return 0
        return max(1, math.ceil(self.refine_candidates / max(1, limit)))


ROWS_PER_PARTITION = 2048
PROBED_SHARE = 10  # probe 1 in PROBED_SHARE of the lists (at least MIN_PROBES)
MIN_PROBES = 20
REFINE_CANDIDATES = 200
# IVF_SQ is IVF_HNSW_SQ (the index before issue 18) without an HNSW graph per partition, which is
# what made that one slow to build. `bench_scale.py --rows 200000 --rows-per-partition 1640
# --index-types IVF_HNSW_SQ,IVF_RQ,IVF_FLAT,IVF_PQ` (MiniLM vectors, 121 partitions as at 1M,
# 20 probed, refine 20; training s / recall@10 / p50 ms through serving.search, exact 106 ms):
#   IVF_HNSW_SQ 59.4 / 0.954 / 93.7    IVF_SQ 8.9 / 0.970 / 37.3    IVF_RQ 11.7 / 0.988 / 43.9
#   IVF_FLAT 9.3 / 0.984 / 61.9        IVF_PQ 55.3 / 0.898 / 45.3
# IVF_SQ builds fastest and answers fastest above the 0.95 floor; IVF_RQ keeps more margin.
DEFAULT_INDEX_TYPE = "IVF_SQ"
# the types ann_plan may name (benchmarks/bench_scale.py --index-types compares them)
_CONFIGS = {
    "IVF_SQ": IvfSq,
    "IVF_HNSW_SQ": IvfHnswSq,
    "IVF_PQ": IvfPq,
    "IVF_RQ": IvfRq,
    "IVF_FLAT": IvfFlat,
}


def ann_plan(rows: int, ann_min_rows: int, index_type: str | None = None) -> AnnPlan:
    """The index and query settings for a table of `rows` vectors (of DEFAULT_INDEX_TYPE unless
    `index_type` names another)."""
    index_type = index_type or DEFAULT_INDEX_TYPE
    if rows < ann_min_rows:
        return AnnPlan("FLAT")
    partitions = max(1, rows // ROWS_PER_PARTITION)
    # 1M MiniLM vectors (488 lists of ~2k rows, 49 probed, 200 candidates re-ranked on full
    # vectors), through core.serving.search: see benchmarks/RESULTS.md ("scale"). Fewer, larger
    # lists (122 of 8k rows, 20 probed) scanned 16% of the table per query for the same recall
    # and trained faster; 30 probes of 488 gave recall@10 0.938, 45 gave 0.954 to 0.973 from one
    # training to the next (k-means is seeded at random), so 1 in 10 keeps a margin.
    probes = max(MIN_PROBES, math.ceil(partitions / PROBED_SHARE))
    return AnnPlan(index_type, partitions, min(probes, partitions), REFINE_CANDIDATES)


def index_config(plan: AnnPlan):
    """The LanceDB index configuration of a plan (cosine distance)."""
    if plan.index_type not in _CONFIGS:
        raise ValueError(f"no index configuration for {plan.index_type!r}; use {sorted(_CONFIGS)}")
    return _CONFIGS[plan.index_type](distance_type="cosine", num_partitions=plan.num_partitions)


def build_vector_index(table, plan: AnnPlan) -> None:
    """Create (replace) the table's vector index as the plan says: a full training; FLAT builds
    nothing."""
    if plan.exact:
        return
    table.create_index("vector", config=index_config(plan), replace=True)


def build_fts_index(table) -> None:
    """Create (replace) the full-text index on `text` (retrieval.py queries it)."""
    table.create_index("text", config=FTS(), replace=True)


def tuned(query, plan: AnnPlan, limit: int):
    """Apply the plan's query settings to a LanceDB vector query of `limit` rows."""
    if plan.exact:
        return query
    query = query.nprobes(plan.nprobes)
    refine = plan.refine_factor(limit)
    return query.refine_factor(refine) if refine else query


def vector_index(table):
    """The table's vector index, or None (exact search)."""
    return next((index for index in table.list_indices() if "vector" in index.columns), None)


def fts_index(table):
    """The table's full-text index on `text`, or None."""
    return next((index for index in table.list_indices() if index.columns == ["text"]), None)


def index_kind(index) -> str:
    """An index's type as ann_plan names it ("IvfHnswSq" -> "IVF_HNSW_SQ")."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", str(index.index_type)).upper()


def served_plan(table) -> AnnPlan:
    """The plan a checked-out table was indexed with: its query settings follow from its size
    and the type of its index (a table indexed before a new default keeps its own)."""
    index = vector_index(table)
    return ann_plan(table.count_rows(), 0, index_kind(index)) if index else AnnPlan("FLAT")


def unindexed_rows(table, index) -> int:
    """Rows an index does not cover yet (searched by a flat scan until they join it)."""
    stats = table.index_stats(index.name)
    return int(stats.num_unindexed_rows or 0) if stats is not None else 0


def add_unindexed(table, index) -> None:
    """Index the rows written since the index was last maintained, without retraining it: a
    delta index over them (LanceDB `optimize_indices(num_indices_to_merge=0)`). The same for the
    full-text index: merging new rows into its postings rewrote all of them (2.2 s at 200k rows
    here, against 0.16 s for a delta), and BM25 scores stay those of one index. Deltas are merged
    with each other by a run of their own (module docstring), here only past DELTA_HARD_LIMIT.
    """
    if index is None:  # another process dropped it to retrain: its new index covers the rows
        return
    table.to_lance().optimize.optimize_indices(index_names=[index.name], num_indices_to_merge=0)
    if deltas(table, index) > DELTA_HARD_LIMIT:
        merge_delta_indexes(table, index)


def merge_delta_indexes(table, index) -> bool:
    """Merge an index's deltas into one, never with the trained index (that would rewrite it
    all); returns whether there was anything to merge."""
    count = deltas(table, index) if index is not None else 0
    if count < 2:
        return False
    table.to_lance().optimize.optimize_indices(index_names=[index.name], num_indices_to_merge=count)
    return True


def deltas(table, index) -> int:
    """Delta indexes next to the trained one (each refresh adds one per index)."""
    return max(0, segments(table, index) - 1)


def merge_segments(table, index) -> None:
    """One segment of an index over every row (LanceDB compacts only the fragments of one
    segment together): rewrites the whole index, so only before a retraining."""
    if index is not None and (segments(table, index) > 1 or unindexed_rows(table, index)):
        table.to_lance().optimize.optimize_indices(
            index_names=[index.name], num_indices_to_merge=segments(table, index)
        )


def segments(table, index) -> int:
    """The trained index plus its deltas."""
    stats = table.index_stats(index.name)
    return int(stats.num_indices or 1) if stats is not None else 0


def fragments(table) -> int:
    """Data fragments of the table's current version (each write adds at least one)."""
    return len(table.to_lance().get_fragments())


def compact(table, only_unindexed: bool) -> int:
    """Merge small fragments and drop deleted rows (LanceDB compaction); returns the fragments
    removed. Old versions stay readable until retention cleanup removes them.

    `only_unindexed`: merge just the fragments no index covers yet (the rows of recent writes),
    which needs no index remap. LanceDB does not merge fragments of different index segments,
    and remapping an IVF_HNSW_SQ index after rewriting indexed fragments cost 12 s at 100k rows.
    """
    dataset = table.to_lance()
    indexed = {
        int(fragment)
        for index in dataset.describe_indices()
        for segment in index.segments
        for fragment in segment.fragment_ids
    }
    if only_unindexed:
        if len({f.fragment_id for f in dataset.get_fragments()} - indexed) < 2:
            return 0
        metrics = dataset.optimize.compact_files(excluded_fragment_ids=sorted(indexed))
    else:
        metrics = dataset.optimize.compact_files()
    return int(metrics.fragments_removed)
