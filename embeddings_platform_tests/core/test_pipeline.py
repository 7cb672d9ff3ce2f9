"""Incremental refresh by content hash: model calls happen for exactly what changed."""

import pyarrow as pa
import pytest

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.pipeline import (
    MixedModelVersionsError,
    build_serving_index,
    refresh,
)
from embeddings_platform.core.serving import lineage, search
from embeddings_platform.core.store import (
    LINEAGE_COLUMNS,
    Store,
    chunks_table_name,
    serve_tag,
    vectors_schema,
    vectors_table_name,
)
from embeddings_platform.testing import HASHING_MODEL, write_config


def _refresh(store, config, embedder, run_id="run-1"):
    return refresh(
        store, config.sources[0], config.models[0], config.serving, lambda: embedder, run_id
    )


def _vectors(store, report):
    return Store.read(store.table(report.embeddings.table_name)).to_pylist()


def _chunks_table(report) -> str:
    return chunks_table_name("notes", report.chunks.strategy)


def test_second_materialization_embeds_nothing(store, config, embedder):
    first = _refresh(store, config, embedder)
    rows_before = sorted((r["chunk_id"], r["run_id"]) for r in _vectors(store, first))
    tables = ("snapshots", "snapshot_documents", _chunks_table(first))
    versions = {name: store.table(name).version for name in tables}
    calls = embedder.calls
    second = _refresh(store, config, embedder, "run-2")
    assert first.embeddings.embedded == len(rows_before) == 8
    assert embedder.calls == calls  # zero model calls
    assert second.embeddings.embedded == 0 and second.embeddings.deleted == 0
    assert not second.snapshot.is_new
    # nothing re-read into the store: no snapshot recorded again, no document chunked again
    assert (second.chunks.documents_chunked, second.chunks.chunks_written) == (0, 0)
    assert {n: store.table(n).version for n in versions} == versions
    assert second.index.rebuilt is False and second.index.table_version == first.index.table_version
    assert sorted((r["chunk_id"], r["run_id"]) for r in _vectors(store, second)) == rows_before


def test_changing_one_document_reembeds_only_its_chunks(store, config, embedder, corpus):
    first = _refresh(store, config, embedder)
    before = {r["chunk_id"]: r for r in _vectors(store, first)}
    (corpus / "dogs.txt").write_text(
        "Dogs are loyal companions. A dog barks at the mail carrier every day."
    )
    texts_before = embedder.texts_embedded
    second = _refresh(store, config, embedder, "run-2")
    after = {r["chunk_id"]: r for r in _vectors(store, second)}
    new_ids = set(after) - set(before)
    assert (
        second.snapshot.changed == 1 and second.snapshot.unchanged == second.snapshot.documents - 1
    )
    assert {after[c]["doc_id"] for c in new_ids} == {"dogs.txt"}
    assert embedder.texts_embedded - texts_before == len(new_ids) == second.embeddings.embedded
    assert {before[c]["doc_id"] for c in set(before) - set(after)} == {"dogs.txt"}
    # untouched documents keep their original vectors and lineage
    assert all(after[c]["run_id"] == "run-1" for c in after if after[c]["doc_id"] != "dogs.txt")


def test_deleting_a_document_removes_exactly_its_vectors(store, config, embedder, corpus):
    first = _refresh(store, config, embedder)
    before = _vectors(store, first)
    (corpus / "cats.md").unlink()
    calls = embedder.calls
    second = _refresh(store, config, embedder, "run-2")
    after = _vectors(store, second)
    assert embedder.calls == calls
    assert second.embeddings.deleted == sum(1 for r in before if r["doc_id"] == "cats.md") > 0
    assert sorted(r["chunk_id"] for r in after) == sorted(
        r["chunk_id"] for r in before if r["doc_id"] != "cats.md"
    )
    hits = search(store, "notes", "cats purr", 10, lambda _: embedder.embed(["cats purr"])[0])
    assert "cats.md" not in {h.doc_id for h in hits}


def test_adding_a_document_embeds_only_its_chunks(store, config, embedder, corpus):
    _refresh(store, config, embedder)
    (corpus / "owls.md").write_text("Owls are nocturnal birds of prey with silent flight.")
    texts_before = embedder.texts_embedded
    second = _refresh(store, config, embedder, "run-2")
    rows = _vectors(store, second)
    owl_chunks = [r for r in rows if r["doc_id"] == "owls.md"]
    assert second.snapshot.added == 1
    assert (
        embedder.texts_embedded - texts_before == len(owl_chunks) == second.embeddings.embedded > 0
    )


def test_every_vector_answers_its_lineage(store, config, embedder):
    report = _refresh(store, config, embedder, "run-xyz")
    rows = _vectors(store, report)
    assert rows
    for row in rows:
        for column in LINEAGE_COLUMNS:
            assert row[column] not in (None, ""), column
        assert row["model_version"] == report.embeddings.model_version
        assert row["source_snapshot"] == report.snapshot.snapshot_id
        assert row["run_id"] == "run-xyz"
    traced = lineage(store, config, "rust.rst")
    assert traced and {r["doc_id"] for r in traced} == {"rust.rst"}
    assert traced[0]["table"] == vectors_table_name("notes", report.embeddings.model_version)


def test_search_finds_the_right_document_with_lineage(store, config, embedder):
    _refresh(store, config, embedder)
    query = "memory safety systems language"
    hits = search(store, "notes", query, 3, lambda _: embedder.embed([query])[0])
    assert hits[0].doc_id == "rust.rst"
    assert hits[0].lineage["table_version"] >= 1
    fts = search(store, "notes", "barks", 3, None, mode="fts")
    assert fts[0].doc_id == "dogs.txt"


def test_serving_pointer_pins_a_version(store, config, embedder, corpus):
    first = _refresh(store, config, embedder)
    pointer = store.pointer("notes")
    assert pointer["table_version"] == first.index.table_version
    (corpus / "owls.md").write_text("Owls hoot.")
    from embeddings_platform.core.models import load_tokenizer, model_version
    from embeddings_platform.core.pipeline import (
        sync_chunks,
        sync_embeddings,
        take_snapshot,
    )

    # new vectors written but the index not rebuilt: readers still see the pinned version
    version = model_version(config.models[0])
    snap = take_snapshot(store, config.sources[0], "r2")
    sync_chunks(
        store,
        "notes",
        snap.snapshot_id,
        config.models[0],
        version.chunking_strategy,
        load_tokenizer(config.models[0]),
    )
    sync_embeddings(store, "notes", version, lambda: embedder, "r2")
    hits = search(store, "notes", "owls hoot", 10, lambda _: embedder.embed(["owls hoot"])[0])
    assert "owls.md" not in {h.doc_id for h in hits}


SHADOW = "shadow-0000000000"


def test_a_table_holding_two_model_versions_is_never_served(store, config, embedder):
    first = _refresh(store, config, embedder)
    version_id = first.embeddings.model_version
    served = store.table(first.embeddings.table_name)
    rows = Store.read(served).to_pylist()
    # a shadow candidate (not serving) whose table also holds another version's row
    shadow_name = vectors_table_name("notes", SHADOW)
    shadow = store.table(shadow_name, vectors_schema(256), "chunk_id")
    shadow.add(
        pa.Table.from_pylist(
            [dict(r, model_version=SHADOW) for r in rows] + [dict(rows[0], chunk_id="foreign-1")],
            schema=shadow.schema,
        )
    )
    # and the serving version's own table, after a writer slipped a foreign row in
    foreign = dict(rows[0], chunk_id="foreign-2", model_version="other-0000000000")
    served.add(pa.Table.from_pylist([foreign], schema=served.schema))
    pointer, history = store.pointer("notes"), store.pointer_history("notes")
    for version, other in ((SHADOW, version_id), (version_id, "other-0000000000")):
        with pytest.raises(MixedModelVersionsError, match=other):
            build_serving_index(store, "notes", version, config.serving, "run-2", True)
    assert store.pointer("notes") == pointer and store.pointer_history("notes") == history
    for table in (shadow, served):  # neither was indexed for serving
        assert serve_tag(table.version) not in table.tags.list()


def test_a_new_default_model_takes_the_pointer_only_through_a_migration(tmp_path, corpus):
    wide = dict(HASHING_MODEL, name="hash-wide", dimension=128)
    source = {"name": "notes", "kind": "folder", "path": str(corpus)}
    config = load_config(write_config(tmp_path / "two.yaml", [source], [HASHING_MODEL, wide]))
    store = Store(config.storage_uri)
    source, serving = config.sources[0], config.serving
    first = refresh(store, source, config.models[0], serving, lambda: HashingEmbedder(256), "r1")
    pointer = store.pointer("notes")
    # the registry now names the wide model the default (first): it builds a shadow index only
    second = refresh(
        store,
        source,
        config.models[1],
        serving,
        lambda: HashingEmbedder(128),
        "r2",
        is_default_model=True,
    )
    assert (second.index.pointer_moved, second.index.serving_model_version) == (
        False,
        first.embeddings.model_version,
    )
    assert store.pointer("notes") == pointer


def test_chunks_written_while_the_step_embeds_are_embedded_by_the_same_step(
    store, config, embedder, corpus
):
    """A change saved mid-build: the automation counts the step's materialization as handling
    it, so the step itself must catch up, or the change waits for the next one."""
    from embeddings_platform.core.models import load_tokenizer, model_version
    from embeddings_platform.core.pipeline import sync_chunks, sync_embeddings, take_snapshot

    source, model = config.sources[0], config.models[0]
    version = model_version(model)
    first = _refresh(store, config, embedder)

    def snapshot_and_chunks(run_id):
        snap = take_snapshot(store, source, run_id)
        sync_chunks(
            store,
            "notes",
            snap.snapshot_id,
            model,
            version.chunking_strategy,
            load_tokenizer(model),
        )

    (corpus / "owls.md").write_text("Owls hunt at night with silent flight.")
    snapshot_and_chunks("change-1")

    class ChangingMidway:
        """Embeds like the hashing model; its first call saves another change."""

        def __init__(self):
            self.inner, self.dimension, self.calls = embedder, embedder.dimension, 0

        def embed(self, texts):
            self.calls += 1
            if self.calls == 1:
                (corpus / "bats.md").write_text("Bats echolocate insects in the dark.")
                snapshot_and_chunks("change-2")
            return self.inner.embed(texts)

    report = sync_embeddings(store, "notes", version, ChangingMidway, "embed-run")
    ids = {r["doc_id"] for r in Store.read(store.table(first.embeddings.table_name)).to_pylist()}
    assert {"owls.md", "bats.md"} <= ids
    assert report.passes == 2 and report.embedded == 2
    chunk_ids = {r["chunk_id"] for r in Store.read(store.table(_chunks_table(first))).to_pylist()}
    vector_ids = {r["chunk_id"] for r in _vectors(store, first)}
    assert vector_ids == chunk_ids  # consistent: the blocking check lets it serve
