"""A million real MiniLM vectors served by the product: index builds side by side, then refreshes.

    .venv/bin/python benchmarks/bench_scale.py            # about 30 minutes on 2 cores
    .venv/bin/python benchmarks/bench_scale.py --rows 200000    # a few minutes: printed, not saved
    .venv/bin/python benchmarks/bench_scale.py --rows 200000 --rows-per-partition 1640 \
        --index-types IVF_HNSW_SQ,IVF_RQ,IVF_FLAT,IVF_PQ    # candidates, 1M's partition count
    .venv/bin/python benchmarks/bench_scale.py --rows 30000 --base synthetic    # a smoke run

Data: the all-MiniLM-L6-v2 vectors of SciFact's chunks that bench_migration.py made (run
first by `make bench`; this script runs it if its output is missing), repeated to --rows rows
with a small perturbation (Gaussian noise, sigma 0.01 per dimension, renormalised; copy 0 is
the original). Every row has the product's vectors schema (core/store.vectors_schema): the text
and lineage of the SciFact chunk it repeats, under a document id of its own copy. Queries: 100
SciFact test queries embedded by MiniLM (the gate's query-vector cache). `--base synthetic`
(clustered random vectors) only checks that the script works on a machine without that output.

1. Full builds, side by side in one run: the serving_index step (core/pipeline.
   build_serving_index: index maintenance, the blocking consistency check, the pointer moved)
   as it runs with IVF_HNSW_SQ, the index before issue 18, as the default (in a process of its
   own, so that its memory is not counted as the product's), then with today's default
   (core/indexing.DEFAULT_INDEX_TYPE), both indexes from none (the first's dropped).
   For each: the step's and the vector index training's seconds, recall@10 at the serving query
   settings against exact search of the same pinned version, p50/p99 latency through
   core/serving.search. Baseline: exact search of the same version, same run.
2. --refreshes (10) refreshes in a row, each giving --share (1%) of the rows new vectors under
   the same ids (another row's vector plus noise), then the serving_index step: its time against
   the full build of (1), what it did to the indexes, and recall@10 after it. A refresh that
   leaves more than indexing.MAX_DELTAS delta indexes is followed by the merge run
   index_merge_sensor would request (the serving_index step with merge_deltas), timed apart.
Peak RSS of the product path is reported (the side-by-side builds report their own).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from multiprocessing import get_context

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    OUT,
    ROOT,
    bench_main,
    machine,
    peak_rss_mb,
    peak_rss_since_reset_mb,
    reset_peak_rss,
    timed,
)

sys.path.insert(0, str(ROOT))

import lancedb  # noqa: E402
from _scale_refresh import (  # noqa: E402
    SOURCE,
    close_exact_pool,
    exact_elsewhere,
    exact_latency,
    refreshes,
    served_quality,
    side,
    step_elsewhere,
)

from embeddings_platform.core import indexing  # noqa: E402
from embeddings_platform.core.indexing import (  # noqa: E402
    DEFAULT_INDEX_TYPE,
    MAX_DELTAS,
    ROWS_PER_PARTITION,
)
from embeddings_platform.core.store import (  # noqa: E402
    CHUNKS,
    Store,
    chunks_table_name,
    utcnow,
    vectors_schema,
    vectors_table_name,
)

BEFORE = "IVF_HNSW_SQ"  # the index type before issue 18: the side-by-side baseline
BEFORE_ROWS_PER_PARTITION = 8192  # and its lists (122 at 1M)
MIGRATION_DB = OUT / "migration" / "lancedb"
WORK = OUT / "scale"
MINILM_TABLE = "vectors__scifact__minilm-e64ca78dc7"
QUERIES = 100  # an exact search over 1M rows takes about a second each


def minilm_base() -> tuple[pa.Table, np.ndarray, list[str]]:
    """SciFact's MiniLM rows (every column), and SciFact test queries: text and MiniLM vectors."""
    if not (MIGRATION_DB / f"{MINILM_TABLE}.lance").exists():
        import bench_migration

        bench_migration.main([])
    from _results import SCIFACT

    from embeddings_platform.core.evaluation import load_beir_queries

    rows = lancedb.connect(str(MIGRATION_DB)).open_table(MINILM_TABLE).to_arrow()
    texts = [q.text for q in load_beir_queries(SCIFACT)[:QUERIES]]
    # in a process of its own: the model's memory is not the serving path's
    with get_context("spawn").Pool(1) as pool:
        vectors = pool.apply(embed_queries, (texts,))
    return rows, vectors, texts


def embed_queries(texts: list[str]) -> np.ndarray:
    """The queries' MiniLM vectors, as search would embed them."""
    from _results import BENCH_MODELS

    from embeddings_platform.core.config import parse_config
    from embeddings_platform.core.models import load_embedder

    model = parse_config({"sources": [], "models": [BENCH_MODELS["minilm"]]}, ROOT).models[0]
    return np.asarray(load_embedder(model).embed(texts), dtype=np.float32)


def synthetic_base(dim: int = 384, n: int = 2000, queries: int = 20):
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
    texts = [f"synthetic chunk {i}" for i in range(queries)]
    return pa.Table.from_pylist(rows, schema=vectors_schema(dim)), picks.astype(np.float32), texts


def drop_indexes(store: Store, version: str) -> None:
    """Both indexes from scratch, as every refresh built them before issue 18: the full build a
    refresh is set against trains the vector index and builds the full-text one."""
    table = store.table(vectors_table_name(SOURCE, version))
    for index in table.list_indices():
        table.drop_index(index.name)


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
        doc_ids = part.column("doc_id").to_pylist()
        for name, column in (
            ("chunk_id", pa.array([f"c{copy}-{i}" for i in range(n)])),
            ("doc_id", pa.array([f"{d}~{copy}" for d in doc_ids])),  # a document per copy
            ("source", pa.array([SOURCE] * n)),
            ("vector", block),
        ):
            part = part.set_column(schema.get_field_index(name), schema.field(name), column)
        table.add(part)
        chunks.add(part.select(CHUNKS.names).cast(CHUNKS))
        written += n
        copy += 1
    return table, version


def run(
    rows: int,
    base_kind: str,
    types: list[str],
    rounds: int,
    share: float,
    rows_per_partition: int = ROWS_PER_PARTITION,
) -> dict:
    indexing.ROWS_PER_PARTITION = rows_per_partition
    base, queries, texts = minilm_base() if base_kind == "minilm" else synthetic_base()
    if WORK.exists():
        shutil.rmtree(WORK)
    store = Store(str(WORK))
    (_, version), write_seconds = timed(write_table, store, base, rows, np.random.default_rng(0))
    dim = base.schema.field("vector").type.list_size
    result = {
        "command": f".venv/bin/python benchmarks/bench_scale.py --rows {rows}"
        + (
            f" --rows-per-partition {rows_per_partition}"
            if rows_per_partition != ROWS_PER_PARTITION
            else ""
        )
        + (f" --index-types {','.join(types)}" if types != [BEFORE] else ""),
        "machine": machine(),
        "rows": rows,
        "base": base_kind,
        "dimension": dim,
        "queries": int(len(queries)),
        "write_seconds": write_seconds,
        "peak_rss_mb_after_write": peak_rss_mb(),
        "builds": [],
    }
    for index_type in [t for t in types if t != DEFAULT_INDEX_TYPE]:  # each in its own process
        with get_context("spawn").Pool(1) as pool:
            lists = BEFORE_ROWS_PER_PARTITION if index_type == BEFORE else rows_per_partition
            built = pool.apply(side, (str(WORK), version, dim, index_type, queries, lists))
        _print(built)
        result["builds"].append(built)
    drop_indexes(store, version)  # the side builds left theirs: this one starts from none
    built = step_elsewhere(store, version, dim)  # the product's default last: refreshes use it
    exact = exact_elsewhere(store, queries)  # the same data for every side: one exact baseline
    exact_ms = exact_latency(store, queries)  # in this process, as the searches it is set against
    result["exact_p50_ms"] = float(np.percentile(exact_ms, 50))
    result["exact_p99_ms"] = float(np.percentile(exact_ms, 99))
    built.update(served_quality(store, queries, exact), default=DEFAULT_INDEX_TYPE)
    rss_before = reset_peak_rss()
    result["search_modes"] = mode_latency(store, queries, texts)
    result["search_rss_mb"] = {"before": rss_before, "peak": peak_rss_since_reset_mb()}
    _print(built)
    result["builds"].append(built)
    result["refreshes"] = refreshes(store, version, dim, queries, rounds, share)
    close_exact_pool()
    result["share"] = share
    result["peak_rss_mb"] = peak_rss_mb()
    return result


BUILD_COLUMNS = (
    "default index, IVF plan, step s, training s, training vs before, recall@10, p50 ms, "
    "p99 ms, p50 vs exact"
)
REFRESH_COLUMNS = (
    "refresh, index action, step s, vs full build, vs training alone, index maintenance s, "
    "consistency check s, "
    "unindexed rows, rows since training, delta indexes, recall@10, p50 ms, "
    "merge run s (vs full build), p50 ms after merge"
)


def mode_latency(store: Store, queries: np.ndarray, texts: list[str]) -> dict:
    """p50/p99 ms of the default profile (hybrid) beside vector-only and full text, through
    core/serving.search with the query text and its vector, interleaved per query."""
    from embeddings_platform.core.serving import search

    ms = {"vector": [], "fts": [], "hybrid": []}
    for vector, text in zip(queries, texts):
        for mode in ms:
            start = time.perf_counter()
            search(store, SOURCE, text, 10, lambda _version, v=vector: v, mode=mode)
            ms[mode].append(1000 * (time.perf_counter() - start))
    return {
        m: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for m, v in ms.items()
    }


def _header(columns: str) -> str:
    names = columns.split(", ")
    align = [
        "---" if n in ("default index", "IVF plan", "index action", "unindexed rows") else "---:"
        for n in names
    ]
    return f"| {' | '.join(names)} |\n| {' | '.join(align)} |"


def _print(built: dict) -> None:
    print(
        f"{built['default']}: {built['action']} in {built['step_seconds']:.1f} s "
        f"(training {built['train_seconds']:.1f} s), recall {built['recall_at_10']:.3f}, "
        f"p50 {built['p50_ms']:.1f} ms",
        flush=True,
    )


def render(r: dict) -> str:
    exact, full = r["exact_p50_ms"], r["builds"][-1]
    before = next((b for b in r["builds"] if b["default"] == BEFORE), None)
    builds = "\n".join(
        f"| `{b['default']}`{' (before issue 18)' if b['default'] == BEFORE else ''} | "
        f"{b['plan']['num_partitions']} / {b['plan']['nprobes']} / "
        f"{b['plan'].get('refine_candidates', 200)} | "
        f"{b['step_seconds']:.1f} | {b['train_seconds']:.1f} | "
        + (f"{b['train_seconds'] / before['train_seconds']:.2f} | " if before else "| ")
        + f"**{b['recall_at_10']:.3f}** | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
        f"{b['p50_ms'] / exact:.3f} |"
        for b in r["builds"]
    )
    rounds = "\n".join(
        f"| {x['round']} | {x['action']} | {x['step_seconds']:.2f} | "
        f"**{x['step_seconds'] / full['step_seconds']:.3f}** | "
        f"{x['step_seconds'] / full['train_seconds']:.3f} | {x['maintenance_seconds']:.2f} | "
        f"{x['check_seconds']:.2f} | {x['unindexed_before']:,} -> {x['unindexed_after']:,} | "
        f"{x['rows_since_training']:,} | {x.get('deltas_after', '')} | "
        f"**{x['recall_at_10']:.3f}** | {x['p50_ms']:.1f} | {_merge_cells(x, full)} |"
        for x in r["refreshes"]
    )
    others = ", ".join(
        f"{b['default']} build in its own process: {b['peak_rss_mb']:.0f} MB"
        for b in r["builds"][:-1]
    )
    m = r.get("search_modes", {})
    modes = (
        "; ".join(
            f"{mode} p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms"
            + (f" ({v['p50_ms'] / m['vector']['p50_ms']:.2f}x vector)" if mode != "vector" else "")
            for mode, v in m.items()
        )
        or "not measured"
    )
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: {r["rows"]:,} rows of
dimension {r["dimension"]} in the product's vectors schema: the all-MiniLM-L6-v2 vectors of
SciFact's chunks (with their text and lineage), repeated with Gaussian noise (sigma 0.01 per
dimension, renormalised); {r["queries"]} SciFact test queries embedded by MiniLM. Every build
and refresh is the serving_index step (core/pipeline.build_serving_index). recall@10: at the
serving query settings against exact search of the same pinned version; latency: through
core/serving.search. Baseline: exact search, same version, same run: p50 {exact:.1f} ms,
p99 {r["exact_p99_ms"]:.1f} ms.

Full builds, side by side (IVF lists / probed / candidates re-ranked on full vectors; each
step in a process of its own builds both indexes of the same table from none: the vector
index and the full-text index):

{_header(BUILD_COLUMNS)}
{builds}

{len(r["refreshes"])} refreshes in a row, each re-embedding {r["share"]:.0%} of the rows
({r["refreshes"][0]["rows_changed"]:,} new vectors under the same ids), then the serving_index
step, against the full build of `{full["default"]}` above: {full["step_seconds"]:.1f} s to train
the vector index and build the full-text index from scratch, as every refresh did before
issue 18 (its vector training alone, {full["train_seconds"]:.1f} s, in the next column). Each
refresh adds a delta index per index; past {MAX_DELTAS}, index_merge_sensor requests a
serving_index run that merges them and pins the merged version, off the refresh's path: the
last two columns time that run as the sensor would request it after that refresh.

{_header(REFRESH_COLUMNS)}
{rounds}

Search modes through core/serving.search on the `{full["default"]}` build (query text and \
vector, interleaved per query): {modes}.

{_memory(r, full)} {others}.
"""


def _merge_cells(x: dict, full: dict) -> str:
    """The delta-merge run after a refresh (off its path: index_merge_sensor requests it)."""
    m = x.get("merge")
    if m is None:
        return " | "
    share = m["step_seconds"] / full["step_seconds"]
    return f"{m['step_seconds']:.2f} ({share:.3f}) | {m['p50_ms']:.1f}"


def _memory(r: dict, full: dict) -> str:
    """Peak resident memory per phase (the peak is reset before each: Linux clear_refs), with
    the memory the benchmark process held when the phase began."""
    steps = [full, *r["refreshes"]]
    if not all("step_peak_rss_mb" in x for x in steps):
        return f"Peak RSS: **{r['peak_rss_mb']:.0f} MB** (per phase not measured)."
    refresh = max(r["refreshes"], key=lambda x: x["step_peak_rss_mb"])
    search = r.get("search_rss_mb") or {}
    return (
        "Peak resident memory per phase (goal <= 1536 MB; the peak is reset before each). Each "
        "serving_index step runs in a process of its own, as the project's executor runs every "
        "Dagster run: the full `{0}` build step **{1:.0f} MB** (the process held {2:.0f} MB "
        "before it: imports); the worst refresh step **{3:.0f} MB** (from {4:.0f} MB); "
        "searches of the default profile **{5:.0f} MB** (from {6:.0f} MB; the query model was "
        "loaded in a process of its own). The benchmark process at its highest, having "
        "searched every version it served and holding its own data (the ids of the rows it "
        "re-embeds, the exact-search latency baseline): {7:.0f} MB; how a long-lived searcher "
        "grows per served version is measured apart (bench_version_memory.py)."
    ).format(
        full["default"],
        full["step_peak_rss_mb"],
        full["step_rss_before_mb"],
        refresh["step_peak_rss_mb"],
        refresh["step_rss_before_mb"],
        search.get("peak", 0.0),
        search.get("before", 0.0),
        r["peak_rss_mb"],
    )


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
            "--index-types",
            default=BEFORE,
            help="comma-separated index types built side by side before the default "
            f"({DEFAULT_INDEX_TYPE}), which is always built last",
        )
        parser.add_argument(
            "--rows-per-partition",
            type=int,
            default=ROWS_PER_PARTITION,
            help="IVF partition size (core/indexing.ROWS_PER_PARTITION); e.g. 1640 at 200k "
            "rows gives the 122 partitions of 1M",
        )
        parser.add_argument("--refreshes", type=int, default=10)
        parser.add_argument("--share", type=float, default=0.01)

    title = "Scale: one million vectors, index builds side by side and 1% refreshes (issue 18)"
    return bench_main(
        argv,
        __doc__,
        "scale",
        title,
        lambda args: run(
            args.rows,
            args.base,
            [t for t in args.index_types.split(",") if t],
            args.refreshes,
            args.share,
            args.rows_per_partition,
        ),
        render,
        arguments,
        smoke=lambda args: args.rows != 1_000_000 or args.base != "minilm",
    )


if __name__ == "__main__":
    raise SystemExit(main())
