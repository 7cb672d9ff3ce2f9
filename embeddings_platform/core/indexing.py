"""Which vector index a table gets, and how it is queried, chosen from its size.

Below `serving.ann_min_rows` search is exact (a flat scan is fast and has recall 1.0 at that
size). Above it: IVF_HNSW_SQ, an IVF partitioning with an HNSW graph of 8-bit scalar-quantised
vectors in each partition. Queries probe enough partitions and re-rank a few times k on the
full-precision vectors (refine) so recall@10 stays above 0.95; the figures behind these
numbers are in benchmarks/RESULTS.md ("scale"), measured on 1M real MiniLM vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lancedb.index import FTS, HnswSq


@dataclass(frozen=True)
class AnnPlan:
    index_type: str  # "FLAT" (no index, exact) or a LanceDB index type
    num_partitions: int = 0  # IVF lists
    nprobes: int = 0  # lists searched per query
    refine_factor: int = 0  # re-rank refine_factor * k candidates on full vectors (0: off)

    @property
    def exact(self) -> bool:
        return self.index_type == "FLAT"


ROWS_PER_PARTITION = 8192


def ann_plan(rows: int, ann_min_rows: int) -> AnnPlan:
    """The index and query settings for a table of `rows` vectors."""
    if rows < ann_min_rows:
        return AnnPlan("FLAT")
    partitions = max(1, rows // ROWS_PER_PARTITION)
    # Probe ~1/8 of the lists (at least 20) and re-rank 20 x k candidates on full vectors. At 1M
    # MiniLM vectors (122 lists) refine 20 gave recall@10 0.968 at 41 ms (p50), LanceDB's default
    # query settings 0.808 (benchmarks/RESULTS.md, "scale"); 40 probes without refine did no
    # better than 20 (section "checks").
    return AnnPlan("IVF_HNSW_SQ", partitions, max(20, math.ceil(partitions / 8)), 20)


def build_vector_index(table, plan: AnnPlan) -> None:
    """Create (replace) the table's vector index as the plan says; FLAT builds nothing."""
    if plan.exact:
        return
    if plan.index_type != "IVF_HNSW_SQ":
        raise ValueError(f"no index configuration for {plan.index_type!r}")
    config = HnswSq(distance_type="cosine", num_partitions=plan.num_partitions)
    table.create_index("vector", config=config, replace=True)


def build_text_index(table) -> None:
    """Create (replace) the full-text index on `text` (LanceDB's native FTS, default tokenizer)."""
    table.create_index("text", config=FTS(), replace=True)


def tuned(query, plan: AnnPlan):
    """Apply the plan's query settings to a LanceDB vector query."""
    if plan.exact:
        return query
    query = query.nprobes(plan.nprobes)
    return query.refine_factor(plan.refine_factor) if plan.refine_factor else query


def vector_index(table):
    """The table's vector index, or None (exact search)."""
    return next((index for index in table.list_indices() if "vector" in index.columns), None)


def served_plan(table) -> AnnPlan:
    """The plan a checked-out table was indexed with: its query settings follow from its size."""
    return ann_plan(table.count_rows(), 0) if vector_index(table) is not None else AnnPlan("FLAT")
