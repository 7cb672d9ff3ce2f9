"""The cleanup job compacts the tables every refresh appends to, and leaves the vectors tables
(whose index segments index maintenance keeps whole) alone."""

from __future__ import annotations

from embeddings_platform.core import retention
from embeddings_platform.core.config import load_config
from embeddings_platform.core.indexing import fragments, fts_index, segments
from embeddings_platform.core.manifests import manifest
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store
from embeddings_platform.testing import write_config, write_corpus

DOCS = {f"doc{i:02d}.md": f"Note {i} is about lighthouse number {i}." for i in range(12)}


def _refresh(config, store, run_id):
    model = config.models[0]
    return refresh(
        store,
        config.sources[0],
        model,
        config.serving,
        lambda: HashingEmbedder(model.dimension),
        run_id,
    )


def _top(config, store, text):
    embedder = HashingEmbedder(config.models[0].dimension)
    hits = search(store, "notes", text, 3, lambda _v: embedder.embed([text])[0])
    return hits[0].doc_id


def test_cleanup_compacts_the_tables_refreshes_append_to_and_nothing_is_lost(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, DOCS)
    config = load_config(
        write_config(
            tmp_path / "platform.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}]
        )
    )
    store = Store(config.storage_uri)
    for i in range(5):  # each refresh appends to the snapshot, manifest, text and chunk tables
        (corpus / f"doc{i:02d}.md").write_text(f"Note {i} now describes a harbour crane {i}.")
        last = _refresh(config, store, f"r{i}")
    vectors = store.table(last.index.table_name)
    before = {
        name: fragments(store.open_table(name))
        for name in store.table_names()
        if not name.startswith("vectors__")
    }
    grown = {name for name, count in before.items() if count > 2}
    assert {"snapshots", "snapshot_documents"} <= grown, before
    vector_fragments, fts_segments = fragments(vectors), segments(vectors, fts_index(vectors))
    rows = {name: store.open_table(name).count_rows() for name in before}
    snapshot = store.latest_snapshot("notes")["snapshot_id"]
    documents = manifest(store, "notes", snapshot).sort_by("doc_id").to_pylist()

    monkeypatch.setattr(retention, "BOOKKEEPING_FRAGMENTS", 2)
    report = retention.cleanup(store, config)

    assert report.fragments_compacted >= sum(before[name] - 1 for name in grown)
    for name in grown:
        assert fragments(store.open_table(name)) <= 2, name
    assert {name: store.open_table(name).count_rows() for name in before} == rows
    assert manifest(store, "notes", snapshot).sort_by("doc_id").to_pylist() == documents
    vectors = store.table(last.index.table_name)  # untouched: index segments stay whole
    assert fragments(vectors) == vector_fragments
    assert segments(vectors, fts_index(vectors)) == fts_segments
    # the next refresh works on the compacted tables and embeds only what changed
    (corpus / "doc07.md").write_text("Note 7 is now about a windmill made of glass.")
    after = _refresh(config, store, "r9")
    assert after.embeddings.embedded == 1 and after.index.pointer_moved
    assert _top(config, store, "windmill made of glass") == "doc07.md"
    assert _top(config, store, "harbour crane 3") == "doc03.md"
