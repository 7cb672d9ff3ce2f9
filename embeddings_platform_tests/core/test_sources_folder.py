"""The folder kind's partial reads: a snapshot re-reads only the files whose stamp (size,
inode, times) moved, carries the rest over unread with their quarantine rows, and gives the id a
full read would; a watched folder is not walked again until its last walk is too old."""

from __future__ import annotations

import os
import time

from embeddings_platform.core.documents import read_source
from embeddings_platform.core.refresh import source_fingerprint
from embeddings_platform.core.sources import watch

from .sources_shared import Cell, until, write_files

TEXT = "Note {} about the harbour and its boats."
FILES = {f"{d}/{n}.md": TEXT.format(f"{d}{n}") for d in "ab" for n in range(5)}


def test_a_snapshot_re_reads_only_the_files_whose_stamp_moved(tmp_path, opened):
    corpus = tmp_path / "corpus"
    write_files(corpus, {**FILES, "a/empty.md": "   "})
    cell = Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)})
    first = cell.snapshot()
    assert (first.documents, len(first.quarantined), len(opened)) == (10, 1, 11)

    opened.clear()
    os.utime(corpus / "a" / "1.md")  # touched, same bytes: read again, nothing new
    touched = cell.snapshot()
    assert (opened, touched.is_new) == (["a/1.md"], False)

    opened.clear()
    (corpus / "a" / "2.md").write_text("Note a2, rewritten about lighthouses.")
    (corpus / "b" / "3.md").unlink()
    (corpus / "b" / "new.md").write_text("A new note about ferries.")
    edit = cell.snapshot()
    assert sorted(opened) == ["a/1.md", "a/2.md", "b/new.md"]  # a/1.md's stamp: still unrecorded
    assert (edit.added, edit.changed, edit.removed, edit.documents) == (1, 1, 1, 10)
    assert [q.doc_id for q in edit.quarantined] == ["a/empty.md"]  # carried over, unread
    assert edit.snapshot_id == source_fingerprint(cell.source, cell.config.documents)
    assert set(cell.manifest()) == (set(FILES) - {"b/3.md"}) | {"b/new.md"}

    opened.clear()
    assert not cell.snapshot().is_new and opened == []
    assert cell.snapshot(full=True).snapshot_id == edit.snapshot_id
    assert len(opened) == 11


def test_changed_document_rules_read_everything_again(tmp_path, opened):
    corpus = tmp_path / "corpus"
    write_files(corpus, FILES)
    source = {"name": "notes", "kind": "folder", "path": str(corpus)}
    cell = Cell(tmp_path, source)
    cell.snapshot()
    opened.clear()
    strict = Cell(tmp_path, source, documents={"max_document_bytes": 30})
    report = strict.snapshot()
    assert report.full_read and len(opened) == 10
    assert report.documents == 0 and len(report.quarantined) == 10  # each is over 30 bytes


def test_a_watched_folder_is_not_walked_again_until_its_listing_is_too_old(
    tmp_path, walks, monkeypatch
):
    corpus = tmp_path / "corpus"
    write_files(corpus, FILES)
    source = Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)}).source
    first = source.signature()  # a walk, then the folder is watched
    assert source.signature() == first and len(walks) == 2  # the first walk under watch
    assert source.signature() == first and len(walks) == 2  # unchanged: no walk

    read_source(source)  # files opened and read (a snapshot run): no change
    time.sleep(0.2)
    walks.clear()
    assert source.signature() == first and walks == []

    seen = watch._watches[os.path.realpath(corpus)]
    before = seen.events
    (corpus / "b" / "4.md").write_text("Note b4, rewritten about a storm at sea.")
    until(lambda: seen.events > before)
    changed = source.signature()  # the walk's digest and the watcher's count: no walk
    assert changed.startswith(first) and changed != first and walks == []
    assert source.signature() == changed and walks == []

    monkeypatch.setattr(watch, "MAX_AGE_SECONDS", 0.0)  # never trusted longer than this
    walked = source.signature()
    assert walked not in (first, changed) and len(walks) == 1
