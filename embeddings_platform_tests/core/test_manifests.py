"""Snapshot manifests as a full manifest plus deltas (core/manifests.py): a delta holds only what
changed, content that comes back is written in full, chains are cut after MAX_CHAIN deltas, and
a snapshot killed before its snapshot row is written again without duplicates."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from embeddings_platform.core import store as store_module
from embeddings_platform.core.manifests import (
    KEYED_ROWS,
    Previous,
    manifest,
    newest,
    snapshot_rows,
)
from embeddings_platform.core.stages import snapshot_write
from embeddings_platform.core.store import Store

from .sources_shared import Cell

NOTES = {f"n{i}.md": f"Note {i} about tides, gulls and harbour walls." for i in range(6)}


@pytest.fixture
def cell(tmp_path) -> Cell:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in NOTES.items():
        (corpus / name).write_text(text)
    return Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)})


def _write(cell: Cell, name: str, text: str) -> None:
    (cell.source.path / name).write_text(text)


def _rows(cell: Cell, table: str, snapshot_id: str) -> int:
    rows = Store.read(cell.store.open_table(table), ["snapshot_id"]).column("snapshot_id")
    return rows.to_pylist().count(snapshot_id)


def test_each_key_is_read_from_the_newest_snapshot_of_its_chain_that_has_it():
    rows = pa.table(
        {
            "snapshot_id": ["s0", "s0", "s0", "s1", "s1", "s2", "s2"],
            "doc_id": ["a", "b", "c", "b", "d", "b", "c"],
            "version": [0, 0, 0, 1, 1, 2, 2],
        }
    )
    read = newest(rows, "doc_id", ["s0", "s1", "s2"])
    assert read.column_names == rows.column_names
    assert sorted(zip(read["doc_id"].to_pylist(), read["version"].to_pylist())) == [
        ("a", 0),
        ("b", 2),
        ("c", 2),
        ("d", 1),
    ]


def test_a_delta_holds_only_what_changed_and_reads_back_whole(cell):
    first = cell.snapshot()
    _write(cell, "n1.md", "Note 1, now about storms.")
    second = cell.snapshot()
    assert _rows(cell, "snapshot_documents", first.snapshot_id) == 6
    assert _rows(cell, "snapshot_documents", second.snapshot_id) == 1  # the edited document
    assert _rows(cell, "snapshot_entries", second.snapshot_id) == 1  # its new stamp
    latest = snapshot_rows(cell.store, "notes")[-1]
    assert (latest["base_snapshot_id"], latest["chain_length"]) == (first.snapshot_id, 1)
    manifest = cell.store.snapshot_manifest("notes", second.snapshot_id)
    assert set(manifest) == set(NOTES)
    assert manifest["n0.md"] == cell.store.snapshot_manifest("notes", first.snapshot_id)["n0.md"]


def test_content_that_comes_back_is_written_in_full(cell):
    first = cell.snapshot()
    _write(cell, "n1.md", "Note 1, now about storms.")
    (cell.source.path / "n2.md").unlink()
    cell.snapshot()
    _write(cell, "n1.md", NOTES["n1.md"])
    _write(cell, "n2.md", NOTES["n2.md"])
    back = cell.snapshot()
    assert back.snapshot_id == first.snapshot_id and back.is_new
    latest = snapshot_rows(cell.store, "notes")[-1]
    assert latest["base_snapshot_id"] is None  # in full: no chain through an id seen before
    assert set(cell.manifest()) == set(NOTES)
    _write(cell, "n3.md", "Note 3, now about fog.")  # and deltas go on from it
    assert set(cell.manifest()) == set(NOTES) and not cell.snapshot().full_read


def test_a_chain_is_cut_after_max_chain_deltas(cell, monkeypatch):
    monkeypatch.setattr(snapshot_write, "MAX_CHAIN", 2)
    cell.snapshot()
    lengths = []
    for i in range(4):
        _write(cell, "n4.md", f"Note 4, version {i}, about piers.")
        cell.snapshot()
        lengths.append(snapshot_rows(cell.store, "notes")[-1]["chain_length"])
    assert lengths == [1, 2, 0, 1]
    assert set(cell.manifest()) == set(NOTES)
    text = cell.store.texts([cell.manifest()["n4.md"]])
    assert list(text.values()) == ["Note 4, version 3, about piers."]


def test_a_snapshot_killed_before_its_row_leaves_rows_that_are_never_read(cell, monkeypatch):
    cell.snapshot()
    _write(cell, "n5.md", "Note 5, now about ferries.")
    real = store_module.Store.append

    def dies_at_the_snapshot_row(self, table, rows):
        if table.name == "snapshots":
            raise KeyboardInterrupt("killed")
        return real(self, table, rows)

    monkeypatch.setattr(store_module.Store, "append", dies_at_the_snapshot_row)
    with pytest.raises(KeyboardInterrupt):
        cell.snapshot()
    monkeypatch.undo()
    assert len(snapshot_rows(cell.store, "notes")) == 1  # invisible: no snapshot row
    again = cell.snapshot()
    assert again.is_new and again.changed == 1
    assert _rows(cell, "snapshot_documents", again.snapshot_id) == 2  # the killed write's too
    read = manifest(cell.store, "notes", again.snapshot_id)
    assert sorted(read.column("doc_id").to_pylist()) == sorted(NOTES)  # once each
    previous = Previous.load(cell.store, "notes")
    assert previous.documents("doc_id", {"n5.md"}).num_rows == 1
    texts = cell.store.open_table("document_texts").to_arrow().column("content_sha256")
    assert texts.to_pylist().count(cell.manifest()["n5.md"]) == 1  # stored once, by both runs
    _write(cell, "n5.md", "Note 5, now about buoys.")
    assert cell.snapshot().changed == 1 and set(cell.manifest()) == set(NOTES)


def test_a_delta_on_a_manifest_written_before_rows_carried_their_key(cell):
    """A store written before manifest rows carried their snapshot row's key: its rows are read
    by snapshot id, and deltas with keys go on from it."""
    first = cell.snapshot()
    for name in ("snapshot_documents", "snapshot_entries", "snapshots"):  # as written before
        rows = cell.store.open_table(name).to_arrow()
        if name == "snapshots":
            states = [json.loads(s) for s in rows.column("state_json").to_pylist()]
            assert all(state.pop(KEYED_ROWS) for state in states)
            column, values = "state_json", pa.array([json.dumps(s) for s in states])
        else:
            column, values = "snapshot_key", pa.nulls(rows.num_rows, pa.string())
        rows = rows.set_column(rows.schema.get_field_index(column), column, values)
        cell.store.drop_table(name)
        cell.store.db.create_table(name, rows)
    assert set(cell.store.snapshot_manifest("notes", first.snapshot_id)) == set(NOTES)
    _write(cell, "n2.md", "Note 2, now about dunes.")
    edit = cell.snapshot()
    assert edit.is_new and not edit.full_read and edit.changed == 1
    assert snapshot_rows(cell.store, "notes")[-1]["base_snapshot_id"] == first.snapshot_id
    read = manifest(cell.store, "notes", edit.snapshot_id, ["doc_id", "content_sha256"])
    assert sorted(read.column("doc_id").to_pylist()) == sorted(NOTES)
    texts = cell.store.texts(read.column("content_sha256").to_pylist())
    assert "Note 2, now about dunes." in texts.values()


def test_a_store_from_before_deltas_gets_the_columns_and_one_full_read(cell):
    """Tables made before manifests had deltas lack their columns: they are added (empty), the
    old snapshot is read as a full manifest, and the next snapshot reads the source in full."""
    from embeddings_platform.core.schemas import QUARANTINE, SNAPSHOT_DOCUMENTS, SNAPSHOTS

    first = cell.snapshot()
    old_columns = {
        "snapshots": SNAPSHOTS.names[:12],
        "snapshot_documents": SNAPSHOT_DOCUMENTS.names[:6],
        "quarantine": QUARANTINE.names[:8],
    }
    for name, columns in old_columns.items():  # rewrite each table as the old code made it
        if not cell.store.has_table(name):
            continue
        rows = cell.store.open_table(name).to_arrow().select(columns)
        cell.store.drop_table(name)
        cell.store.db.create_table(name, rows if rows.num_rows else rows.schema)
    assert "content_sum" not in cell.store.open_table("snapshots").schema.names
    assert set(cell.store.snapshot_manifest("notes", first.snapshot_id)) == set(NOTES)
    again = cell.snapshot()
    assert again.full_read and not again.is_new and again.documents_read == len(NOTES)
    _write(cell, "n0.md", "Note 0, now about lighthouses.")
    edit = cell.snapshot()
    assert edit.is_new and edit.full_read  # the old snapshot has no content sum to build on
    assert "content_sum" in cell.store.open_table("snapshots").schema.names
    _write(cell, "n1.md", "Note 1, now about piers.")
    assert not cell.snapshot().full_read  # from here on, partial reads
