"""The vector index and its query settings follow from the table size."""

import lancedb
import numpy as np
import pyarrow as pa

from embeddings_platform.core.indexing import (
    AnnPlan,
    ann_plan,
    build_vector_index,
    served_plan,
    tuned,
)


def test_small_tables_are_searched_exactly_and_large_ones_get_a_tuned_ann_index():
    assert ann_plan(19_999, 20_000).exact
    assert ann_plan(20_000, 20_000) == AnnPlan("IVF_SQ", 9, 9, 200)  # every list of 9 probed
    plan = ann_plan(1_000_000, 20_000)
    assert (plan.index_type, plan.num_partitions, plan.nprobes) == ("IVF_SQ", 488, 49)
    assert ann_plan(4_000_000, 20_000).nprobes == 196  # probes grow with the number of lists


def test_the_same_number_of_candidates_is_re_ranked_whatever_a_query_s_limit():
    plan = ann_plan(1_000_000, 20_000)
    assert [plan.refine_factor(limit) for limit in (10, 11, 100, 500)] == [20, 19, 2, 1]
    assert AnnPlan("FLAT").refine_factor(10) == 0


def test_the_served_plan_is_read_back_from_the_table_and_keeps_recall_high(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = lancedb.connect(str(tmp_path)).create_table(
        "v",
        pa.Table.from_arrays(
            [
                pa.array([str(i) for i in range(3000)]),
                pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 32),
            ],
            names=["chunk_id", "vector"],
        ),
    )
    assert served_plan(table).exact
    build_vector_index(table, ann_plan(3000, 1000, "IVF_HNSW_SQ"))  # the default before IVF_SQ
    assert served_plan(table) == ann_plan(3000, 1000, "IVF_HNSW_SQ")  # queried as it was built
    build_vector_index(table, ann_plan(3000, 1000))
    assert served_plan(table).index_type == "IVF_SQ"
    hits = 0
    for q in vectors[:50]:
        exact = (
            table.search(q)
            .metric("cosine")
            .limit(10)
            .bypass_vector_index()
            .to_arrow()
            .column("chunk_id")
            .to_pylist()
        )
        ann = (
            tuned(table.search(q).metric("cosine").limit(10), served_plan(table), 10)
            .to_arrow()
            .column("chunk_id")
            .to_pylist()
        )
        hits += len(set(exact) & set(ann))
    assert hits / 500 >= 0.95
