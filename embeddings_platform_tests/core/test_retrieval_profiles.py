"""Retrieval profiles: hybrid search by default, a profile change migrates like a model."""

from __future__ import annotations

import json
import threading

import pytest

from embeddings_platform import cli
from embeddings_platform.core.config import load_config
from embeddings_platform.core.evaluation import labelled_queries
from embeddings_platform.core.migration import MigrationError, rollback, swap
from embeddings_platform.core.migration_gate import evaluate_gate, query_embedders
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.retrieval import RetrievalProfile, _fuse
from embeddings_platform.core.serving import embedder_query_function, search
from embeddings_platform.core.store import Store
from embeddings_platform.defs.resources import cached_embedder
from embeddings_platform.testing import DOCS, write_config

from .test_migration import CANARY


def _build(tmp_path, corpus, canary: bool = True, build: bool = True, **extra):
    sources = [{"name": "notes", "kind": "folder", "path": str(corpus)}]
    if canary:
        (tmp_path / "canary.jsonl").write_text("\n".join(json.dumps(q) for q in CANARY))
        sources[0]["canary"] = str(tmp_path / "canary.jsonl")
    path = write_config(tmp_path / "platform.yaml", sources, migration={"min_queries": 3}, **extra)
    config = load_config(path)
    if build:
        model = config.models[0]
        refresh(
            Store(config.storage_uri),
            config.source("notes"),
            model,
            config.serving,
            lambda: cached_embedder(model),
            "build",
        )
    return config, path


def _search(config, query, mode=None, k=5):
    store = Store(config.storage_uri)
    return search(
        store,
        "notes",
        query,
        k,
        embedder_query_function(config, store, cached_embedder, query),
        mode,
    )


def test_reciprocal_rank_fusion_adds_ranks_of_both_lists_and_breaks_ties_by_id():
    vector = [{"doc_id": "a"}, {"doc_id": "b"}, {"doc_id": "c"}]
    text = [{"doc_id": "c"}, {"doc_id": "d"}]
    fused = _fuse(vector, text, rrf_k=60)
    scores = {h.doc_id: h.score for h in fused}
    assert scores == pytest.approx({"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [h.doc_id for h in fused] == ["c", "a", "b", "d"]  # b and d tie: by doc id
    assert (fused[0].vector_rank, fused[0].text_rank) == (3, 1)


def test_search_is_hybrid_by_default_one_hit_per_document_with_its_profile(tmp_path, corpus):
    config, _ = _build(tmp_path, corpus)
    hits = _search(config, "garbage collection language")
    assert len({h.doc_id for h in hits}) == len(hits) == len(DOCS)  # documents, not chunks
    assert {h.doc_id for h in hits[:2]} == {"rust.rst", "python.md"}
    assert {h.lineage["retrieval_profile"] for h in hits} == {"hybrid-rrf60-d100"}
    assert Store(config.storage_uri).pointer("notes")["profile"] == RetrievalProfile().to_json()
    # a full-text-only query word still finds its document in fts and hybrid modes
    assert _search(config, "purrs", "fts")[0].doc_id == "cats.md"
    assert _search(config, "purrs")[0].doc_id == "cats.md"
    assert [h.lineage["retrieval_profile"] for h in _search(config, "purrs", "vector")][:1] == [
        "vector"
    ]


def test_a_new_source_starts_with_the_registry_profile(tmp_path, corpus):
    config, _ = _build(tmp_path, corpus, serving={"retrieval": {"mode": "fts"}})
    assert (
        RetrievalProfile.from_json(Store(config.storage_uri).pointer("notes")["profile"]).mode
        == "fts"
    )
    assert {h.lineage["retrieval_profile"] for h in _search(config, "dog barks")} == {"fts"}


def test_a_profile_migration_swaps_under_readers_and_rolls_back(tmp_path, corpus):
    config, _ = _build(tmp_path, corpus)
    store = Store(config.storage_uri)
    version = store.pointer("notes")["model_version"]
    answers = {
        "hybrid-rrf60-d100": [h.doc_id for h in _search(config, "dog barks fetches", "hybrid")],
        "vector": [h.doc_id for h in _search(config, "dog barks fetches", "vector")],
    }
    errors, seen = [], set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                hits = _search(config, "dog barks fetches")
                profiles = {h.lineage["retrieval_profile"] for h in hits}
                assert len(profiles) == 1, profiles  # never a mix of two profiles
                profile = profiles.pop()
                assert [h.doc_id for h in hits] == answers[profile]
                seen.add(profile)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    embed_for = query_embedders(store, config, cached_embedder)
    gate = evaluate_gate(
        store,
        "notes",
        version,
        labelled_queries(config.source("notes")),
        embed_for,
        config.migration,
        RetrievalProfile(mode="vector"),
    )
    assert gate.evaluable and gate.passed and gate.candidate_profile == "vector"
    assert gate.serving_profile == "hybrid-rrf60-d100"
    swap(store, gate, run_id="to-vector")
    for _ in range(3):
        rollback(store, "notes", "back", config.serving.retention_hours)
    stop.set()
    reader.join()
    assert not errors and seen == set(answers)
    pointer = store.pointer("notes")  # rollbacks alternate: hybrid, vector, hybrid
    assert RetrievalProfile.from_json(pointer["profile"]).mode == "hybrid"
    assert pointer["model_version"] == version
    reasons = [e["reason"] for e in store.pointer_history("notes")]
    assert reasons[-3].startswith("rollback: undoes the move to ") and "(migration)" in reasons[-3]


def test_the_gate_is_not_evaluable_without_labels_and_migrate_refuses_it(tmp_path, corpus, capsys):
    config, path = _build(tmp_path, corpus, canary=False)
    store = Store(config.storage_uri)
    gate = evaluate_gate(
        store,
        "notes",
        store.pointer("notes")["model_version"],
        [],
        query_embedders(store, config, cached_embedder),
        config.migration,
        RetrievalProfile(mode="vector"),
    )
    assert not gate.evaluable and not gate.passed
    assert gate.reasons[0].startswith(
        "not evaluable: 0 labelled queries (< migration.min_queries 3)"
    )
    with pytest.raises(MigrationError, match="not evaluable"):
        swap(store, gate, run_id="x")
    assert (
        cli.main(["--config", str(path), "migrate", "--source", "notes", "--mode", "vector"]) == 1
    )
    assert "not swapped: gate failed for" in capsys.readouterr().err
    assert RetrievalProfile.from_json(store.pointer("notes")["profile"]).mode == "hybrid"
    assert (
        cli.main(
            ["--config", str(path), "migrate", "--source", "notes", "--mode", "vector", "--force"]
        )
        == 0
    )
    assert RetrievalProfile.from_json(store.pointer("notes")["profile"]).mode == "vector"


def test_the_gate_cannot_pass_while_nothing_serves(tmp_path, corpus):
    config, _ = _build(tmp_path, corpus, build=False)
    store = Store(config.storage_uri)
    model = config.models[0]
    refresh(
        store,
        config.source("notes"),
        model,
        config.serving,
        lambda: cached_embedder(model),
        "shadow",
        is_default_model=False,
    )  # indexed, but nothing serves
    assert store.pointer("notes") is None
    from embeddings_platform.core.models import model_version

    gate = evaluate_gate(
        store,
        "notes",
        model_version(model).version_id,
        labelled_queries(config.source("notes")),
        query_embedders(store, config, cached_embedder),
        config.migration,
    )
    assert gate.evaluable and not gate.passed and gate.candidate_recall > 0
    assert gate.reasons == [
        "nothing serves this source yet, so there is nothing to compare with; "
        "materialize serving_index of its default model first"
    ]


def test_evaluate_scores_a_beir_set_and_writes_a_trec_run(tmp_path, corpus, capsys):
    config, path = _build(tmp_path, corpus)
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(json.dumps({"_id": f"q{i}", "text": q["query"]}) for i, q in enumerate(CANARY))
        + '\n{"_id": "unjudged", "text": "nothing"}\n'
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"q{i}\t{q['relevant'][0]}\t1\n" for i, q in enumerate(CANARY))
    )
    run = tmp_path / "out.trec"
    argv = [
        "--config",
        str(path),
        "evaluate",
        "--source",
        "notes",
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "-k",
        "1",
        "--run",
        str(run),
    ]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["queries"], result["k"], result["profile"], result["serving"]) == (
        5,
        1,
        "hybrid-rrf60-d100",
        True,
    )
    assert result["recall"] == result["ndcg"] == 1.0  # each canary query's document ranks first
    lines = [line.split() for line in run.read_text().splitlines()]
    assert len(lines) == 5 * len(DOCS) and {line[0] for line in lines} == {
        f"q{i}" for i in range(5)
    }
    first = [line for line in lines if line[0] == "q0"]
    assert [line[3] for line in first] == [str(r) for r in range(1, len(DOCS) + 1)]
    assert (
        first[0][1:3] == ["Q0", "cats.md"]
        and first[0][5] == "embeddings_platform-hybrid-rrf60-d100"
    )
    scores = [float(line[4]) for line in first]
    assert scores == sorted(scores, reverse=True)
    qrels.write_text("q0\tcats.md\n")  # malformed: one line, no traceback, exit 2
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: evaluate: {qrels}:1: expected 'query-id")


def test_promote_auto_swaps_a_passing_shadow_from_its_gate_check(tmp_path, corpus):
    from dagster import DagsterInstance

    from embeddings_platform.core.models import model_version
    from embeddings_platform.defs.resources import PlatformResource
    from embeddings_platform.defs.runner import materialize_graph

    from .test_migration import _model

    (tmp_path / "canary.jsonl").write_text("\n".join(json.dumps(q) for q in CANARY))
    sources = [
        {
            "name": "notes",
            "kind": "folder",
            "path": str(corpus),
            "canary": str(tmp_path / "canary.jsonl"),
        }
    ]
    for promote, serves in (("manual", "old"), ("auto", "new")):
        home = tmp_path / promote
        home.mkdir()
        path = write_config(
            home / "platform.yaml",
            sources,
            [_model("old", 256), _model("new", 128)],
            migration={
                "max_recall_drop": 0.5,
                "max_ndcg_drop": 0.5,
                "min_queries": 3,
                "promote": promote,
            },
        )
        config = load_config(path)
        materialize_graph(
            DagsterInstance.ephemeral(),
            config,
            resources={"platform": PlatformResource(config_path=str(path))},
        )
        pointer = Store(config.storage_uri).pointer("notes")
        assert pointer["model_version"] == model_version(config.model(serves)).version_id, promote
        if promote == "auto":
            assert pointer["reason"] == "migration"


def test_the_chunk_shown_for_a_hit_is_read_from_the_pinned_version(tmp_path):
    """Ranking reads ids and scores of every candidate and the text of the returned hits only,
    by row id: from the version the pointer pins, never from a newer one."""
    import lancedb
    import numpy as np
    import pyarrow as pa

    from embeddings_platform.core.retrieval import rank_documents

    def rows(texts):
        vectors = np.eye(4, dtype=np.float32)[: len(texts)]
        return pa.table(
            {
                "chunk_id": [f"c{i}" for i in range(len(texts))],
                "doc_id": [f"d{i}" for i in range(len(texts))],
                "text": texts,
                "model_version": ["m-1"] * len(texts),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4),
            }
        )

    table = lancedb.connect(str(tmp_path)).create_table("v", rows(["alpha", "beta", "gamma"]))
    pinned = table.version
    table.merge_insert("chunk_id").when_matched_update_all().execute(rows(["ALPHA", "BETA"]))
    table.delete("chunk_id = 'c2'")
    table.checkout(pinned)
    for mode in ("vector", "hybrid"):
        [hits] = rank_documents(
            table,
            ["alpha"],
            [np.eye(4, dtype=np.float32)[2]],
            RetrievalProfile(mode=mode),
            3,
            columns=["text", "model_version"],
            constant=["model_version"],  # one value per version: read once, from one row
        )
        assert {h.row["model_version"] for h in hits} == {"m-1"}
        shown = {h.doc_id: h.row["text"] for h in hits}
        assert shown == {"d0": "alpha", "d1": "beta", "d2": "gamma"}, mode
        if mode == "vector":  # nearest to the query vector, and deleted only later
            assert hits[0].doc_id == "d2"
