"""Bad input, failing models, killed runs and concurrent writers: nothing lost,
nothing duplicated."""

from __future__ import annotations

import os
import re
import signal
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from embeddings_platform.core.checks import consistency
from embeddings_platform.core.config import RetryConfig, load_config
from embeddings_platform.core.documents import read_source
from embeddings_platform.core.models import HashingEmbedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.resilience import embed_isolating_failures
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store, chunks_table_name, vectors_table_name
from embeddings_platform.testing import (
    DOCS,
    bad_corpus,
    many_docs,
    start_refresh_process,
    write_config,
)

FAST = RetryConfig(
    attempts=4, initial_seconds=0.01, max_seconds=0.05, budget_seconds=5, bisect_attempts=2
)


def test_every_kind_of_bad_document_is_quarantined_with_its_reason_and_the_good_ones_go_through(
    tmp_path, embedder
):
    expected = bad_corpus(tmp_path / "corpus", tmp_path / "secret.txt")
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            [{"name": "dirty", "kind": "folder", "path": str(tmp_path / "corpus")}],
        )
    )
    store = Store(config.storage_uri)
    report = refresh(
        store, config.sources[0], config.models[0], config.serving, lambda: embedder, "r1"
    )
    reasons = {r.doc_id: r.reason for r in report.snapshot.quarantined}
    assert set(reasons) == set(expected)
    for doc_id, reason in expected.items():
        assert reasons[doc_id].startswith(reason), (doc_id, reasons[doc_id])
    rows = store.table("quarantine").to_arrow().to_pylist()
    assert {r["doc_id"] for r in rows} == set(expected)
    assert all(
        r["snapshot_id"] == report.snapshot.snapshot_id and r["source"] == "dirty" for r in rows
    )
    good = set(DOCS) | {"prose.html"}
    version = model_version(config.models[0]).version_id
    vectors = store.table(vectors_table_name("dirty", version)).to_arrow()
    assert set(vectors.column("doc_id").to_pylist()) == good
    docs, _ = read_source(config.sources[0])
    prose = next(d for d in docs if d.doc_id == "prose.html").text
    assert "if a < b && c > d then AT&T wins &unknown; cases" in prose


def test_a_flaky_model_is_retried_with_growing_jittered_backoff(embedder):
    failures = iter(
        [RuntimeError("503"), TimeoutError("slow"), RuntimeError("503"), RuntimeError("503"), None]
    )
    sleeps: list[float] = []

    def flaky(texts):
        error = next(failures)
        if error:
            raise error
        return embedder.embed(texts)

    retry = RetryConfig(
        attempts=5, initial_seconds=1.0, max_seconds=6.0, budget_seconds=60, bisect_attempts=2
    )
    outcome = embed_isolating_failures(flaky, ["a b", "c d", "e f"], retry, sleep=sleeps.append)
    assert sorted(outcome.indices) == [0, 1, 2] and not outcome.failures
    assert outcome.retries == 4 and len(sleeps) == 4
    # wait n: initial x 2^n plus up to 1 s of jitter (tenacity's), never more than max_seconds
    for n, wait in enumerate(sleeps[:3]):
        assert 2**n <= wait <= 2**n + 1, (n, sleeps)
    assert sleeps[3] == 6.0  # 8 s and jitter, capped
    assert sleeps[0] < sleeps[1] < sleeps[2] < sleeps[3]
    assert np.allclose(outcome.matrix(), embedder.embed(["a b", "c d", "e f"]))


def test_a_batch_that_keeps_failing_is_bisected_to_the_item_at_fault(embedder):
    calls: list[int] = []

    def poisoned(texts):
        calls.append(len(texts))
        if any("POISON" in t for t in texts):
            raise ValueError("cannot embed this input")
        vectors = embedder.embed(texts)
        if any("nan" in t for t in texts):
            vectors[[i for i, t in enumerate(texts) if "nan" in t]] = np.nan
        return vectors

    texts = [f"text {i}" for i in range(16)]
    texts[5] = "POISON pill"
    texts[11] = "a nan vector"
    outcome = embed_isolating_failures(poisoned, texts, FAST, sleep=lambda s: None)
    assert set(outcome.failures) == {5, 11}
    assert "cannot embed this input" in outcome.failures[5] and "NaN" in outcome.failures[11]
    assert sorted(outcome.indices) == [i for i in range(16) if i not in (5, 11)]
    kept = dict(zip(outcome.indices, outcome.matrix()))
    assert np.allclose(kept[0], embedder.embed(["text 0"])[0])
    assert len(calls) < 60  # bisection, not one call per item per retry


class PoisonEmbedder(HashingEmbedder):
    def embed(self, texts):
        if any("garbage collection" in t for t in texts):
            raise RuntimeError("model crashed on this input")
        return super().embed(texts)


def test_a_chunk_the_model_keeps_failing_on_is_dead_lettered_and_the_rest_is_written(
    tmp_path, config_path
):
    config = load_config(config_path)
    config = type(config)(**{**config.__dict__, "retry": FAST})
    store = Store(config.storage_uri)
    model = config.models[0]
    report = refresh(
        store,
        config.sources[0],
        model,
        config.serving,
        lambda: PoisonEmbedder(256),
        "r1",
        retry=config.retry,
    )
    version = model_version(model).version_id
    table = store.table(vectors_table_name("notes", version))
    chunks = (
        store.table(chunks_table_name("notes", model_version(model).chunking_strategy))
        .to_arrow()
        .to_pylist()
    )
    poisoned = {c["chunk_id"] for c in chunks if "garbage collection" in c["text"]}
    assert (
        set(table.to_arrow().column("chunk_id").to_pylist())
        == {c["chunk_id"] for c in chunks} - poisoned
    )
    dead = [
        r
        for r in store.table("quarantine").to_arrow().to_pylist()
        if r["reason"].startswith("embedding failed")
    ]
    assert report.embeddings.dead_lettered == len(dead) == len(poisoned) >= 2
    assert {r["doc_id"] for r in dead} == {
        "rust.rst",
        "python.md",
    }  # both mention garbage collection
    assert all(
        "model crashed on this input" in r["reason"] and version in r["reason"] for r in dead
    )
    # the index still serves the rest; consistency accounts for the dead letters instead of failing
    assert report.index.pointer_moved
    check = consistency(store, "notes", version)
    assert check.ok and check.dead_lettered == len(poisoned)
    # the next run (model fixed) embeds exactly the dead-lettered chunks
    fixed = HashingEmbedder(256)
    again = refresh(store, config.sources[0], model, config.serving, lambda: fixed, "r2")
    assert again.embeddings.embedded == fixed.texts_embedded == len(dead)
    table.checkout_latest()
    assert set(table.to_arrow().column("doc_id").to_pylist()) == set(DOCS)


# --- killed runs and concurrent writers: real processes -------------------------------------


def _config(tmp_path: Path, name: str, folder: Path, batch_size: int = 2) -> Path:
    model = {
        "name": "hash",
        "kind": "hashing",
        "dimension": 256,
        "max_seq_length": 16,
        "batch_size": batch_size,
        "chunking": {"max_tokens": 12, "overlap": 3},
    }
    (tmp_path / name).mkdir(exist_ok=True)
    return write_config(
        tmp_path / name / "c.yaml",
        [{"name": "bulk", "kind": "folder", "path": str(folder)}],
        [model],
    )


def _vector_rows(config_path: Path) -> list[dict]:
    config = load_config(config_path)
    store = Store(config.storage_uri)
    name = vectors_table_name("bulk", model_version(config.models[0]).version_id)
    return (
        store.table(name).to_arrow().select(["chunk_id", "doc_id", "vector", "run_id"]).to_pylist()
    )


def test_a_run_killed_mid_embedding_resumes_to_exactly_the_clean_result(tmp_path):
    folder = tmp_path / "corpus"
    many_docs(folder, 60)
    clean_cfg, killed_cfg = _config(tmp_path, "clean", folder), _config(tmp_path, "killed", folder)
    clean = start_refresh_process(clean_cfg, 0.0, "clean")
    assert clean.wait(timeout=180) == 0, clean.stderr.read()
    expected = {r["chunk_id"]: r["vector"] for r in _vector_rows(clean_cfg)}

    victim = start_refresh_process(killed_cfg, 0.15, "dead")  # 16 chunks, 0.15 s per batch
    store = Store(load_config(killed_cfg).storage_uri)
    name = vectors_table_name("bulk", model_version(load_config(killed_cfg).models[0]).version_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once some batches are committed, long before the end
        if store.has_table(name) and 0 < store.table(name).count_rows() < len(expected) // 2:
            break
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    survived = {r["chunk_id"] for r in _vector_rows(killed_cfg)}
    assert 0 < len(survived) < len(expected)

    resumed = start_refresh_process(killed_cfg, 0.0, "resume")
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read()
    rows = _vector_rows(killed_cfg)
    ids = [r["chunk_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected)  # none missing, none duplicated
    assert set(ids) == set(expected)
    assert all(np.allclose(r["vector"], expected[r["chunk_id"]]) for r in rows)
    # what the dead run committed was kept, not re-embedded
    assert {r["chunk_id"] for r in rows if r["run_id"] == "dead"} == survived
    assert {r["chunk_id"] for r in rows if r["run_id"] == "resume"} == set(expected) - survived


def _refresh_same_partition(config_path: str, run_id: str) -> int:
    config = load_config(config_path)
    report = refresh(
        Store(config.storage_uri),
        config.sources[0],
        config.models[0],
        config.serving,
        lambda: HashingEmbedder(256),
        run_id,
    )
    return report.embeddings.total_vectors


def test_two_processes_refreshing_the_same_partition_at_once_both_succeed_without_duplicates(
    tmp_path,
):
    folder = tmp_path / "corpus"
    many_docs(folder, 80)
    config_path = _config(tmp_path, "shared", folder, batch_size=1)
    with get_context("spawn").Pool(2) as pool:
        totals = pool.starmap(
            _refresh_same_partition, [(str(config_path), "a"), (str(config_path), "b")]
        )
    rows = _vector_rows(config_path)
    ids = [r["chunk_id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(totals) == {len(ids)}
    config = load_config(config_path)
    hits = search(
        Store(config.storage_uri),
        "bulk",
        "document 5 topic 5",
        3,
        lambda q: HashingEmbedder(256).embed([q])[0],
    )
    assert hits and len({h.chunk_id for h in hits}) == len(hits)


def test_query_text_never_changes_a_filters_meaning(tmp_path, config_path, embedder):
    """Lineage lookups and searches take user text; it is data, never filter syntax."""
    from embeddings_platform.core.serving import lineage

    config = load_config(config_path)
    store = Store(config.storage_uri)
    refresh(store, config.sources[0], config.models[0], config.serving, lambda: embedder, "r1")

    def fts(text: str) -> list[tuple[str, str, float]]:
        hits = search(store, "notes", text, 3, None, mode="fts")
        return [(h.doc_id, h.chunk_id, h.score) for h in hits]

    # each query finds what its words alone find: quotes, OR and = are no syntax
    expected = {
        "' OR '1'='1": [],
        "cats.md' OR doc_id != '": ["cats.md"],
        'x") OR (1=1': [],
        "%": [],
        "*": [],
        '"green tea"': ["tea.html"],
        '"purrs': ["cats.md"],
    }
    for hostile, docs in expected.items():
        assert lineage(store, config, hostile) == []
        hits = fts(hostile)
        assert [doc for doc, _, _ in hits] == docs
        assert hits == fts(" ".join(re.findall(r"\w+", hostile)))
    assert {r["doc_id"] for r in lineage(store, config, "cats.md")} == {"cats.md"}


def test_the_ui_shows_quarantined_documents_as_a_warning_check_with_counts_per_reason(tmp_path):
    from dagster import AssetCheckSeverity, DagsterInstance

    from embeddings_platform.defs.resources import PlatformResource
    from embeddings_platform.defs.runner import materialize_graph

    expected = bad_corpus(tmp_path / "corpus", tmp_path / "secret.txt")
    path = write_config(
        tmp_path / "c.yaml", [{"name": "dirty", "kind": "folder", "path": str(tmp_path / "corpus")}]
    )
    results = materialize_graph(
        DagsterInstance.ephemeral(),
        load_config(path),
        resources={"platform": PlatformResource(config_path=str(path))},
    )
    evaluations = [
        e for r in results for e in r.get_asset_check_evaluations() if e.check_name == "quarantine"
    ]
    assert len(evaluations) == 1 and evaluations[0].partition == "dirty"
    check = evaluations[0]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["quarantined"].value == len(expected)
    assert (
        check.metadata["reason_undecodable"].value == 3
        and check.metadata["reason_lossy_text"].value == 2
    )
    snapshot = next(
        m for r in results for m in r.asset_materializations_for_node("source_snapshot")
    )
    assert snapshot.metadata["quarantined"].value == len(expected)
    assert all(
        r.success for r in results
    )  # the good documents went all the way to the serving index
