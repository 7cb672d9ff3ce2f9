"""Incremental refresh by content hash: model calls happen for exactly what changed."""

from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import lineage, search
from embeddings_platform.core.store import LINEAGE_COLUMNS, Store, vectors_table_name


def _refresh(store, config, embedder, run_id="run-1"):
    return refresh(store, config.sources[0], config.models[0], config.serving, lambda: embedder, run_id)


def _vectors(store, report):
    return Store.read(store.table(report.embeddings.table_name)).to_pylist()


def test_second_materialization_embeds_nothing(store, config, embedder):
    first = _refresh(store, config, embedder)
    rows_before = sorted((r["chunk_id"], r["run_id"]) for r in _vectors(store, first))
    calls = embedder.calls
    second = _refresh(store, config, embedder, "run-2")
    assert first.embeddings.embedded == len(rows_before) > 0
    assert embedder.calls == calls  # zero model calls
    assert second.embeddings.embedded == 0 and second.embeddings.deleted == 0
    assert not second.snapshot.is_new
    assert second.index.rebuilt is False and second.index.table_version == first.index.table_version
    assert sorted((r["chunk_id"], r["run_id"]) for r in _vectors(store, second)) == rows_before


def test_changing_one_document_reembeds_only_its_chunks(store, config, embedder, corpus):
    first = _refresh(store, config, embedder)
    before = {r["chunk_id"]: r for r in _vectors(store, first)}
    (corpus / "dogs.txt").write_text("Dogs are loyal companions. A dog barks at the mail carrier every day.")
    texts_before = embedder.texts_embedded
    second = _refresh(store, config, embedder, "run-2")
    after = {r["chunk_id"]: r for r in _vectors(store, second)}
    new_ids = set(after) - set(before)
    assert second.snapshot.changed == 1 and second.snapshot.unchanged == second.snapshot.documents - 1
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
    assert sorted(r["chunk_id"] for r in after) == sorted(r["chunk_id"] for r in before if r["doc_id"] != "cats.md")
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
    assert embedder.texts_embedded - texts_before == len(owl_chunks) == second.embeddings.embedded > 0


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
    from embeddings_platform.core.pipeline import sync_embeddings, sync_chunks, take_snapshot
    from embeddings_platform.core.models import load_tokenizer, model_version

    # new vectors written but the index not rebuilt: readers still see the pinned version
    version = model_version(config.models[0])
    snap = take_snapshot(store, config.sources[0], "r2")
    sync_chunks(store, "notes", snap.snapshot_id, config.models[0], version.chunking_strategy,
                load_tokenizer(config.models[0]))
    sync_embeddings(store, "notes", version, lambda: embedder, "r2")
    hits = search(store, "notes", "owls hoot", 10, lambda _: embedder.embed(["owls hoot"])[0])
    assert "owls.md" not in {h.doc_id for h in hits}
