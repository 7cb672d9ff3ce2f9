"""`folder`: the text, Markdown, reStructuredText and HTML files under a folder.

Doc ids are paths relative to the folder. Every read is bounded; links are followed only
inside the folder; hidden files and folders are skipped unless `documents.include_hidden`.
Each file is an entry stamped with its size, inode and times (one stat, no open): the sensor
digests the listing (a large folder is watched between ticks instead, watch.py), and a snapshot
reads again only the files whose stamp moved.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterator, Literal, NamedTuple

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import (
    OPEN_FLAGS,
    Changes,
    ConfigPath,
    Entry,
    PreviousRead,
    RawDocument,
    SourceSettings,
    Unusable,
    clean_id,
    entry_changes,
    rejected,
    source_error,
)
from .listing import file_stamp, stamps_digest
from .watch import watched_signature

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
        return read_folder(self, self.entries(documents), documents)

    def entries(self, documents: DocumentsConfig) -> dict[str, Entry]:
        """Every file-like entry below the folder with its stamp; no file is opened."""
        root = _folder_root(self)
        return {
            clean_id(where.rel): Entry(None if where.problem else file_stamp(where.info), where)
            for where in _walk(str(root), documents.include_hidden)
        }

    def changes(self, previous: PreviousRead | None, documents: DocumentsConfig) -> Changes:
        return entry_changes(
            self,
            self.entries(documents),
            previous,
            lambda chosen: read_folder(self, chosen, documents),
        )

    def signature(self) -> str | None:
        """The listing's stamps, hidden files included (a superset: no change is missed); a
        large folder is watched between ticks instead of walked (watch.py)."""
        if not os.path.isdir(self.path):
            return None
        root = os.path.realpath(self.path)

        def walk() -> str:
            listing = _walk(root, include_hidden=True)
            return stamps_digest((w.rel, file_stamp(w.info)) for w in listing)

        return watched_signature(root, walk)


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


class Listed(NamedTuple):
    """One entry of a folder's listing: where it is, its stat, and whether it is a link."""

    rel: str  # relative to the folder
    path: str
    info: os.stat_result | None  # following a link; None when it cannot be stat'ed
    problem: str = ""  # a folder that cannot be listed
    link: bool = False


def _walk(root: str, include_hidden: bool) -> Iterator[Listed]:
    """Every file-like entry under root, in the folders' own order: one stat per entry and
    strings only (a million files is a listing, not a read). Links are stat'ed through, not
    followed into; a folder that cannot be listed is an entry whose problem says so. Hidden
    names (a leading '.') are skipped with their subtree unless include_hidden."""
    folders = [("", root)]
    while folders:
        rel_dir, folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                items = list(listing)
        except OSError as exc:
            yield Listed(
                rel_dir, folder, None, f"unreadable: folder cannot be listed: {exc.strerror}"
            )
            continue
        for item in items:
            name = item.name
            if not include_hidden and name.startswith("."):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if item.is_dir(follow_symlinks=False):
                folders.append((rel, item.path))
                continue
            try:
                info = os.stat(item.path)
            except OSError:  # a dangling link, or gone since the listing: the read reports it
                info = None
            yield Listed(rel, item.path, info, "", item.is_symlink())


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
    source: FolderSource, entries: dict[str, Entry], documents: DocumentsConfig
) -> Iterator[RawDocument]:
    """The documents of the chosen entries (from `FolderSource.entries`), in name order.

    The listing did not follow links into folders, so only an entry that is itself a link can
    lead outside the folder: only links are resolved (realpath) before they are read."""
    documents_root = Path(os.path.realpath(source.path))
    limit = documents.max_document_bytes
    for doc_id in sorted(entries):
        where: Listed = entries[doc_id].where
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
