"""Bad input, killed runs and concurrent writers: rows lost or duplicated (must be 0 everywhere).

    .venv/bin/python benchmarks/bench_robustness.py      # about 2 minutes on 2 cores

Real processes, the deterministic hashing embedder (what is measured is bookkeeping, not the model):
1. every kind of bad document next to good ones (embeddings_platform.testing.bad_corpus, which
   the test suite uses too): each quarantined with its reason, every good document embedded;
2. a refresh killed with SIGKILL at random points mid-embedding, then resumed, N times: the
   result is compared with a clean run, chunk by chunk and vector by vector;
3. W processes writing one LanceDB table at once (W shard partitions, then W runs of the same
   partition): every row present once;
4. the edges of "never serve what was deleted" (benchmarks/_serving_edges.py): an emptied
   source, empty shards, rollbacks after a refresh, an entry edited in place, a dropped table,
   parser bombs: documents lost, duplicated and deleted-but-served.
The baseline of each figure is the clean single-process run of the same corpus in the same run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import OUT, ROOT, bench_main, machine, timed  # noqa: E402
from _serving_edges import run_edges  # noqa: E402

sys.path.insert(0, str(ROOT))

from embeddings_platform.core.config import load_config  # noqa: E402
from embeddings_platform.core.models import HashingEmbedder, model_version  # noqa: E402
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.store import Store, vectors_table_name  # noqa: E402
from embeddings_platform.testing import (  # noqa: E402
    bad_corpus,
    many_docs,
    start_refresh_process,
    write_config,
)

WORK = OUT / "robustness"
MODEL = {
    "name": "hash",
    "kind": "hashing",
    "dimension": 256,
    "max_seq_length": 16,
    "batch_size": 4,
    "chunking": {"max_tokens": 12, "overlap": 3},
}


def _config(folder: Path, name: str, shards: int | None = None) -> Path:
    source = {"name": "bulk", "kind": "folder", "path": str(folder)}
    if shards:
        source["shards"] = shards
    (WORK / name).mkdir(parents=True, exist_ok=True)
    return write_config(WORK / name / "c.yaml", [source], [MODEL])


def _rows(config_path: Path) -> list[dict]:
    config = load_config(config_path)
    name = vectors_table_name("bulk", model_version(config.models[0]).version_id)
    return (
        Store(config.storage_uri).table(name).to_arrow().select(["chunk_id", "vector"]).to_pylist()
    )


def _compare(rows: list[dict], clean: dict[str, list[float]]) -> dict:
    ids = [r["chunk_id"] for r in rows]
    return {
        "rows": len(ids),
        "lost": len(set(clean) - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
        "foreign": len(set(ids) - set(clean)),
        "wrong_vectors": sum(
            1 for r in rows if r["chunk_id"] in clean and r["vector"] != clean[r["chunk_id"]]
        ),
    }


def bad_input() -> dict:
    folder = WORK / "dirty"
    expected = bad_corpus(folder, WORK / "outside.txt")
    path = write_config(
        WORK / "dirty.yaml", [{"name": "dirty", "kind": "folder", "path": str(folder)}], [MODEL]
    )
    config = load_config(path)
    store = Store(config.storage_uri)
    report = refresh(
        store,
        config.sources[0],
        config.models[0],
        config.serving,
        lambda: HashingEmbedder(256),
        "b",
    )
    reasons = {r.doc_id: r.reason for r in report.snapshot.quarantined}
    good = {p.name for p in folder.iterdir()} - set(expected)
    embedded = set(
        store.table(vectors_table_name("dirty", model_version(config.models[0]).version_id))
        .to_arrow()
        .column("doc_id")
        .to_pylist()
    )
    return {
        "kinds": len(expected),
        "quarantined_as_expected": sum(
            reasons.get(d, "").startswith(r) for d, r in expected.items()
        ),
        "good_documents": len(good),
        "good_embedded": len(good & embedded),
        "lost": len(good - embedded),
        "wrongly_embedded": len(embedded - good),
    }


def kill_and_resume(folder: Path, clean: dict, runs: int, seed: int) -> dict:
    rng = random.Random(seed)
    totals = {
        "runs": runs,
        "killed_after_rows": [],
        "lost": 0,
        "duplicated": 0,
        "foreign": 0,
        "wrong_vectors": 0,
        "reembedded_after_resume": 0,
    }
    for i in range(runs):
        path = _config(folder, f"killed-{i}")
        config = load_config(path)
        store = Store(config.storage_uri)
        name = vectors_table_name("bulk", model_version(config.models[0]).version_id)
        # spread over the whole run: the i-th kill lands somewhere in the i-th tenth of it
        target = max(1, int((i + rng.random()) / runs * (len(clean) - 1)))
        victim = start_refresh_process(path, 0.2, "dead")  # 0.2 s per 32: kills land anywhere
        while victim.poll() is None:
            if store.has_table(name) and store.table(name).count_rows() >= target:
                break
            time.sleep(0.005)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        survived = {r["chunk_id"] for r in _rows(path)} if store.has_table(name) else set()
        totals["killed_after_rows"].append(len(survived))
        resumed = start_refresh_process(path, 0.0, "resume")
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
        result = _compare(_rows(path), clean)
        for key in ("lost", "duplicated", "foreign", "wrong_vectors"):
            totals[key] += result[key]
        rows = (
            Store(config.storage_uri)
            .table(name)
            .to_arrow()
            .select(["chunk_id", "run_id"])
            .to_pylist()
        )
        totals["reembedded_after_resume"] += sum(
            1 for r in rows if r["run_id"] == "resume" and r["chunk_id"] in survived
        )
    return totals


def _refresh(config_path: str, key: str, run_id: str) -> None:
    config = load_config(config_path)
    refresh(
        Store(config.storage_uri),
        config.source(key),
        config.models[0],
        config.serving,
        lambda: HashingEmbedder(256),
        run_id,
    )


def concurrent(folder: Path, clean: dict, writers: int) -> dict:
    shards = _config(folder, "shards", shards=writers)
    keys = load_config(shards).sources[0].partition_keys
    with get_context("spawn").Pool(writers) as pool:
        _, shard_seconds = timed(
            pool.starmap, _refresh, [(str(shards), k, f"w{i}") for i, k in enumerate(keys)]
        )
    same = _config(folder, "same")
    with get_context("spawn").Pool(writers) as pool:
        _, same_seconds = timed(
            pool.starmap, _refresh, [(str(same), "bulk", f"w{i}") for i in range(writers)]
        )
    return {
        "writers": writers,
        "shards": {**_compare(_rows(shards), clean), "seconds": shard_seconds},
        "same_partition": {**_compare(_rows(same), clean), "seconds": same_seconds},
    }


def run(documents: int, kills: int, writers: int) -> dict:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    folder = WORK / "corpus"
    many_docs(folder, documents)
    clean_path = _config(folder, "clean")
    _, clean_seconds = timed(_refresh, str(clean_path), "bulk", "clean")
    clean = {r["chunk_id"]: r["vector"] for r in _rows(clean_path)}
    return {
        "command": ".venv/bin/python benchmarks/bench_robustness.py  (also in: make bench)",
        "machine": machine(),
        "documents": documents,
        "chunks": len(clean),
        "clean_seconds": clean_seconds,
        "bad_input": bad_input(),
        "kill": kill_and_resume(folder, clean, kills, seed=11),
        "concurrent": concurrent(folder, clean, writers),
        "edges": run_edges(WORK / "edges"),
    }


def render(r: dict) -> str:
    b, k, c = r["bad_input"], r["kill"], r["concurrent"]
    zero = lambda *values: "0 ✓" if not any(values) else f"{sum(values)} ✗"  # noqa: E731
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: generated folder corpus \
of {r["documents"]}
documents ({r["chunks"]} chunks) and the tests' bad-input corpus; hashing embedder; real
processes. Baseline: a clean single-process run of the same corpus in the same run \
({r["clean_seconds"]:.1f} s).

| scenario | tried | rows lost | rows duplicated | other |
| --- | ---: | ---: | ---: | --- |
| bad input: {b["kinds"]} kinds of bad document next to {b["good_documents"]} good ones | \
{b["kinds"]} kinds | {zero(b["lost"])} | 0 ✓ | {b["quarantined_as_expected"]}/{b["kinds"]} \
quarantined with the expected reason; {b["good_embedded"]}/{b["good_documents"]} good documents \
embedded; {b["wrongly_embedded"]} bad ones embedded |
| refresh killed with SIGKILL at a random point mid-embedding, then resumed | {k["runs"]} runs \
(killed after {min(k["killed_after_rows"])}–{max(k["killed_after_rows"])} of {r["chunks"]} rows) | \
{zero(k["lost"])} | {zero(k["duplicated"])} | vectors differing from the clean run: \
{k["wrong_vectors"]}; rows of the dead run re-embedded: {k["reembedded_after_resume"]}; foreign \
rows: {k["foreign"]} |
| {c["writers"]} shard partitions written by {c["writers"]} processes into one table at once | \
{c["writers"]} writers | {zero(c["shards"]["lost"])} | {zero(c["shards"]["duplicated"])} | vectors \
differing from the clean run: {c["shards"]["wrong_vectors"]}; {c["shards"]["seconds"]:.1f} s |
| the same partition refreshed by {c["writers"]} processes at once | {c["writers"]} writers | \
{zero(c["same_partition"]["lost"])} | {zero(c["same_partition"]["duplicated"])} | vectors \
differing from the clean run: {c["same_partition"]["wrong_vectors"]}; \
{c["same_partition"]["seconds"]:.1f} s |

| never serve what was deleted | documents lost | documents duplicated | deleted but served |
| --- | ---: | ---: | ---: |
""" + "".join(
        f"| {name} | {zero(e['lost'])} | {zero(e['duplicated'])} | "
        f"{zero(e['deleted_but_served'])} |\n"
        for name, e in r["edges"].items()
    )


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--documents", type=int, default=400)
        parser.add_argument("--kills", type=int, default=10)
        parser.add_argument("--writers", type=int, default=4)

    return bench_main(
        argv,
        __doc__,
        "robustness",
        "Robustness: bad input, killed runs, concurrent writers (issue 6)",
        lambda args: run(args.documents, args.kills, args.writers),
        render,
        arguments,
    )


if __name__ == "__main__":
    raise SystemExit(main())
