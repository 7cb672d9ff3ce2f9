"""Nothing deleted is ever served: emptied sources, empty shards, rollbacks after refreshes,
model entries edited in place and vectors tables that were dropped (invariant 7)."""

from __future__ import annotations

import json

import pytest
import yaml
from dagster import DagsterInstance

from embeddings_platform import cli
from embeddings_platform.core import checks
from embeddings_platform.core.config import load_config
from embeddings_platform.core.migration import MigrationError, rollback, swap
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import embedder_query_function, search
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.defs.resources import PlatformResource, cached_embedder
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import DOCS, write_config

from .test_migration import CANARY, _gate, _model, _version


def _served_docs(config, source: str = "notes") -> set[str]:
    """Every document the served index of a source can return (full scan of the pinned version)."""
    store = Store(config.storage_uri)
    pointer = store.pointer(source)
    table = store.db.open_table(pointer["table_name"])
    table.checkout(pointer["table_version"])
    return set(table.to_arrow().column("doc_id").to_pylist())


def _search_docs(config, query: str, source: str = "notes") -> set[str]:
    store = Store(config.storage_uri)
    embed = embedder_query_function(config, store, cached_embedder, query)
    return {hit.doc_id for hit in search(store, source, query, 10, embed)}


def _build(config, path):
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    materialize_graph(instance, config, resources=resources)
    return instance, resources


# --- 1. an empty snapshot is a valid snapshot ----------------------------------------------


def test_deleting_every_document_serves_an_empty_index_and_recovers(config, config_path, corpus):
    instance, resources = _build(config, config_path)
    assert _served_docs(config) == set(DOCS)
    for name in DOCS:
        (corpus / name).unlink()
    materialize_graph(
        instance, config, resources=resources
    )  # used to fail: snapshot "not recorded"
    assert _served_docs(config) == set()
    assert _search_docs(config, "cat purrs hunts mice") == set()
    (corpus / "cats.md").write_text(DOCS["cats.md"])
    materialize_graph(instance, config, resources=resources)  # not stuck: a new document serves
    assert _served_docs(config) == {"cats.md"}


def test_a_source_that_is_empty_from_the_start_serves_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(tmp_path / "empty")}],
    )
    config = load_config(path)
    _build(config, path)
    assert Store(config.storage_uri).pointer("notes") is not None
    assert _served_docs(config) == set() and _search_docs(config, "anything") == set()


def test_a_sharded_source_with_empty_shards_serves_all_its_documents(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.md").write_text("Alpha particles and helium nuclei.")
    (folder / "b.md").write_text("Beta decay emits electrons.")
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(folder), "shards": 4}],
    )
    config = load_config(path)
    _build(config, path)  # used to fail on the shards that hold no document
    assert _served_docs(config) == {"a.md", "b.md"}
    assert "a.md" in _search_docs(config, "alpha particles helium")


def test_serve_empty_false_keeps_the_last_target_and_staleness_is_an_error(tmp_path, corpus):
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus)}],
        serving={"serve_empty": False},
    )
    config = load_config(path)
    instance, resources = _build(config, path)
    before = Store(config.storage_uri).pointer("notes")
    for name in DOCS:
        (corpus / name).unlink()
    materialize_graph(instance, config, resources=resources)
    after = Store(config.storage_uri).pointer("notes")
    assert (after["table_name"], after["table_version"]) == (
        before["table_name"],
        before["table_version"],
    )
    report = checks.staleness(
        Store(config.storage_uri), "notes", _version(config, "hash"), config.checks, at="served"
    )
    assert report.severity == checks.ERROR and report.deleted_docs_present == len(DOCS)


# --- 2. rollback undoes a migration, at the previous version's current state -------------


@pytest.fixture
def two_models(tmp_path, corpus):
    canary = tmp_path / "canary.jsonl"
    canary.write_text("\n".join(json.dumps(q) for q in CANARY))
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
        models=[_model("old", 256), _model("new", 128)],
        migration={"max_recall_drop": 0.5, "max_ndcg_drop": 0.5},
    )
    config = load_config(path)
    instance, resources = _build(config, path)
    return config, instance, resources


def test_rollback_after_a_refresh_never_serves_the_deleted_document(two_models, corpus):
    config, instance, resources = two_models
    store = Store(config.storage_uri)
    old, new = _version(config, "old"), _version(config, "new")
    swap(store, _gate(config, "new"), run_id="migrate")
    (corpus / "dogs.txt").unlink()
    materialize_graph(instance, config, resources=resources)  # refresh reaches both versions
    assert "dogs.txt" not in _served_docs(config)

    restored = rollback(store, "notes", "rb", config.serving.retention_hours)
    assert restored["model_version"] == old and "undoes the move to " + new in restored["reason"]
    assert _served_docs(config) == set(DOCS) - {"dogs.txt"}
    # a second rollback undoes the rollback: the other model, never an older table version
    again = rollback(store, "notes", "rb2", config.serving.retention_hours)
    assert again["model_version"] == new
    assert _served_docs(config) == set(DOCS) - {"dogs.txt"}
    history = store.pointer_history("notes")
    assert [e["reason"].split(":")[0] for e in history[-2:]] == ["rollback", "rollback"]


def test_rollback_serves_the_current_state_of_a_shadow_refreshed_before_the_swap(
    two_models, corpus
):
    config, instance, resources = two_models
    store = Store(config.storage_uri)
    (corpus / "rust.rst").unlink()  # refreshed while `new` is a shadow
    materialize_graph(instance, config, resources=resources)
    swap(store, _gate(config, "new"), run_id="migrate")
    (corpus / "tea.html").unlink()
    materialize_graph(instance, config, resources=resources)
    rollback(store, "notes", "rb", config.serving.retention_hours)
    assert _served_docs(config) == set(DOCS) - {"rust.rst", "tea.html"}


def test_rollback_refuses_a_previous_version_that_fell_behind(two_models, corpus):
    config, _, _ = two_models
    store = Store(config.storage_uri)
    swap(store, _gate(config, "new"), run_id="migrate")
    (corpus / "cats.md").unlink()  # only the serving version is refreshed: `old` falls behind
    refresh(
        store,
        config.source("notes"),
        config.model("new"),
        config.serving,
        lambda: cached_embedder(config.model("new")),
        "only-new",
    )
    pointer = store.pointer("notes")
    with pytest.raises(MigrationError, match="behind the source .*1 deleted"):
        rollback(store, "notes", "rb", config.serving.retention_hours)
    assert store.pointer("notes") == pointer


# --- 4. an entry edited in place keeps serving until a migration replaces it --------------


def test_editing_the_served_model_in_place_keeps_search_up_and_current(tmp_path, corpus, capsys):
    path = write_config(
        tmp_path / "platform.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}]
    )
    config = load_config(path)
    instance, resources = _build(config, path)
    served = _version(config, "hash")

    raw = yaml.safe_load(path.read_text())
    raw["models"][0]["dimension"] = 128  # same name, new settings: a new version
    path.write_text(yaml.safe_dump(raw))
    edited = load_config(path)
    assert _version(edited, "hash") != served

    assert (
        cli.main(
            [
                "--config",
                str(path),
                "search",
                "cat purrs hunts mice",
                "--source",
                "notes",
                "-k",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cats.md" in out and f"model={served}" in out
    assert cli.main(["--config", str(path), "status", "--json"]) == 0
    rows = {r["model_version"]: r for r in json.loads(capsys.readouterr().out)}
    assert (
        rows[served]["serving"]
        and not rows[served]["registered"]
        and rows[served]["health"] == "ok"
    )

    (corpus / "cats.md").unlink()  # the old version keeps following the source (dual write)
    materialize_graph(
        instance, edited, resources={"platform": PlatformResource(config_path=str(path))}
    )
    store = Store(edited.storage_uri)
    assert store.pointer("notes")["model_version"] == served  # the edit builds a shadow only
    assert store.has_table(vectors_table_name("notes", _version(edited, "hash")))
    assert _served_docs(edited) == set(DOCS) - {"cats.md"}
    assert "cats.md" not in _search_docs(edited, "cat purrs hunts mice")


# --- 5. a dropped vectors table is rebuilt and re-pinned ----------------------------------


def test_a_dropped_vectors_table_is_rebuilt_and_serves_again(config, config_path, corpus):
    instance, resources = _build(config, config_path)
    for edit in ("one", "two"):  # each refresh moves the table (and the pointer) forward
        (corpus / "dogs.txt").write_text(f"{DOCS['dogs.txt']} Edit {edit}.")
        materialize_graph(instance, config, resources=resources)
    store = Store(config.storage_uri)
    pinned = store.pointer("notes")["table_version"]
    store.db.drop_table(store.pointer("notes")["table_name"])
    report = checks.consistency(store, "notes", _version(config, "hash"), at="served")
    assert not report.pointer_target_exists and not report.ok

    materialize_graph(instance, config, resources=resources)
    pointer = store.pointer("notes")
    assert pointer["table_version"] < pinned  # the rebuilt table's versions restarted
    assert store.target_exists(pointer["table_name"], pointer["table_version"], pointer["tag"])
    assert _served_docs(config) == set(DOCS)
    assert "dogs.txt" in _search_docs(config, "dog barks edit two")
