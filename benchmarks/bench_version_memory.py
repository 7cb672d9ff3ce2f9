"""Memory of a long-lived process that searches each new served version of a 1M-row table.

    .venv/bin/python benchmarks/bench_version_memory.py    # after bench_scale.py (its store)

bench_scale's process grows by tens of MB per served version it searches. This measures that
growth apart from everything else the benchmark holds: for each LanceDB cache setting, a fresh
process opens the table at each version bench_scale pinned (its serve tags, oldest first) and
runs the same 100 vector queries (stored vectors of the table, at the serving query settings),
recording resident memory after each version and the p50 latency. Baseline: LanceDB's default
caches, same run. A bounded `lancedb.Session` caps the caches' accounted size; memory still
grows with every version: Lance keys cache entries by dataset version (manifest, row-address
masks, index metadata) and never evicts them (lance-format/lance#1983; a fix is proposed
upstream). Searching one version again does not grow, and malloc_trim returns nothing.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from _results import bench_main, machine

OUT = Path(__file__).resolve().parent / "out" / "scale"
SETTINGS = {  # name: (index cache MB, metadata cache MB); None: LanceDB's defaults
    "default": None,
    "index 256 MB, metadata 64 MB": (256, 64),
    "index 64 MB, metadata 16 MB": (64, 16),
}
QUERIES = 100
COLUMNS = (
    "caches",
    "versions searched",
    "MB after the first",
    "MB after the last",
    "MB per further version",
    "growth vs default",
    "p50 ms (median over versions)",
    "p50 vs default",
)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _one_setting(uri: str, table_name: str, caches) -> dict:
    import lancedb

    from embeddings_platform.core.indexing import served_plan, tuned

    session = None
    if caches is not None:
        session = lancedb.Session(
            index_cache_size_bytes=caches[0] << 20, metadata_cache_size_bytes=caches[1] << 20
        )
    db = lancedb.connect(uri, session=session)
    table = db.open_table(table_name)
    versions = sorted(tag["version"] for tag in table.tags.list().values())
    sample = table.to_lance().take(list(range(0, 1_000_000, 10_000))[:QUERIES], ["vector"])
    queries = sample.column("vector").combine_chunks().flatten().to_numpy().reshape(QUERIES, -1)
    start_rss, rss, p50 = _rss_mb(), [], []
    for version in versions:
        pinned = db.open_table(table_name)
        pinned.checkout(version)
        plan = served_plan(pinned)
        ms = []
        for q in queries:
            began = time.perf_counter()
            query = pinned.search(q, vector_column_name="vector").metric("cosine").limit(10)
            tuned(query, plan, 10).select(["chunk_id"]).to_arrow()
            ms.append(1000 * (time.perf_counter() - began))
        rss.append(_rss_mb())
        p50.append(float(np.percentile(ms, 50)))
    return {"versions": versions, "start_rss_mb": start_rss, "rss_mb": rss, "p50_ms": p50}


def run(args) -> dict:
    import lancedb

    db = lancedb.connect(str(OUT))
    names = [n for n in db.list_tables().tables if n.startswith("vectors__")]
    if not names:
        sys.exit(f"no vectors table under {OUT}: run benchmarks/bench_scale.py first")
    out = {
        "command": ".venv/bin/python benchmarks/bench_version_memory.py",
        "machine": machine(),
        "load_average": os.getloadavg()[0],
        "table": names[0],
        "settings": {},
    }
    for name, caches in SETTINGS.items():
        with get_context("spawn").Pool(1) as pool:  # each setting from a clean process
            result = pool.apply(_one_setting, (str(OUT), names[0], caches))
        growth = np.diff(result["rss_mb"])
        result["growth_per_version_mb"] = float(np.mean(growth)) if len(growth) else 0.0
        out["settings"][name] = result
        print(
            f"{name}: {result['rss_mb'][0]:.0f} MB after the first version, "
            f"+{result['growth_per_version_mb']:.0f} MB per further version, "
            f"p50 {np.median(result['p50_ms']):.1f} ms",
            flush=True,
        )
    return out


def render(r: dict) -> str:
    base = r["settings"]["default"]
    rows = "\n".join(
        f"| {name} | {len(s['versions'])} | {s['rss_mb'][0]:.0f} | {s['rss_mb'][-1]:.0f} | "
        f"**{s['growth_per_version_mb']:.0f}** | "
        f"{s['growth_per_version_mb'] / max(base['growth_per_version_mb'], 1e-9):.2f} | "
        f"{np.median(s['p50_ms']):.1f} | {np.median(s['p50_ms']) / np.median(base['p50_ms']):.2f} |"
        for name, s in r["settings"].items()
    )
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: the table bench_scale.py
left (`{r["table"]}`), each version it pinned (serve tags), {QUERIES} stored vectors as queries
at the serving settings; one fresh process per cache setting. Baseline: LanceDB's default
caches, same run. Load average (1 min) at the start: {r["load_average"]:.1f}. Lance keys cache
entries by dataset version and never evicts them (lance-format/lance#1983): a long-lived
searcher (`api.Searcher`, a search service) grows with each version it serves, less with
smaller caches at the cost of latency; the pipeline's steps run in a process per run.

| {" | ".join(COLUMNS)} |
| --- |{" ---: |" * (len(COLUMNS) - 1)}
{rows}
"""


def main(argv=None) -> int:
    return bench_main(
        argv,
        __doc__,
        "version_memory",
        "Memory of a long-lived searcher across served versions (issue 18)",
        run,
        render,
    )


if __name__ == "__main__":
    sys.exit(main())
