"""The folder kind's partial reads: a snapshot re-reads only the files whose stamp (size,
inode, times) moved, carries the rest over unread with their quarantine rows, and gives the id a
full read would; a watched folder is not walked again until something below it changes."""

from __future__ import annotations

import os
import time

import pytest

from embeddings_platform.core.documents import read_source
from embeddings_platform.core.refresh import source_fingerprint
from embeddings_platform.core.sources import folder as folder_kind
from embeddings_platform.core.sources import watch

from .sources_shared import Cell

TEXT = "Note {} about the harbour and its boats."
FILES = {f"{d}/{n}.md": TEXT.format(f"{d}{n}") for d in "ab" for n in range(5)}


def write_corpus(folder, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The files the folder kind opens to read (not to stat)."""
    names: list[str] = []
    real = folder_kind.read_bounded

    def counting(path, limit):
        names.append(os.path.relpath(path, path.parents[1]))
        return real(path, limit)

    monkeypatch.setattr(folder_kind, "read_bounded", counting)
    return names


def test_a_snapshot_re_reads_only_the_files_whose_stamp_moved(tmp_path, opened):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, {**FILES, "a/empty.md": "   "})
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
    write_corpus(corpus, FILES)
    source = {"name": "notes", "kind": "folder", "path": str(corpus)}
    cell = Cell(tmp_path, source)
    cell.snapshot()
    opened.clear()
    strict = Cell(tmp_path, source, documents={"max_document_bytes": 30})
    report = strict.snapshot()
    assert report.full_read and len(opened) == 10
    assert report.documents == 0 and len(report.quarantined) == 10  # each is over 30 bytes


@pytest.fixture
def walks(monkeypatch) -> list[str]:
    """Every walk of a folder's listing, and watchers for folders of any size (stopped after)."""
    roots: list[str] = []
    real = folder_kind._listing

    def counting(root, include_hidden):
        roots.append(root)
        return real(root, include_hidden)

    monkeypatch.setattr(folder_kind, "_listing", counting)
    monkeypatch.setattr(watch, "WATCH_AFTER_SECONDS", 0.0)
    yield roots
    watch.stop_watching()


def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_watched_folder_is_walked_again_only_after_a_change(tmp_path, walks, monkeypatch):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, FILES)
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
    _until(lambda: seen.events > before)
    changed = source.signature()
    assert changed != first and len(walks) == 1
    assert source.signature() == changed and len(walks) == 1

    monkeypatch.setattr(watch, "MAX_AGE_SECONDS", 0.0)  # never trusted longer than this
    assert source.signature() == changed and len(walks) == 2
