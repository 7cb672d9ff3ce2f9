"""core/checks.py: each check passes on a healthy index and fails, with the right severity,
on an index broken in exactly the way it looks for."""

import json
import math
import re
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from lancedb.expr import col, lit

from embeddings_platform.core import checks
from embeddings_platform.core.config import (
    ChecksConfig,
    ConfigError,
    ServingConfig,
    load_config,
)
from embeddings_platform.core.evaluation import LabelledQuery, labelled_queries
from embeddings_platform.core.models import (
    load_tokenizer,
    model_dimension,
    model_version,
)
from embeddings_platform.core.pipeline import (
    build_serving_index,
    refresh,
    sync_chunks,
    take_snapshot,
)
from embeddings_platform.core.serving import open_served_table, search
from embeddings_platform.core.store import (
    CHUNKS,
    Store,
    chunks_table_name,
    vectors_schema,
    vectors_table_name,
)
from embeddings_platform.testing import write_config

CANARY = [
    {"query": "cat purrs and hunts mice", "relevant": ["cats.md"]},
    {"query": "dog barks and fetches sticks", "relevant": ["dogs.txt"]},
    {"query": "memory safety without garbage collection", "relevant": ["rust.rst"]},
    {"query": "green tea leaves brewed", "relevant": ["tea.html"]},
    {"query": "dynamic typing programming language", "relevant": ["python.md"]},
]


def canary_config(tmp_path, corpus, **checks_section):
    canary = tmp_path / "canary.jsonl"
    canary.write_text("\n".join(json.dumps(c) for c in CANARY) + "\n")
    # vector retrieval: these checks are about the vectors' quality (full text would mask it)
    extra = {"serving": {"retrieval": {"mode": "vector"}}} | (
        {"checks": checks_section} if checks_section else {}
    )
    path = write_config(
        tmp_path / "checked.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
        **extra,
    )
    return load_config(path)


@pytest.fixture
def cell(tmp_path, corpus, embedder):
    """A healthy, served (source, model version) cell built by the pipeline."""
    config = canary_config(tmp_path, corpus, retrieval={"k": 1})
    store = Store(config.storage_uri)
    report = refresh(
        store, config.sources[0], config.models[0], config.serving, lambda: embedder, "run-1"
    )
    return store, config, report.embeddings.model_version


def _vectors(store, version_id):
    return store.db.open_table(vectors_table_name("notes", version_id))


def _set_vector(store, version_id, chunk_id, vector):
    table = _vectors(store, version_id)
    row = Store.read(table, where=col("chunk_id") == lit(chunk_id)).to_pylist()[0]
    row["vector"] = list(vector)
    # lancedb refuses NaN on write; pylance (another writer, an old client) does not
    data = pa.Table.from_pylist([row], schema=table.schema)
    table.to_lance().merge_insert("chunk_id").when_matched_update_all().execute(data)


def _first_chunk(store, version_id, doc_id="cats.md"):
    rows = Store.read(_vectors(store, version_id), ["chunk_id", "doc_id"]).to_pylist()
    return next(r["chunk_id"] for r in rows if r["doc_id"] == doc_id)


def _serve_latest(store, config, version_id):
    """Move the pointer to the current table version, as a refresh would."""
    return build_serving_index(store, "notes", version_id, config.serving, "run-x", True)


def _assert_numeric(metadata):
    assert metadata and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metadata.values()
    )


# --- consistency -------------------------------------------------------------------------


def test_consistency_passes_on_a_healthy_index(cell):
    store, config, version_id = cell
    report = checks.consistency(store, "notes", version_id, 256)
    assert report.ok and report.severity == checks.OK and report.problems == []
    assert report.vectors == report.chunks > 0
    assert (report.model_versions, report.dimension, report.expected_dimension) == (1, 256, 256)
    assert report.nan_or_inf == report.zero_norm == report.duplicate_ids == report.foreign_rows == 0
    assert report.serving and report.pointer_target_exists
    _assert_numeric(report.metadata())


def test_foreign_model_version_row_fails_consistency(cell):
    store, _, version_id = cell
    table = _vectors(store, version_id)
    row = Store.read(table).to_pylist()[0]
    row.update(chunk_id="foreign-1", model_version="other-model-0123456789")
    table.add(pa.Table.from_pylist([row], schema=table.schema))
    report = checks.consistency(store, "notes", version_id, 256)
    assert not report.ok and report.severity == checks.ERROR
    assert report.model_versions == 2 and report.foreign_rows == 1
    assert any("foreign model version" in p for p in report.problems)
    assert report.vectors == report.chunks + 1 and any("chunks but" in p for p in report.problems)


def test_nan_inf_and_zero_vectors_fail_consistency(cell):
    store, _, version_id = cell
    ids = Store.read(_vectors(store, version_id), ["chunk_id"]).column("chunk_id").to_pylist()
    _set_vector(store, version_id, ids[0], [math.nan] + [0.1] * 255)
    _set_vector(store, version_id, ids[1], [math.inf] + [0.1] * 255)
    _set_vector(store, version_id, ids[2], [0.0] * 256)
    table = _vectors(store, version_id)
    row = Store.read(table, where=col("chunk_id") == lit(ids[3])).to_pylist()[0]
    row["vector"] = [math.nan] * 256
    table.merge_insert("chunk_id").when_matched_update_all().execute(
        pa.Table.from_pylist([row], schema=table.schema), on_bad_vectors="null"
    )
    report = checks.consistency(store, "notes", version_id, 256)
    assert (report.nan_or_inf, report.zero_norm, report.null_vectors, report.duplicate_ids) == (
        2,
        1,
        1,
        0,
    )
    assert report.severity == checks.ERROR
    assert any("NaN or infinite" in p for p in report.problems) and any(
        "zero-norm" in p for p in report.problems
    )
    assert any("without a vector" in p for p in report.problems)


def test_duplicate_chunk_ids_fail_consistency(cell):
    store, _, version_id = cell
    table = _vectors(store, version_id)
    table.add(Store.read(table).slice(0, 1))  # a plain append bypasses the merge key
    report = checks.consistency(store, "notes", version_id, 256)
    assert report.duplicate_ids == 1 and report.severity == checks.ERROR
    assert any("duplicate chunk_id" in p for p in report.problems)


def test_a_refresh_check_reads_only_what_it_wrote_and_still_finds_every_problem(cell):
    """Before a refresh moves the pointer, only the fragments the served version does not hold
    are read; a duplicate of a row that passed before is still found."""
    from embeddings_platform.core.checks.consistency import _split

    store, _, version_id = cell
    passed = store.pointer("notes")["table_version"]
    table = _vectors(store, version_id)
    first, second = Store.read(table).slice(0, 2).to_pylist()
    foreign = dict(
        second, chunk_id="new-1", model_version="other-model-0123456789", chunking_strategy="x"
    )
    table.add(pa.Table.from_pylist([first, foreign], schema=table.schema))  # bypasses the key
    fresh, old = _split(table.to_lance(), passed)
    assert sum(f.count_rows() for f in fresh) == 2 and old
    full = checks.consistency(store, "notes", version_id, 256)
    incremental = checks.consistency(store, "notes", version_id, 256, checked_version=passed)
    for report in (full, incremental):
        found = (report.duplicate_ids, report.foreign_rows, report.model_versions)
        assert found == (1, 1, 2) and report.chunking_strategies == 2
        assert report.vectors == report.chunks + 2 and report.severity == checks.ERROR


def test_dimension_mismatch_fails_consistency(cell):
    store, _, version_id = cell
    report = checks.consistency(store, "notes", version_id, expected_dimension=384)
    assert not report.ok and report.expected_dimension == 384 and report.dimension == 256
    assert any("differs from the model's 384" in p for p in report.problems)


def test_pointer_to_a_vanished_table_version_fails_served_consistency(cell):
    store, _, version_id = cell
    pointer = store.pointer("notes")
    store.set_pointer(
        dict(pointer, table_version=999, swapped_at=pointer["swapped_at"] + timedelta(seconds=1))
    )
    report = checks.consistency(store, "notes", version_id)
    assert not report.pointer_target_exists and report.severity == checks.ERROR
    assert any("no longer exists" in p for p in report.problems)
    assert checks.consistency(store, "notes", version_id, check_pointer=False).ok


def test_missing_table_is_an_error_not_an_exception(store):
    report = checks.consistency(store, "notes", "nothing-0000000000")
    assert not report.ok and "does not exist" in report.problems[0]


def test_pipeline_refuses_to_move_the_pointer_to_an_inconsistent_table(cell, corpus, embedder):
    store, config, version_id = cell
    before = store.pointer("notes")
    _set_vector(store, version_id, _first_chunk(store, version_id, "dogs.txt"), [math.nan] * 256)
    (corpus / "owls.md").write_text("Owls are nocturnal birds of prey with silent flight.")
    with pytest.raises(checks.ConsistencyError, match="NaN or infinite"):
        refresh(
            store, config.sources[0], config.models[0], config.serving, lambda: embedder, "run-2"
        )
    after = store.pointer("notes")
    assert (after["table_version"], after["swapped_at"]) == (
        before["table_version"],
        before["swapped_at"],
    )
    served = checks.consistency(store, "notes", version_id, 256, at="served")
    assert served.table_version == before["table_version"] and served.nan_or_inf == 0


# --- staleness ---------------------------------------------------------------------------


def test_staleness_passes_on_a_fresh_index(cell):
    store, config, version_id = cell
    for at in ("latest", "served"):
        report = checks.staleness(store, "notes", version_id, config.checks, at=at)
        assert report.severity == checks.OK and report.problems == []
        assert report.stale_fraction == 0.0 and report.lag_hours == 0.0
        assert report.snapshot_docs == 5 and report.vectors == report.chunks
        _assert_numeric(report.metadata())
    assert checks.staleness(store, "notes", version_id, at="served").served


def _snapshot_and_chunk(store, config, run_id="run-2"):
    model = config.models[0]
    snap = take_snapshot(store, config.sources[0], run_id)
    sync_chunks(
        store,
        "notes",
        snap.snapshot_id,
        model,
        model_version(model).chunking_strategy,
        load_tokenizer(model),
    )
    return snap


def test_deleted_and_changed_documents_make_vectors_stale(cell, corpus):
    store, config, version_id = cell
    vectors = Store.read(_vectors(store, version_id), ["doc_id"]).column("doc_id").to_pylist()
    (corpus / "cats.md").unlink()
    (corpus / "dogs.txt").write_text(
        "Dogs are loyal companions. A dog barks at the mail carrier every day."
    )
    _snapshot_and_chunk(store, config)
    report = checks.staleness(store, "notes", version_id, config.checks)
    assert report.stale_vanished == vectors.count("cats.md")
    assert report.stale_changed == vectors.count("dogs.txt")
    assert report.missing_vectors > 0
    assert (report.deleted_docs_present, report.changed_docs_present, report.unindexed_docs) == (
        1,
        1,
        0,
    )
    assert report.stale_fraction > 0.10 and report.severity == checks.ERROR  # default error: > 10%
    assert "deleted in the source still in the table" in report.problems[0]
    lenient = ChecksConfig(stale_fraction_warn=0.0, stale_fraction_error=0.9)
    assert checks.staleness(store, "notes", version_id, lenient).severity == checks.WARN
    tolerant = ChecksConfig(stale_fraction_warn=0.95, stale_fraction_error=0.99)
    assert checks.staleness(store, "notes", version_id, tolerant).severity == checks.OK


def test_served_staleness_reports_deleted_documents_still_served_and_lag(cell, corpus, embedder):
    store, config, version_id = cell
    (corpus / "tea.html").unlink()
    snap = _snapshot_and_chunk(store, config)
    from embeddings_platform.core.pipeline import sync_embeddings

    sync_embeddings(store, "notes", model_version(config.models[0]), lambda: embedder, "run-2")
    latest = checks.staleness(store, "notes", version_id, config.checks)
    assert (
        latest.severity == checks.OK and latest.deleted_docs_present == 0
    )  # the record is current
    created = store.latest_snapshot("notes")["created_at"]
    assert store.latest_snapshot("notes")["snapshot_id"] == snap.snapshot_id
    thresholds = ChecksConfig(
        stale_fraction_warn=0.5, stale_fraction_error=0.9
    )  # only lag decides here
    served_now = checks.staleness(store, "notes", version_id, thresholds, at="served", now=created)
    assert (
        served_now.served
        and served_now.deleted_docs_present == 1
        and served_now.severity == checks.OK
    )
    later = checks.staleness(
        store, "notes", version_id, thresholds, at="served", now=created + timedelta(hours=2)
    )
    assert later.lag_hours == pytest.approx(2.0, abs=0.01) and later.severity == checks.WARN
    much_later = checks.staleness(
        store, "notes", version_id, thresholds, at="served", now=created + timedelta(hours=25)
    )
    assert much_later.severity == checks.ERROR and "25.00 h behind" in much_later.problems[0]
    _serve_latest(store, config, version_id)  # the refresh reaches serving: fresh again
    fresh = checks.staleness(
        store, "notes", version_id, thresholds, at="served", now=created + timedelta(hours=25)
    )
    assert (
        fresh.severity == checks.OK and fresh.lag_hours == 0.0 and fresh.deleted_docs_present == 0
    )


# --- ANN recall --------------------------------------------------------------------------


def _synthetic_cell(store: Store, rows=3000, dim=32, clusters=30, seed=0):
    """A chunks + vectors pair large enough for an ANN index (random clustered vectors)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    vecs = centers[rng.integers(0, clusters, rows)] + rng.normal(scale=0.3, size=(rows, dim))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    strategy = "synthetic-v1"
    chunk_rows = [
        {
            "chunk_id": f"c{i}",
            "doc_id": f"d{i}",
            "source": "syn",
            "chunk_index": 0,
            "text": f"chunk {i}",
            "chunk_sha256": f"s{i}",
            "doc_sha256": f"h{i}",
            "chunking_strategy": strategy,
            "source_snapshot": "snap",
            "metadata_json": "{}",
        }
        for i in range(rows)
    ]
    store.table(chunks_table_name("syn", strategy), CHUNKS, "chunk_id").add(
        pa.Table.from_pylist(chunk_rows, CHUNKS)
    )
    table = store.table(vectors_table_name("syn", "synth"), vectors_schema(dim), "chunk_id")
    table.add(
        pa.Table.from_pylist(
            [
                dict(
                    r,
                    model_name="synth",
                    model_version="synth",
                    created_at=None,
                    run_id="r",
                    vector=v.tolist(),
                )
                for r, v in zip(chunk_rows, vecs)
            ],
            schema=table.schema,
        )
    )
    return build_serving_index(store, "syn", "synth", ServingConfig(ann_min_rows=1000), "r", True)


def test_ann_recall_without_an_index_has_nothing_to_evaluate_and_no_numbers(cell):
    store, config, version_id = cell
    report = checks.ann_recall(store, "notes", version_id, config.checks)
    assert report.severity == checks.OK and not report.has_ann_index and not report.evaluated
    assert "exact" in report.note
    assert report.metadata() == {}  # no recall 1.0 "by construction" posing as a measurement
    assert report.facts()["has_ann_index"] is False and report.facts()["evaluated"] is False


def test_ann_recall_passes_on_a_good_index_and_fails_on_a_coarse_one(tmp_path):
    store = Store(str(tmp_path / "db"))
    index = _synthetic_cell(store)
    assert index.index_type == "IvfSq" and index.pointer_moved
    floor = ChecksConfig(ann_sample=30)  # the configured floor: 0.95
    good = checks.ann_recall(store, "syn", "synth", floor)
    assert good.has_ann_index and good.sample == 30 and good.table_version == index.table_version
    assert good.recall >= good.floor == 0.95 and good.severity == checks.OK, good
    # Break the index the way ANN goes wrong: coarse PQ codes, no refine step.
    table = store.db.open_table(vectors_table_name("syn", "synth"))
    table.create_index(
        metric="cosine",
        index_type="IVF_PQ",
        vector_column_name="vector",
        num_partitions=8,
        num_sub_vectors=2,
        replace=True,
    )
    pointer = store.pointer("syn")
    store.set_pointer(
        dict(
            pointer,
            table_version=table.version,
            swapped_at=pointer["swapped_at"] + timedelta(seconds=1),
        )
    )
    bad = checks.ann_recall(store, "syn", "synth", floor, configure=lambda q: q)  # defaults
    assert (
        bad.recall < 0.9 and bad.severity == checks.ERROR and "below the floor" in bad.problems[0]
    )
    # by default the check measures the serving query settings (core/indexing): their refine step
    # re-ranks on full vectors and recovers what the coarse codes lose, up to the floor
    refined = checks.ann_recall(store, "syn", "synth", floor)
    assert refined.has_ann_index and refined.index_type == "IvfPq"
    assert refined.recall >= refined.floor == 0.95 and refined.severity == checks.OK, refined
    # and search, through the pointer, queries with those settings: it finds the exact top 10
    _, served = open_served_table(store, "syn")
    stored = Store.read(served, ["vector"]).column("vector").to_pylist()
    queries = np.asarray(stored[:30], dtype=np.float32)
    found = []
    for q in queries:
        exact = served.search(q).metric("cosine").bypass_vector_index().limit(10).to_arrow()
        hits = search(store, "syn", "", 10, lambda _version, q=q: q)
        top = set(exact.column("chunk_id").to_pylist())
        found.append(len({h.chunk_id for h in hits} & top) / 10)
    assert np.mean(found) >= 0.95


# --- retrieval recall and its baseline ---------------------------------------------------


def test_retrieval_recall_records_a_baseline_then_compares(cell, embedder):
    store, config, version_id = cell
    queries = labelled_queries(config.sources[0])
    first = checks.retrieval_recall(
        store, "notes", version_id, queries, embedder.embed, config.checks, run_id="r1"
    )
    assert first.severity == checks.OK and first.queries == 5 and first.k == 1
    assert first.recall == 1.0 and first.context_recall == 1.0 and first.context_precision == 1.0
    assert first.baseline_recorded and first.has_baseline
    stored = checks.get_baseline(store, "notes", version_id)
    assert stored["recall"] == first.recall and stored["run_id"] == "r1"
    second = checks.retrieval_recall(
        store, "notes", version_id, queries, embedder.embed, config.checks, run_id="r2"
    )
    assert second.has_baseline and not second.baseline_recorded and second.recall_drop_points == 0.0
    assert (
        checks.get_baseline(store, "notes", version_id)["run_id"] == "r1"
    )  # the first passing result stays
    _assert_numeric(second.metadata())


def _corrupt_document(store, version_id, doc_id, seed=3):
    table = _vectors(store, version_id)
    rows = Store.read(table, where=col("doc_id") == lit(doc_id)).to_pylist()
    rng = np.random.default_rng(seed)
    for row in rows:
        noise = rng.normal(size=len(row["vector"]))
        row["vector"] = (noise / np.linalg.norm(noise)).tolist()
    store.upsert(table, pa.Table.from_pylist(rows, schema=table.schema), "chunk_id")


def test_recall_drop_from_corrupted_vectors_is_an_error_or_a_warning(cell, embedder):
    store, config, version_id = cell
    queries = labelled_queries(config.sources[0])
    checks.retrieval_recall(store, "notes", version_id, queries, embedder.embed, config.checks)
    _corrupt_document(store, version_id, "cats.md")
    _serve_latest(store, config, version_id)
    dropped = checks.retrieval_recall(
        store, "notes", version_id, queries, embedder.embed, config.checks
    )
    assert dropped.recall == pytest.approx(0.8) and dropped.recall_drop_points == pytest.approx(
        20.0
    )
    assert dropped.severity == checks.ERROR and "dropped 20.0 points" in dropped.problems[0]
    assert dropped.context_recall == pytest.approx(0.8)
    warn_only = ChecksConfig(recall_k=1, recall_drop_warn_points=2.0, recall_drop_error_points=30.0)
    assert (
        checks.retrieval_recall(
            store, "notes", version_id, queries, embedder.embed, warn_only
        ).severity
        == checks.WARN
    )
    within = ChecksConfig(recall_k=1, recall_drop_warn_points=25.0, recall_drop_error_points=30.0)
    assert (
        checks.retrieval_recall(
            store, "notes", version_id, queries, embedder.embed, within
        ).severity
        == checks.OK
    )


def test_baseline_restarts_when_labels_change_and_can_be_reset(cell, embedder):
    store, config, version_id = cell
    queries = labelled_queries(config.sources[0])
    checks.retrieval_recall(
        store, "notes", version_id, queries, embedder.embed, config.checks, run_id="r1"
    )
    fewer = queries[:3]
    report = checks.retrieval_recall(
        store, "notes", version_id, fewer, embedder.embed, config.checks, run_id="r2"
    )
    assert report.baseline_recorded and "changed since the baseline" in report.note
    assert checks.get_baseline(store, "notes", version_id)["queries"] == 3
    assert checks.reset_baseline(store, "notes", version_id)
    assert checks.get_baseline(store, "notes", version_id) is None
    assert not checks.reset_baseline(store, "notes", version_id)


def test_first_result_below_the_floor_is_an_error_and_not_a_baseline(cell, embedder):
    store, config, version_id = cell
    _corrupt_document(store, version_id, "cats.md")
    _corrupt_document(store, version_id, "dogs.txt", seed=4)
    _serve_latest(store, config, version_id)
    queries = labelled_queries(config.sources[0])
    strict = ChecksConfig(recall_k=1, min_recall=0.9)
    report = checks.retrieval_recall(store, "notes", version_id, queries, embedder.embed, strict)
    assert report.recall < 0.9 and report.severity == checks.ERROR and not report.has_baseline
    assert checks.get_baseline(store, "notes", version_id) is None


def test_no_labelled_queries_is_its_own_outcome_naming_what_serves(store, config, embedder):
    refresh(store, config.sources[0], config.models[0], config.serving, lambda: embedder, "r")
    version_id = model_version(config.models[0]).version_id
    served = store.pointer("notes")["table_version"]
    report = checks.retrieval_recall(store, "notes", version_id, [], embedder.embed)
    assert report.severity == checks.WARN and not report.evaluated and not report.problems
    assert "no labelled queries for source 'notes'" in report.note
    # what it would have evaluated is what serves, not "served 0, table_version 0"
    assert report.served and report.table_version == served > 0
    assert report.metadata() == {}  # no recall 0.0 that reads like a measurement
    assert report.facts() == {
        "version_id": version_id,
        "table_version": str(served),
        "served": True,
        "k": "10",
        "queries": "0",
        "has_baseline": False,
        "baseline_recorded": False,
        "evaluated": False,
    }


def test_ragas_id_based_scores_match_hand_computed_values():
    queries = [LabelledQuery("1", "q", {"a": 1, "c": 1}), LabelledQuery("2", "q", {"x": 1})]
    recall, precision = checks.ragas_id_scores([["a", "b"], ["x", "y", "z", "w"]], queries)
    assert recall == pytest.approx((0.5 + 1.0) / 2)
    assert precision == pytest.approx((0.5 + 0.25) / 2)


# --- thresholds in the registry ----------------------------------------------------------


def test_checks_section_parses_and_validates(tmp_path, corpus):
    config = canary_config(
        tmp_path,
        corpus,
        staleness={
            "stale_fraction": {"warn": 0.01, "error": 0.2},
            "lag_hours": {"warn": 2, "error": 12},
            "schedule": "0 * * * *",
        },
        ann_recall={"floor": 0.9, "sample": 20},
        retrieval={"k": 5, "drop_points": {"error": 8}},
    )
    c = config.checks
    assert (c.stale_fraction_warn, c.stale_fraction_error, c.lag_hours_warn, c.lag_hours_error) == (
        0.01,
        0.2,
        2,
        12,
    )
    assert (c.staleness_cron, c.ann_recall_floor, c.ann_sample, c.recall_k) == (
        "0 * * * *",
        0.9,
        20,
        5,
    )
    assert (c.recall_drop_warn_points, c.recall_drop_error_points) == (2.0, 8.0)
    bad = [
        (
            {"ann_recall": {"floor": 1.5}},
            "checks.ann_recall.floor: Input should be less than or equal to 1",
        ),
        (
            {"staleness": {"stale_fraction": {"warn": 0.5, "error": 0.1}}},
            "checks: staleness.stale_fraction.error must be >= staleness.stale_fraction.warn "
            "(0.5), got 0.1",
        ),
        (
            {"retrieval": {"drop": 3}},
            "checks: retrieval: unknown key 'drop'; use k, drop_points, min_recall",
        ),
        (
            {"staleness": {"schedule": "hourly"}},
            "checks.staleness.schedule: expected a 5-field cron string",
        ),
        ({"ann_recall": {"sample": 0}}, "checks.ann_recall.sample: Input should be greater than 0"),
        (
            {"freshness": {}},
            "checks: unknown key 'freshness'; use staleness, ann_recall, retrieval",
        ),
    ]
    for section, field in bad:
        with pytest.raises(ConfigError, match=re.escape(field)):
            canary_config(tmp_path, corpus, **section)


def test_model_dimension_is_read_without_loading_the_model(config):
    assert model_dimension(config.models[0]) == 256


def test_document_with_partly_unchanged_chunks_is_current_after_refresh(cell, corpus, embedder):
    """Chunks whose text did not change keep their vector (and its old doc_sha256): not stale."""
    store, config, version_id = cell
    (corpus / "cats.md").write_text(
        "Cats are small domesticated carnivorous mammals. A cat purrs and hunts mice at night. "
        "Cats sleep a lot."
    )
    report = refresh(
        store, config.sources[0], config.models[0], config.serving, lambda: embedder, "run-2"
    )
    assert report.embeddings.embedded < sum(
        1
        for r in Store.read(_vectors(store, version_id), ["doc_id"]).to_pylist()
        if r["doc_id"] == "cats.md"
    )  # some cats.md chunks were reused
    for at in ("latest", "served"):
        fresh = checks.staleness(store, "notes", version_id, config.checks, at=at)
        assert fresh.severity == checks.OK and fresh.changed_docs_present == 0, fresh.problems


def test_query_vectors_are_cached_per_model_version(cell, embedder):
    store, config, version_id = cell
    queries = labelled_queries(config.sources[0])
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return embedder.embed(texts)

    first = checks.retrieval_recall(store, "notes", version_id, queries, embed, config.checks)
    assert [len(c) for c in calls] == [5]
    second = checks.retrieval_recall(store, "notes", version_id, queries, embed, config.checks)
    assert len(calls) == 1 and (second.recall, second.ndcg) == (
        first.recall,
        first.ndcg,
    )  # no model call
    extra = [
        *queries,
        LabelledQuery("new", "black tea", {"tea.html": 1}),
        LabelledQuery("dup", "black tea", {"tea.html": 1}),
    ]
    checks.retrieval_recall(store, "notes", version_id, extra, embed, config.checks, record=False)
    assert calls[1] == ["black tea"]  # only the unseen text, once
    cached = checks.cached_query_embedder(store, "another-version", embed)
    cached(["black tea"])
    assert calls[2] == ["black tea"]  # another model version never reuses these vectors
    np.testing.assert_allclose(
        checks.cached_query_embedder(store, version_id, embed)(["black tea"])[0],
        embedder.embed(["black tea"])[0],
        rtol=1e-6,
    )


def test_the_blocking_check_reads_only_vectors_written_since_the_version_that_passed(cell):
    """Fragments are immutable: what a version that passed held need not be read again. A NaN
    written behind the product's back into such a version is found by the full check only."""
    store, config, version_id = cell
    _set_vector(store, version_id, _first_chunk(store, version_id, "cats.md"), [math.inf] * 256)
    trusted = _vectors(store, version_id).version
    assert checks.consistency(store, "notes", version_id, 256).nan_or_inf == 1
    assert checks.consistency(store, "notes", version_id, 256, checked_version=trusted).ok
    _set_vector(store, version_id, _first_chunk(store, version_id, "dogs.txt"), [math.nan] * 256)
    since = checks.consistency(store, "notes", version_id, 256, checked_version=trusted)
    assert since.nan_or_inf == 1 and not since.ok  # the new write only: the rest is trusted
    assert checks.consistency(store, "notes", version_id, 256).nan_or_inf == 2
