"""Model migrations: shadow build, dual write, gate, atomic swap, rollback, retention cleanup."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from embeddings_platform import cli
from embeddings_platform.core.config import load_config
from embeddings_platform.core.evaluation import labelled_queries
from embeddings_platform.core.migration import MigrationError, rollback, swap
from embeddings_platform.core.migration_gate import evaluate_gate, query_embedders
from embeddings_platform.core.models import model_version
from embeddings_platform.core.pipeline import MixedModelVersionsError
from embeddings_platform.core.retention import cleanup
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store, utcnow, vectors_table_name
from embeddings_platform.definitions import defs
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource, cached_embedder
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import hashing_model, write_config

CANARY = [
    {"query": "cat purrs hunts mice", "relevant": ["cats.md"]},
    {"query": "dog barks fetches sticks", "relevant": ["dogs.txt"]},
    {"query": "memory safety without garbage collection", "relevant": ["rust.rst"]},
    {"query": "dynamic typing programming language", "relevant": ["python.md"]},
    {"query": "green tea black tea leaves", "relevant": ["tea.html"]},
]


def _model(name: str, dimension: int) -> dict:
    return hashing_model(name, dimension)


@pytest.fixture
def migration_setup(tmp_path, corpus):
    canary = tmp_path / "canary.jsonl"
    canary.write_text("\n".join(json.dumps(q) for q in CANARY))
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
        models=[_model("old", 256), _model("new", 128), _model("broken", 64)],
        migration={"max_recall_drop": 0.2, "max_ndcg_drop": 0.2},
        serving={"retrieval": {"mode": "vector"}},  # model quality shows in vector retrieval
    )
    config = load_config(path)
    resources = {"platform": PlatformResource(config_path=str(path))}
    instance = DagsterInstance.ephemeral()
    materialize_graph(instance, config, resources=resources)  # every model fills its own table
    return config, path, resources, instance


def _scramble(config, name: str) -> None:
    """Corrupt a model's vectors (each row gets another document's vector) and re-index it."""
    from embeddings_platform.core.pipeline import build_serving_index

    store = Store(config.storage_uri)
    version = _version(config, name)
    table = store.table(vectors_table_name("notes", version))
    rows = table.to_arrow().select(["chunk_id", "vector"]).to_pylist()
    half = len(rows) // 2
    moved = [
        {"chunk_id": r["chunk_id"], "vector": rows[(i + half) % len(rows)]["vector"]}
        for i, r in enumerate(rows)
    ]
    schema = pa.schema(
        [pa.field("chunk_id", pa.string(), nullable=False), table.schema.field("vector")]
    )
    table.merge_insert("chunk_id").when_matched_update_all().execute(
        pa.Table.from_pylist(moved, schema=schema)
    )
    build_serving_index(
        store, "notes", version, config.serving, "scrambled", is_default_model=False
    )


def _version(config, name: str) -> str:
    return model_version(config.model(name)).version_id


def _gate(config, name: str):
    store = Store(config.storage_uri)
    return evaluate_gate(
        store,
        "notes",
        _version(config, name),
        labelled_queries(config.source("notes")),
        query_embedders(store, config, cached_embedder),
        config.migration,
    )


def _answers(config, query: str = "garbage collection language", k: int = 5):
    def embed(version_id):
        model = next(m for m in config.models if model_version(m).version_id == version_id)
        return cached_embedder(model).embed([query])[0]

    return [
        (h.doc_id, h.chunk_id, round(h.score, 6), h.lineage["model_version"])
        for h in search(Store(config.storage_uri), "notes", query, k, embed)
    ]


def test_shadow_build_dual_write_gate_swap_and_exact_rollback(migration_setup, corpus):
    config, _, resources, instance = migration_setup
    store = Store(config.storage_uri)
    old, new = _version(config, "old"), _version(config, "new")
    assert store.pointer("notes")["model_version"] == old  # shadows do not serve
    before = _answers(config)
    assert {a[3] for a in before} == {old}

    # a document changes mid-migration: the refresh reaches both model versions (dual write)
    (corpus / "rust.rst").write_text(
        "Rust is a systems language with ownership and borrowing instead of garbage collection."
    )
    materialize_graph(instance, config, resources=resources)
    for version in (old, new):
        texts = (
            store.table(vectors_table_name("notes", version)).to_arrow().column("text").to_pylist()
        )
        assert any("ownership and borrowing" in t for t in texts), version
    before = _answers(config)

    gate = _gate(config, "new")
    assert gate.passed and gate.queries == len(CANARY) and gate.serving_version == old
    assert gate.candidate_recall >= gate.serving_recall - 0.2
    swap(store, gate, run_id="test")
    after = _answers(config)
    assert {a[3] for a in after} == {new}

    restored = rollback(store, "notes", "test-rollback", config.serving.retention_hours)
    assert restored["model_version"] == old
    assert _answers(config) == before  # the very same table version: the very same answers


def test_a_worse_candidate_fails_the_gate_the_check_and_is_not_swapped(migration_setup):
    config, _, resources, instance = migration_setup
    store = Store(config.storage_uri)
    pointer = store.pointer("notes")
    _scramble(config, "broken")
    gate = _gate(config, "broken")
    assert not gate.passed and gate.candidate_ndcg < gate.serving_ndcg
    with pytest.raises(MigrationError, match="gate failed"):
        swap(store, gate, run_id="test")
    assert store.pointer("notes") == pointer

    key = grid_key(
        "notes", _version(config, "broken")
    )  # re-embeds nothing: the vectors stay corrupted
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=["serving_index"],
        partition_key=key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "migration_gate"
    )
    assert not evaluation.passed
    assert evaluation.metadata["ndcg_delta"].value < -0.2
    assert evaluation.metadata["queries"].value == str(len(CANARY))  # a setting: text

    passing = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=["serving_index"],
        partition_key=grid_key("notes", _version(config, "new")),
        instance=instance,
        resources=resources,
    )
    assert next(
        e for e in passing.get_asset_check_evaluations() if e.check_name == "migration_gate"
    ).passed


def test_readers_never_see_an_error_an_empty_result_or_two_model_versions_during_swaps(
    migration_setup,
):
    config, _, _, _ = migration_setup
    store = Store(config.storage_uri)
    new_gate = _gate(config, "new")
    problems: list[str] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                answers = _answers(config)
            except Exception as exc:  # noqa: BLE001 - any error is a failure of the swap
                problems.append(repr(exc))
                continue
            if not answers:
                problems.append("empty result")
            elif len({a[3] for a in answers}) != 1:
                problems.append(f"mixed model versions: {answers}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(6):
        swap(store, new_gate, run_id="swap")
        rollback(store, "notes", "rollback", config.serving.retention_hours)
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []


def test_a_table_tampered_into_two_model_versions_cannot_serve_and_fails_the_check(migration_setup):
    config, _, _, _ = migration_setup
    store = Store(config.storage_uri)
    new = _version(config, "new")
    table = store.table(vectors_table_name("notes", new))
    row = table.to_arrow().slice(0, 1).to_pylist()[0]
    row.update(chunk_id="tampered", model_version=_version(config, "old"))
    table.add(pa.Table.from_pylist([row], schema=table.schema))
    table.tags.create(f"serve-v{table.version}", table.version)  # as if indexed after the tampering

    gate = _gate(config, "new")
    with pytest.raises(MixedModelVersionsError):
        swap(store, gate, run_id="test", force=True)
    from embeddings_platform.core.checks import consistency

    report = consistency(store, "notes", new)
    assert not report.ok and report.foreign_rows == 1


def test_rollback_is_refused_after_retention_and_cleanup_drops_only_what_nothing_retains(
    migration_setup, tmp_path
):
    config, path, _, _ = migration_setup
    store = Store(config.storage_uri)
    swap(store, _gate(config, "new"), run_id="test")
    later = utcnow() + timedelta(hours=config.serving.retention_hours + 1)
    with pytest.raises(MigrationError, match="retention"):
        rollback(store, "notes", "late", config.serving.retention_hours, now=later)

    # "broken" is unregistered: its table goes once nothing retains it; "old" is retained
    # until expiry
    trimmed = write_config(
        tmp_path / "trimmed.yaml",
        [dict(name="notes", kind="folder", path=str(config.sources[0].path))],
        models=[_model("new", 128)],
    )
    trimmed_config = load_config(trimmed)
    trimmed_config = type(trimmed_config)(
        **{**trimmed_config.__dict__, "storage_uri": config.storage_uri}
    )
    report = cleanup(store, trimmed_config)
    assert report.tables_dropped == [vectors_table_name("notes", _version(config, "broken"))]
    assert store.has_table(vectors_table_name("notes", _version(config, "old")))  # still restorable
    expired = cleanup(store, trimmed_config, now=later)
    assert expired.tables_dropped == [vectors_table_name("notes", _version(config, "old"))]
    assert store.has_table(vectors_table_name("notes", _version(config, "new")))


def test_cli_migrate_rollback_and_lineage_across_versions(migration_setup, capsys):
    config, path, _, _ = migration_setup
    _scramble(config, "broken")
    assert (
        cli.main(["--config", str(path), "migrate", "--source", "notes", "--model", "broken"]) == 1
    )
    assert "not swapped" in capsys.readouterr().err
    assert cli.main(["--config", str(path), "migrate", "--source", "notes", "--model", "new"]) == 0
    assert "now serves" in capsys.readouterr().out
    assert cli.main(["--config", str(path), "lineage", "cats.md"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert {r["model_version"] for r in traced["vectors"]} == {
        _version(config, n) for n in ("old", "new", "broken")
    }
    assert traced["serving"]["notes"]["model_version"] == _version(config, "new")
    assert [e["reason"] for e in traced["serving_history"]["notes"]][-1] == "migration"
    assert cli.main(["--config", str(path), "rollback", "--source", "notes"]) == 0
    assert Store(config.storage_uri).pointer("notes")["model_version"] == _version(config, "old")
