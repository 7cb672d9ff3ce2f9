"""Search latency, cold and warm, with the real MiniLM on the bundled default corpus.

    .venv/bin/python benchmarks/bench_search.py   # about 5 minutes on 2 shared cores

The corpus and model `make demo` serves: the Python reference topics (`pydoc_topics`, 79
documents, 608 chunks) embedded with the bundled all-MiniLM-L6-v2, built once with the core
pipeline under benchmarks/out/search/ (reused by later runs). Queries: the 15 labelled queries
of the bundled canary file, cycled.

- cold: a fresh `embeddings-platform search` process per query (what an operator types), wall
  time from start to exit, against a process that only starts the CLI
  (`embeddings-platform --help`): the difference is what a search itself costs once imports
  are paid: reading the registry, loading the model, embedding, searching;
- warm: repeated `api.Searcher.search` calls in one process (the model loaded once, by the
  first call, which is not counted), against the bare model encode of the same query and a
  vector-only search, measured in the same process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import OUT, ROOT, bench_main, machine  # noqa: E402

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import yaml  # noqa: E402

from embeddings_platform.api import Searcher  # noqa: E402
from embeddings_platform.core.config import load_config  # noqa: E402
from embeddings_platform.core.evaluation import load_canary  # noqa: E402
from embeddings_platform.core.models import cached_embedder  # noqa: E402
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.store import Store  # noqa: E402

WORK = OUT / "search"
SOURCE = "python-docs"
CANARY = ROOT / "embeddings_platform" / "canary" / "python_docs.jsonl"
COLD_RUNS = 6
WARM_RUNS = 60


def _registry() -> dict:
    """The default registry's corpus and serving model (embeddings_platform.yaml)."""
    default = yaml.safe_load((ROOT / "embeddings_platform.yaml").read_text())
    minilm = next(m for m in default["models"] if m["name"] == "minilm")
    source = next(s for s in default["sources"] if s["name"] == SOURCE)
    source = {**source, "canary": str(CANARY)}
    return {"storage": {"uri": str(WORK / "lancedb")}, "sources": [source], "models": [minilm]}


def build() -> tuple[str, float]:
    """The served index (built once); returns the registry path and the build's seconds."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "embeddings_platform.yaml"
    path.write_text(yaml.safe_dump(_registry()))
    config = load_config(path)
    store = Store(config.storage_uri)
    started = time.perf_counter()
    if store.pointer(SOURCE) is None:
        model = config.models[0]
        refresh(
            store, config.sources[0], model, config.serving, lambda: cached_embedder(model), "b"
        )
    return str(path), time.perf_counter() - started


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * p95, "n": len(ordered)}


def _process(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed: {done.stderr[-1000:]}")
    return seconds


def run(args) -> dict:
    config_path, build_seconds = build()
    queries = [q.text for q in load_canary(CANARY)]
    cli = [sys.executable, "-m", "embeddings_platform.cli", "--config", config_path]
    # cold: a process per search, alternating with a process that only starts the CLI
    cold, start_only = [], []
    for i in range(COLD_RUNS):
        start_only.append(_process([*cli, "--help"]))
        cold.append(_process([*cli, "search", queries[i % len(queries)], "--source", SOURCE]))
    # warm: one process (this one), the model loaded by a first, uncounted search
    searcher = Searcher(config_path)
    model = searcher.config.models[0]
    first_started = time.perf_counter()
    searcher.search(queries[0], SOURCE)
    first = time.perf_counter() - first_started
    embedder = cached_embedder(model)
    warm, vector, encode = [], [], []
    for i in range(WARM_RUNS):
        query = queries[i % len(queries)]
        for samples, call in (
            (encode, lambda: embedder.embed([query])),
            (vector, lambda: searcher.search(query, SOURCE, mode="vector")),
            (warm, lambda: searcher.search(query, SOURCE)),
        ):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return {
        "machine": machine(),
        "load_average": os.getloadavg()[0],
        "command": "python benchmarks/bench_search.py",
        "corpus": f"{SOURCE} (pydoc_topics), model minilm (all-MiniLM-L6-v2), exact search",
        "vectors": Store(searcher.config.storage_uri)
        .open_table(searcher.store.pointer(SOURCE)["table_name"])
        .count_rows(),
        "build_seconds": build_seconds,
        "queries": len(queries),
        "first_search_in_process_ms": 1000 * first,
        "cold_cli_search": _ms(cold),
        "cli_start_only": _ms(start_only),
        "warm_search_hybrid": _ms(warm),
        "warm_search_vector": _ms(vector),
        "bare_encode": _ms(encode),
    }


ROWS = [  # (label, result key, baseline key or None, what the ratio is of)
    ("cold: `embeddings-platform search` (fresh process, wall)", "cold_cli_search",
     "cli_start_only", "a CLI start"),
    ("CLI start only (`embeddings-platform --help`, wall)", "cli_start_only", None, ""),
    ("warm: `Searcher.search` (hybrid, the served profile)", "warm_search_hybrid",
     "bare_encode", "a bare encode"),
    ("warm: `Searcher.search(mode='vector')`", "warm_search_vector", "bare_encode",
     "a bare encode"),
    ("bare model encode of the query (MiniLM)", "bare_encode", None, ""),
]  # fmt: skip


def render(r: dict) -> str:
    lines = ["| what | p50 ms | p95 ms | n | p50 ratio |", "| --- | ---: | ---: | ---: | --- |"]
    for label, key, base, of in ROWS:
        m = r[key]
        ratio = f"{m['p50_ms'] / r[base]['p50_ms']:.2f}x {of}" if base else "baseline"
        lines.append(f"| {label} | {m['p50_ms']:.0f} | {m['p95_ms']:.0f} | {m['n']} | {ratio} |")
    table = "\n".join(lines)
    cold_over_warm = r["cold_cli_search"]["p50_ms"] / r["warm_search_hybrid"]["p50_ms"]
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}; 2 cores shared with other
jobs (load average {r["load_average"]:.1f} at the end of the run). Data: {r["corpus"]},
{r["vectors"]} vectors; queries: the {r["queries"]} labelled queries of the bundled canary file,
cycled. Latencies in ms; each ratio is against a baseline measured in the same run.

{table}

Cold over warm (p50): {cold_over_warm:.0f}x. The first search in a process (model load included,
not in the warm rows) took {r["first_search_in_process_ms"]:.0f} ms; later searches reuse the
loaded model (one per model version per process). A cold search pays the CLI start (imports of
LanceDB, PyArrow, torch) and the model load on top of the search itself: for many queries, use
the Python API (`embeddings_platform.api.Searcher`) or one long-lived process.
"""


if __name__ == "__main__":
    sys.exit(
        bench_main(sys.argv[1:], __doc__, "search", "Search latency: cold and warm", run, render)
    )
