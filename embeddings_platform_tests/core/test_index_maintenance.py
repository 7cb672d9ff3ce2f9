"""Incremental index maintenance: a refresh adds what changed to the trained indexes; the vector
index is retrained only past serving.retrain_fraction or after a failed ann_recall check."""

from __future__ import annotations

import importlib

import pytest

from embeddings_platform.core import checks, index_maintenance, indexing
from embeddings_platform.core.config import ChecksConfig, ConfigError, load_config
from embeddings_platform.core.indexing import ann_plan, build_vector_index, fts_index, vector_index
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.pipeline import build_serving_index, refresh
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store
from embeddings_platform.core.table_versions import last_data_version
from embeddings_platform.testing import write_config, write_corpus

# the module, not the function the checks package re-exports under the same name
ann_recall_module = importlib.import_module("embeddings_platform.core.checks.ann_recall")
TOPICS = ["astronomy", "botany", "cooking", "geology", "music", "sailing", "chess"]
DOCS = {
    f"doc{i:03d}.md": f"Note {i} on {TOPICS[i % 7]}: entry {i} keeps words like item{i} and "
    f"{TOPICS[(i * 3) % 7]} together."
    for i in range(120)
}


MODES = ("vector", "fts")


def _setup(tmp_path, **serving):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, DOCS)
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus)}],
        serving={"ann_min_rows": 50, **serving},
    )
    config = load_config(path)
    return config, Store(config.storage_uri), corpus


def _refresh(config, store, run_id):
    return refresh(
        store,
        config.sources[0],
        config.models[0],
        config.serving,
        lambda: HashingEmbedder(config.models[0].dimension),
        run_id,
    )


def _trained_index(store, report) -> tuple[str, object]:
    """The identity of the trained vector index: its uuid and creation time."""
    index = vector_index(store.table(report.index.table_name))
    return index.index_uuid, index.created_at


def _search(config, store, text, mode=None) -> list[str]:
    embedder = HashingEmbedder(config.models[0].dimension)
    hits = search(store, "notes", text, 5, lambda _v: embedder.embed([text])[0], mode=mode)
    return [h.doc_id for h in hits]


def test_an_incremental_refresh_joins_the_trained_index_and_search_sees_it(tmp_path):
    config, store, corpus = _setup(tmp_path)
    first = _refresh(config, store, "r1")
    assert first.index.maintenance.action == "built" and first.index.index_type == "IvfSq"
    trained = _trained_index(store, first)
    (corpus / "doc007.md").write_text("Note 7 now covers zeppelins and their hydrogen cells.")
    (corpus / "new.md").write_text("A brand new note about quasicrystals in meteorites.")
    (corpus / "doc011.md").unlink()  # its words: "item11"
    second = _refresh(config, store, "r2")
    m = second.index.maintenance
    assert m.action == "incremental", m
    assert m.unindexed_before > 0 and m.unindexed_after == 0
    assert m.rows_since_training == second.embeddings.embedded > 0
    assert _trained_index(store, second) == trained  # not retrained
    table = store.open_table(second.index.table_name, second.index.table_version)
    for index in (vector_index(table), fts_index(table)):
        assert table.index_stats(index.name).num_unindexed_rows == 0  # the pinned version
    for mode in ("fts", "vector", "hybrid"):
        assert _search(config, store, "zeppelins hydrogen", mode)[0] == "doc007.md"
        assert _search(config, store, "quasicrystals meteorites", mode)[0] == "new.md"
        assert "doc011.md" not in _search(config, store, "item11 entry 11", mode)


def test_rows_written_since_training_past_the_fraction_retrain(tmp_path):
    config, store, corpus = _setup(tmp_path, retrain_fraction=0.1)
    trained = _trained_index(store, _refresh(config, store, "r1"))
    (corpus / "doc001.md").write_text("One changed note about kayaks.")
    small = _refresh(config, store, "r2")  # 1 of 120 documents: below the fraction
    assert small.index.maintenance.action == "incremental"
    assert _trained_index(store, small) == trained
    for i in range(2, 30):  # a quarter of the documents
        (corpus / f"doc{i:03d}.md").write_text(f"Rewritten note {i} about glaciers and fjords {i}.")
    large = _refresh(config, store, "r3")
    m = large.index.maintenance
    assert m.action == "retrained" and "serving.retrain_fraction 0.1" in m.reason, m
    assert m.rows_since_training == 0 and m.unindexed_after == 0
    assert _trained_index(store, large) != trained
    assert _search(config, store, "glaciers fjords 17")[0] == "doc017.md"
    again = _refresh(config, store, "r4")  # nothing changed: nothing to do, nothing committed
    assert again.index.maintenance.action == "none"
    assert again.index.table_version == large.index.table_version


def _low_recall(query, plan, limit):
    """Serving settings of an index that returns the wrong neighbours (stands in for a drifted
    index): only chunks of one document are searched."""
    return query.where("doc_id = 'doc000.md'")


def test_a_failed_ann_recall_check_retrains_only_an_index_that_took_rows_in(tmp_path, monkeypatch):
    config, store, corpus = _setup(tmp_path)
    trained = _trained_index(store, _refresh(config, store, "r1"))
    monkeypatch.setattr(ann_recall_module, "tuned", _low_recall)
    floor = ChecksConfig(ann_sample=20)
    fresh = checks.ann_recall(store, "notes", config_version(config), floor)
    assert fresh.severity == checks.ERROR and fresh.recall < 0.95
    (corpus / "doc003.md").write_text("Note 3 is about lighthouses now.")
    after_fresh = _refresh(config, store, "r2")
    # measured on the freshly trained index: retraining it would change nothing
    assert after_fresh.index.maintenance.action == "incremental"
    assert _trained_index(store, after_fresh) == trained
    drifted = checks.ann_recall(store, "notes", config_version(config), floor)
    assert drifted.severity == checks.ERROR and drifted.table_version > fresh.table_version
    monkeypatch.undo()
    (corpus / "doc004.md").write_text("Note 4 is about windmills now.")
    retrained = _refresh(config, store, "r3")
    m = retrained.index.maintenance
    assert m.action == "retrained" and "ANN recall@10" in m.reason, m
    assert _trained_index(store, retrained) != trained
    assert checks.ann_recall(store, "notes", config_version(config), floor).severity == checks.OK
    assert _refresh(config, store, "r4").index.maintenance.action == "none"  # request consumed


def config_version(config) -> str:
    from embeddings_platform.core.models import model_version

    return model_version(config.models[0]).version_id


def test_compaction_keeps_the_versions_serving_and_rollback_need(tmp_path):
    config, store, corpus = _setup(tmp_path, retrain_fraction=1.0)
    first = _refresh(config, store, "r1")
    (corpus / "doc005.md").write_text("Note 5 turned to origami cranes.")
    (corpus / "doc006.md").unlink()
    write_corpus(  # enough new chunks for several embedding batches: several fragments
        corpus, {f"extra{i}.md": f"Extra note {i} about tides. " * 4 for i in range(150)}
    )
    second = _refresh(config, store, "r2")
    m = second.index.maintenance
    assert m.action == "incremental" and m.fragments_compacted > 1 and m.unindexed_after == 0
    # compaction and index commits change no rows: the embeddings data version stays put
    table = store.table(second.index.table_name)
    assert table.version > second.embeddings.table_version
    assert last_data_version(table) == second.embeddings.table_version
    assert _search(config, store, "origami cranes")[0] == "doc005.md"
    assert "doc006.md" not in _search(config, store, "item6 entry 6")
    # the version pinned before is still readable and tagged: a rollback target survives
    assert store.target_exists(first.index.table_name, first.index.table_version)
    old = store.open_table(first.index.table_name, first.index.table_version)
    assert old.count_rows() == first.index.rows
    assert "doc006.md" in set(old.to_arrow().column("doc_id").to_pylist())


def _deltas(store, report) -> list[int]:
    table = store.table(report.table_name)
    return [indexing.deltas(table, index) for index in (vector_index(table), fts_index(table))]


def test_refreshes_leave_delta_indexes_to_a_merge_run_which_pins_the_merged_version(
    tmp_path, monkeypatch
):
    config, store, corpus = _setup(tmp_path)
    trained = _trained_index(store, _refresh(config, store, "r1"))
    monkeypatch.setattr(indexing, "DELTA_HARD_LIMIT", 3)
    seen = []
    for i in range(4):
        (corpus / f"doc{20 + i:03d}.md").write_text(f"Note {20 + i} became a poem about {i} owls.")
        report = _refresh(config, store, f"r{i + 2}").index
        assert report.maintenance.action == "incremental" and report.pointer_moved
        seen.append(_deltas(store, report))
        assert report.maintenance.deltas_after == max(seen[-1])
    # a refresh adds a delta per index and merges them only past the hard limit
    assert seen == [[1, 1], [2, 2], [3, 3], [1, 1]]
    for i in range(2):  # 3 deltas, under the hard limit
        (corpus / f"doc{30 + i:03d}.md").write_text(f"Note {30 + i} is a song about {i} larks.")
        _refresh(config, store, f"s{i}")
    before = [_search(config, store, q, m) for q in ("poem 3 owls", "song 1 larks") for m in MODES]
    merged = build_serving_index(
        store, "notes", config_version(config), config.serving, "merge", True, merge_deltas=True
    )
    assert merged.maintenance.action == "merged" and merged.maintenance.deltas_after == 1
    assert _deltas(store, merged) == [1, 1]
    # the merged version is what serves, answers as before, and the trained index is untouched
    assert merged.pointer_moved and store.pointer("notes")["table_version"] == merged.table_version
    assert [
        _search(config, store, q, m) for q in ("poem 3 owls", "song 1 larks") for m in MODES
    ] == before
    assert before[0][0] == "doc023.md" and before[3][0] == "doc031.md"
    assert _trained_index(store, _refresh(config, store, "r9")) == trained
    # a second merge run finds nothing to merge and changes nothing
    again = build_serving_index(
        store, "notes", config_version(config), config.serving, "merge2", True, merge_deltas=True
    )
    assert again.maintenance.action == "none" and not again.pointer_moved


def test_many_small_refreshes_end_in_one_compacting_retrain(tmp_path, monkeypatch):
    config, store, corpus = _setup(tmp_path)
    first = _refresh(config, store, "r1")
    monkeypatch.setattr(index_maintenance, "MAX_FRAGMENTS", 2)
    (corpus / "doc030.md").write_text("Note 30 is about kites.")
    small = _refresh(config, store, "r2").index  # the table now has 2 fragments
    assert small.maintenance.action == "incremental"
    (corpus / "doc031.md").write_text("Note 31 is about marbles.")
    report = _refresh(config, store, "r3").index
    assert (
        report.maintenance.action == "retrained" and "data fragments" in report.maintenance.reason
    )
    assert report.maintenance.fragments_compacted >= 2
    assert indexing.fragments(store.table(report.table_name)) == 1
    assert _search(config, store, "kites")[0] == "doc030.md"
    assert store.target_exists(first.index.table_name, first.index.table_version)


def test_a_table_indexed_with_an_older_default_is_retrained_with_the_new_one(tmp_path):
    config, store, corpus = _setup(tmp_path)
    first = _refresh(config, store, "r1")
    table = store.table(first.index.table_name)
    build_vector_index(table, ann_plan(table.count_rows(), 50, "IVF_HNSW_SQ"))
    (corpus / "doc002.md").write_text("Note 2 is about bees.")
    report = _refresh(config, store, "r2").index
    assert report.maintenance.action == "retrained" and report.index_type == "IvfSq"
    assert "index type IVF_HNSW_SQ -> IVF_SQ" in report.maintenance.reason


def test_a_table_that_shrinks_below_ann_min_rows_drops_its_vector_index(tmp_path):
    config, store, corpus = _setup(tmp_path)
    _refresh(config, store, "r1")
    for name in list(DOCS)[10:]:
        (corpus / name).unlink()
    report = _refresh(config, store, "r2")
    assert report.index.index_type == "exact" and report.index.maintenance.action == "retrained"
    assert _search(config, store, "item3 entry 3")[0] == "doc003.md"


@pytest.mark.parametrize("value", [0, -0.1, 1.5, True, "a lot"])
def test_retrain_fraction_must_be_a_share_above_zero(tmp_path, value):
    path = write_config(
        tmp_path / "p.yaml",
        [{"name": "n", "kind": "folder", "path": str(tmp_path)}],
        serving={"retrain_fraction": value},
    )
    with pytest.raises(ConfigError, match="serving.retrain_fraction"):
        load_config(path)


def test_retrain_fraction_defaults_to_a_fifth(tmp_path):
    path = write_config(tmp_path / "p.yaml", [{"name": "n", "kind": "folder", "path": "."}])
    assert load_config(path).serving.retrain_fraction == 0.2
