"""A watched folder's journal (core/sources/journal.py): a snapshot step stats only the paths the
watcher saw change, walks nothing, and records the snapshot a full read would; whenever the
journal cannot be trusted (too old, events lost, the watcher's process dead, the folder replaced,
too much changed, a state folder others can write) the step walks and is just as right."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embeddings_platform.core import manifests
from embeddings_platform.core.refresh import source_fingerprint
from embeddings_platform.core.sources import journal, journaled, watch

from .sources_shared import Cell, until, write_files

TEXT = "Note {} about the harbour, its ferries and the gulls over the pier."
FILES = {f"{d}/{n}.md": TEXT.format(f"{d}{n}") for d in "abc" for n in range(4)}
ROOT = Path(__file__).resolve().parents[2]


def settle(corpus: Path) -> None:
    """Wait until the watcher has seen every event of the writes just made (it batches them)."""
    seen = watch._watches[os.path.realpath(corpus)]
    last = -1
    while seen.events != last:
        last = seen.events
        until(lambda: seen.events != last, 0.8)


@pytest.fixture
def watched(tmp_path, walks, opened):
    """A folder snapshot once, then watched by this process with its walk journaled."""
    corpus = tmp_path / "corpus"
    write_files(corpus, FILES)
    os.symlink("../c/2.md", corpus / "a" / "link.md")
    cell = Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)})
    cell.snapshot()
    cell.source.signature()  # a walk, then watched
    cell.source.signature()  # the first walk under watch: its listing is published
    walks.clear()
    opened.clear()
    return cell, corpus


def full_read_id(cell: Cell) -> str:
    return source_fingerprint(cell.source, cell.config.documents)


def test_a_step_stats_only_what_the_watcher_saw_and_records_what_a_walk_would(
    watched, walks, opened
):
    cell, corpus = watched
    (corpus / "c" / "1.md").write_text("Note c1, rewritten about a storm at sea.")
    (corpus / "a" / "0.md").unlink()
    (corpus / "a" / "new.md").write_text("A new note about the lighthouse keeper.")
    write_files(corpus, {"d/1.md": "A note in a new folder.", "d/x/2.md": "And one below it."})
    (corpus / "b").rename(corpus.with_name("b-out"))  # out of the tree: one event, no file's
    write_files(corpus.with_name("e-in"), {f"{n}.md": TEXT.format(f"e{n}") for n in range(4)})
    corpus.with_name("e-in").rename(corpus / "e")  # moved in: walked
    (corpus / "a" / ".hidden.md").write_text("A hidden note is not a document.")
    settle(corpus)

    report = cell.snapshot()
    assert walks == []  # nothing walked: the journal named what changed
    moved = [f"e/{n}.md" for n in range(4)]
    assert sorted(opened) == sorted(["a/new.md", "c/1.md", "d/1.md", "x/2.md", *moved])
    assert report.documents_read == len(opened)
    assert (report.added, report.changed, report.removed) == (7, 1, 5)
    assert report.snapshot_id == full_read_id(cell)  # what a walk and a full read give


@pytest.fixture
def listed_in_full(monkeypatch) -> list[int]:
    """Every time a step compared the whole folder with the last snapshot (all its entries)."""
    calls: list[int] = []
    real = manifests.Previous.entries

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(manifests.Previous, "entries", counting)
    return calls


def test_a_step_on_the_same_walk_compares_only_what_was_journaled(
    watched, walks, opened, listed_in_full
):
    cell, corpus = watched
    (corpus / "c" / "0.md").write_text("Note c0, rewritten once.")
    settle(corpus)
    cell.snapshot()  # the first on this walk compares the whole folder, no walk
    assert walks == [] and listed_in_full == [1]
    opened.clear(), listed_in_full.clear()
    (corpus / "c" / "1.md").write_text("Note c1, rewritten about a storm at sea.")
    (corpus / "b" / "0.md").unlink()
    write_files(corpus, {"d/1.md": "A note in a new folder.", "a/new.md": "A new note."})
    (corpus / "c" / "2.md").write_text("Note c2, the target of a link, rewritten.")
    settle(corpus)
    report = cell.snapshot()
    assert walks == [] and listed_in_full == []  # only the journaled paths and links compared
    assert sorted(opened) == ["a/link.md", "a/new.md", "c/1.md", "c/2.md", "d/1.md"]
    assert (report.added, report.changed, report.removed) == (2, 3, 1)
    assert report.snapshot_id == full_read_id(cell)
    opened.clear()
    settle(corpus)
    assert not cell.snapshot().is_new and opened == []  # journaled, compared, unchanged


def test_an_edit_before_the_walk_the_journal_starts_from_is_found(tmp_path, walks, opened):
    """The last snapshot was not built on this walk: what changed before it began is in no
    journal, so the step compares the whole folder (and then builds on the walk)."""
    corpus = tmp_path / "corpus"
    write_files(corpus, FILES)
    cell = Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)})
    cell.snapshot()
    (corpus / "a" / "1.md").write_text("Note a1, edited while nothing watched.")
    cell.source.signature(), cell.source.signature()  # watched, then walked under watch
    walks.clear(), opened.clear()
    report = cell.snapshot()
    assert walks == [] and opened == ["a/1.md"] and report.changed == 1
    assert report.snapshot_id == full_read_id(cell)


def test_a_folder_gone_since_the_walk_makes_the_step_compare_the_whole_folder(
    watched, walks, listed_in_full
):
    cell, corpus = watched
    (corpus / "c" / "0.md").write_text("Note c0, rewritten once.")
    settle(corpus)
    cell.snapshot()
    listed_in_full.clear()
    (corpus / "b").rename(corpus.with_name("b-out"))  # one event names the folder, none its files
    settle(corpus)
    report = cell.snapshot()
    assert walks == [] and listed_in_full == [1] and report.removed == 4
    assert report.snapshot_id == full_read_id(cell)


def test_a_link_is_stat_ed_again_though_no_event_names_it(watched, walks, opened):
    cell, corpus = watched
    (corpus / "c" / "2.md").write_text("Note c2, now about the harbour master.")
    settle(corpus)
    report = cell.snapshot()
    assert walks == [] and sorted(opened) == ["a/link.md", "c/2.md"]
    assert report.changed == 2 and report.snapshot_id == full_read_id(cell)


def test_a_file_name_that_is_not_utf8_is_journaled_and_quarantined_as_a_walk_would(watched, walks):
    cell, corpus = watched
    name = os.path.join(os.fsencode(corpus / "a"), b"caf\xe9.md")
    with open(name, "w") as handle:
        handle.write("A note whose name is Latin-1.")
    settle(corpus)
    report = cell.snapshot()
    assert walks == []
    assert [q.reason for q in report.quarantined] == [
        "bad file name: not valid UTF-8; rename the file"
    ]
    assert report.snapshot_id == full_read_id(cell)
    assert cell.source.signature()  # a digest, though a name is not UTF-8


def _too_old(monkeypatch, corpus):
    monkeypatch.setattr(watch, "MAX_AGE_SECONDS", 0.0)


def _events_lost(monkeypatch, corpus):
    watch._watches[os.path.realpath(corpus)].overflow()


def _folder_replaced(monkeypatch, corpus):
    shutil.copytree(corpus, corpus.with_name("copy"), symlinks=True)
    corpus.rename(corpus.with_name("old"))
    corpus.with_name("copy").rename(corpus)
    (corpus / "a" / "3.md").write_text("Note a3 in the new folder, which no watcher sees.")


def _too_much_changed(monkeypatch, corpus):
    monkeypatch.setattr(journaled, "MIN_TRUSTED_PATHS", 0)  # a quarter of 13 entries: 3 paths
    for n in range(4):
        (corpus / "b" / f"{n}.md").write_text(f"Note b{n}, all rewritten.")


def _state_folder_not_private(monkeypatch, corpus):
    journal.state_root().chmod(0o777)


def _journal_damaged(monkeypatch, corpus):
    session = watch._watches[os.path.realpath(corpus)].session
    with open(session.dir / f"journal-{session.published}", "ab") as damaged:
        damaged.write(b"not json\n")


def _journal_names_a_path_outside(monkeypatch, corpus):
    (corpus.parent / "secret.md").write_text("Not below the folder: never a document.")
    session = watch._watches[os.path.realpath(corpus)].session
    with open(session.dir / f"journal-{session.published}", "ab") as outside:
        outside.write(b'"../secret.md"\n')


@pytest.mark.parametrize(
    "break_trust",
    [
        _too_old,
        _events_lost,
        _folder_replaced,
        _too_much_changed,
        _state_folder_not_private,
        _journal_damaged,
        _journal_names_a_path_outside,
    ],
)
def test_an_untrusted_journal_makes_the_step_walk(watched, walks, monkeypatch, break_trust):
    cell, corpus = watched
    (corpus / "c" / "1.md").write_text("Note c1, rewritten about a storm at sea.")
    settle(corpus)
    break_trust(monkeypatch, corpus)
    report = cell.snapshot()
    assert len(walks) == 1
    assert report.changed >= 1 and report.snapshot_id == full_read_id(cell)


def test_lost_events_or_a_replaced_folder_make_the_signature_walk(watched, walks, monkeypatch):
    cell, corpus = watched
    first = cell.source.signature()
    assert walks == []
    _events_lost(monkeypatch, corpus)
    assert cell.source.signature() == first and len(walks) == 1  # walked: nothing changed
    assert cell.source.signature() == first and len(walks) == 1  # trusted again
    _folder_replaced(monkeypatch, corpus)
    assert cell.source.signature() != first and len(walks) == 2


def test_an_inotify_queue_overflow_is_noticed(watched):
    from watchdog.observers import inotify_c

    _, corpus = watched
    seen = watch._watches[os.path.realpath(corpus)]
    before = seen.overflows
    flag = inotify_c.InotifyConstants.IN_Q_OVERFLOW
    events = list(inotify_c.Inotify._parse_event_buffer(struct.pack("iIII", -1, flag, 0, 0)))
    assert events[0][:2] == (-1, flag)  # still passed on to watchdog, which drops it
    assert seen.overflows == before + 1
    assert b"!" in (seen.session.dir / f"journal-{seen.session.published}").read_bytes()


def test_a_journal_that_cannot_be_written_is_dropped_and_steps_walk(watched, walks, monkeypatch):
    cell, corpus = watched
    seen = watch._watches[os.path.realpath(corpus)]

    def disk_full(rel):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(seen.session, "record", disk_full)
    (corpus / "c" / "1.md").write_text("Note c1, rewritten on a full disk.")
    settle(corpus)  # the watcher goes on counting: the signature still moves
    assert seen.session is None and cell.source.signature() != seen.digest
    report = cell.snapshot()
    assert len(walks) == 1 and report.snapshot_id == full_read_id(cell)


def test_a_watcher_whose_thread_stopped_is_replaced_and_its_journal_dropped(watched, walks):
    cell, corpus = watched
    seen = watch._watches[os.path.realpath(corpus)]
    for emitter in list(watch._observer.emitters):
        emitter.stop()
        emitter.join(5)
    (corpus / "c" / "1.md").write_text("Note c1, rewritten while nothing watched.")
    cell.source.signature()
    assert len(walks) == 1 and seen.session is None  # walked, watched anew
    assert watch._watches[os.path.realpath(corpus)] is not seen
    report = cell.snapshot()
    assert len(walks) == 2 and report.snapshot_id == full_read_id(cell)


WATCHER = """
import os, sys, time
from embeddings_platform.core.config import load_config
from embeddings_platform.core.sources import watch
watch.WATCH_AFTER_SECONDS = 0.0
source = load_config(sys.argv[1]).sources[0]
source.signature(); source.signature()
print("ready", flush=True)
time.sleep(600)
"""


def test_the_journal_of_a_watcher_that_died_is_not_trusted(tmp_path, walks, opened):
    """The watcher lives in another process (the sensor's code server), as in production."""
    corpus = tmp_path / "corpus"
    write_files(corpus, FILES)
    cell = Cell(tmp_path, {"name": "notes", "kind": "folder", "path": str(corpus)})
    cell.snapshot()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WATCHER), str(tmp_path / "platform.yaml")],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        walks.clear()
        (corpus / "a" / "1.md").write_text("Note a1, rewritten while the watcher runs.")
        until(lambda: b"a/1.md" in _journals(), 10)
        opened.clear()
        assert cell.snapshot().changed == 1 and walks == [] and opened == ["a/1.md"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (corpus / "a" / "2.md").write_text("Note a2, rewritten after the watcher died.")
    report = cell.snapshot()
    assert len(walks) == 1 and report.changed == 1
    assert report.snapshot_id == full_read_id(cell)


def _journals() -> bytes:
    return b"".join(p.read_bytes() for p in journal.state_root().glob("*/*/journal-*"))
