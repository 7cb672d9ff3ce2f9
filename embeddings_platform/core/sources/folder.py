"""`folder`: the text, Markdown, reStructuredText and HTML files under a folder.

Doc ids are paths relative to the folder, so a shard lists every path but reads only its own
files (a path's hash decides). Every read is bounded; links are followed only
inside the folder; hidden files and folders are skipped unless `documents.include_hidden`.
Each file is an entry stamped with its size, inode and times (one stat, no open): the sensor
digests the listing (a large folder is watched between ticks instead, watch.py), and a snapshot
reads again only the files whose stamp moved, taking the stamps from the watcher's journal when
it can trust it (journal.py, journaled.py) instead of a walk.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from ..sharding import parse_key
from . import journal, journaled, watch
from .base import (
    OPEN_FLAGS,
    Changes,
    ConfigPath,
    PreviousRead,
    RawDocument,
    SourceSettings,
    Unusable,
    rejected,
    source_error,
)
from .listing import FolderListing, Listed, stamps_digest

FOLDER_SUFFIXES = (".md", ".txt", ".rst", ".html", ".htm")
_FILE_TYPES = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


@source_kind("folder")
@settings(config=STRICT, kw_only=True)
class FolderSource(SourceSettings):
    kind: Literal["folder"] = "folder"
    entry_is_doc_id = True
    path: ConfigPath

    def check(self) -> None:
        if not self.path.exists():
            raise source_error(
                self, "path", f"{self.path} does not exist; fix the path or create it"
            )
        if not self.path.is_dir():
            raise source_error(
                self, "path", f"{self.path} is a file; a folder source needs a folder"
            )

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return self.changes(None, documents).documents

    def changes(self, previous: PreviousRead | None, documents: DocumentsConfig) -> Changes:
        """The files whose stamp differs from the last snapshot's (all of them without one),
        compared in Arrow: only the files that moved become objects. After a first snapshot the
        folder comes from the watcher's journal when it is trusted (journal.py), else from a
        walk; a snapshot built on the same generation of the journal compares only the paths
        journaled since (journaled.changes), the others are as that generation's walk found."""
        root = str(_folder_root(self))
        hidden = documents.include_hidden
        generation = None
        if previous is not None:
            generation = journal.current_generation(root, watch.MAX_AGE_SECONDS)
        if generation is not None and previous.state.get("journal") == generation.tag:
            changed = journaled.changes(root, generation, hidden)
            if changed is not None:
                return self._changes_since(previous, *changed, generation.tag, documents)
        listing = journaled.listing(root, generation, hidden) if generation else None
        state = {"journal": generation.tag} if listing is not None else {}
        listing = listing or _listing(root, hidden)
        own, keys, stamps = _own_entries(self, listing)
        if previous is None:
            order = pc.sort_indices(keys).to_numpy()
            chosen = zip(keys.take(order).to_pylist(), listing.entries(own[order]))
            stamped = dict(zip(keys.to_pylist(), stamps.to_pylist()))
            return Changes(read_folder(self, chosen, documents), None, stamped, state)
        before = previous.entries()
        before = before.filter(pc.is_valid(before.column("stamp"))).combine_chunks()
        entries, recorded = before.column("entry").combine_chunks(), before.column("stamp")
        at = pc.index_in(keys, value_set=entries)  # each file's row in the last snapshot
        same = pc.fill_null(pc.equal(recorded.combine_chunks().take(at), stamps), False)
        moved = pc.indices_nonzero(pc.invert(same)).to_numpy()
        kept = np.zeros(len(entries), dtype=bool)
        kept[pc.drop_null(at).to_numpy()] = True
        gone = entries.filter(pa.array(~kept)).to_pylist()
        return self._moved(listing, own, keys, stamps, moved, gone, state, documents)

    def _changes_since(self, previous, listing, ended, tag, documents) -> Changes:
        """Changes from the entries that may differ from the last snapshot's generation."""
        own, keys, stamps = _own_entries(self, listing)
        ended = {key for key in ended if self.holds(key)}
        recorded = previous.stamps_of(set(keys.to_pylist()) | ended)
        now = zip(keys.to_pylist(), stamps.to_pylist())
        moved = np.array([i for i, (k, s) in enumerate(now) if recorded.get(k) != s], np.int64)
        gone = sorted(key for key in ended if key in recorded)
        return self._moved(listing, own, keys, stamps, moved, gone, {"journal": tag}, documents)

    def _moved(self, listing, own, keys, stamps, moved, gone, state, documents) -> Changes:
        moved = moved[pc.sort_indices(keys.take(moved)).to_numpy()] if len(moved) else moved
        moved_keys = keys.take(moved).to_pylist()
        touched = dict(zip(moved_keys, stamps.take(moved).to_pylist())) | dict.fromkeys(gone)
        chosen = zip(moved_keys, listing.entries(own[moved]))
        return Changes(read_folder(self, chosen, documents), set(touched), touched, state)

    def signature(self) -> str | None:
        """The listing's stamps, hidden files included (a superset: no change is missed); a
        large folder is watched between ticks instead of walked (watch.py)."""
        if not os.path.isdir(self.path):
            return None
        root = os.path.realpath(self.path)
        if parse_key(self.name).count > 1:  # a shard: only its own files' stamps (not watched)
            return _shard_digest(self, root)
        return watch.watched_signature(root, lambda: _listing(root, True))


def _own_entries(source: "FolderSource", listing: FolderListing):
    """(listing positions, doc ids, stamps) of this partition's files: a shard keeps only the
    paths its hash gives it, so other shards' files stay unread."""
    keys, stamps = listing.keys, listing.stamps()
    if parse_key(source.name).count == 1:
        return np.arange(len(keys)), keys, stamps
    own = np.flatnonzero([source.holds(key) for key in keys.to_pylist()])
    return own, keys.take(own), stamps.take(own)


def _shard_digest(shard: "FolderSource", root: str) -> str:
    """A shard's signature: another shard's file changing does not make this one re-read."""
    _, keys, stamps = _own_entries(shard, _listing(root, True))
    return stamps_digest(zip(keys.to_pylist(), stamps.to_pylist()))


def _listing(root: str, include_hidden: bool) -> FolderListing:
    """A walk of the folder: one stat per file."""
    return FolderListing.walk(root, include_hidden)


def _folder_root(source: FolderSource) -> Path:
    root = Path(os.path.realpath(source.path))
    if not root.exists():
        raise source_error(
            source, "path", f"{source.path} does not exist; fix the path or create it"
        )
    if not root.is_dir():
        raise source_error(
            source, "path", f"{source.path} is a file; a folder source needs a folder"
        )
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise source_error(
            source, "path", f"{source.path} cannot be listed: {exc.strerror}"
        ) from exc
    return root


def _target(path: Path, root: Path) -> os.stat_result | None:
    """The stat of what `path` names, following links inside root; None for a folder link."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unusable(
                f"symlink loop: links to {os.readlink(path)}, which leads back to itself"
            ) from exc
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise Unusable(
                f"dangling symlink: links to {os.readlink(path)}, which does not exist"
            ) from exc
        raise Unusable(f"unreadable: {exc.strerror}") from exc
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise Unusable(f"escapes source root: links to {real}")
    if stat.S_ISDIR(info.st_mode):
        return None  # a link to a folder inside root: its files are read where they live
    for is_kind, kind in _FILE_TYPES:
        if is_kind(info.st_mode):
            raise Unusable(f"not a regular file: {kind}")
    return info


def read_folder(
    source: FolderSource, chosen: Iterable[tuple[str, Listed]], documents: DocumentsConfig
) -> Iterator[RawDocument]:
    """The documents of the chosen entries (doc id, where it is from the listing).

    The listing did not follow links into folders, so only an entry that is itself a link can
    lead outside the folder: only links are resolved (realpath) before they are read."""
    documents_root = Path(os.path.realpath(source.path))
    limit = documents.max_document_bytes
    for doc_id, where in chosen:
        if where.problem:
            yield rejected(doc_id, where.problem, entry=doc_id)
            continue
        path = Path(where.path)
        try:
            info = _target(path, documents_root) if where.link else _regular(where.info)
            if info is None or path.suffix.lower() not in FOLDER_SUFFIXES:
                continue  # a folder link, or not a document type this source reads
            if doc_id != where.rel:
                raise Unusable("bad file name: not valid UTF-8; rename the file")
            content = read_bounded(path, limit)
        except Unusable as exc:
            yield rejected(doc_id, str(exc), entry=doc_id)
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the folder
            yield rejected(doc_id, f"unreadable: {type(exc).__name__}: {exc}", entry=doc_id)
            continue
        is_html = path.suffix.lower() in (".html", ".htm")
        yield RawDocument(doc_id, content, {"path": doc_id}, is_html=is_html, entry=doc_id)


def _regular(info: os.stat_result | None) -> os.stat_result:
    """The listing's stat of an entry that is not a link: a special file is unusable."""
    if info is None:
        raise Unusable("unreadable: it vanished after the folder was listed")
    for is_kind, kind in _FILE_TYPES:
        if is_kind(info.st_mode):
            raise Unusable(f"not a regular file: {kind}")
    return info


def read_bounded(path: Path, limit: int) -> bytes:
    """At most limit bytes of a regular file: the size is checked before reading, and the read
    stops one byte past the limit in case the file grew or its size lied."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise Unusable(f"unreadable: {exc.strerror}") from exc
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Unusable("not a regular file: it changed while the source was read")
        if info.st_size > limit:
            raise Unusable(f"too large: {info.st_size} bytes > limit {limit}")
        want = min(info.st_size, limit) + 1  # a buffer of the file's size, not of the limit
        content = handle.read(want)
        if len(content) == want <= limit:  # more than stat said: read on, to the limit at most
            content += handle.read(limit + 1 - want)
    if len(content) > limit:
        raise Unusable(f"too large: more than {limit} bytes (the file grew while it was read)")
    return content
