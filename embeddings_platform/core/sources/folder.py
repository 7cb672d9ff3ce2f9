"""`folder`: the text, Markdown, reStructuredText and HTML files under a folder.

Doc ids are paths relative to the folder, so a shard hashes paths and reads only its own files.
Every read is bounded; links are followed only
inside the folder; hidden files and folders are skipped unless `documents.include_hidden`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import (
    OPEN_FLAGS,
    ConfigPath,
    RawDocument,
    SourceSettings,
    Unusable,
    clean_id,
    rejected,
    source_error,
)
from .listing import listing_digest, walk

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
        return read_folder(self, documents)

    def signature(self) -> str | None:
        """The listing of this partition's files only: a shard is not re-read for a change in
        another shard's file ("." is the path itself when it is not a folder: always listed)."""
        return listing_digest(
            (rel, st)
            for rel, st in walk(self.path)
            if rel == "." or self.holds(clean_id(Path(rel).as_posix()))
        )


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


def _entries(root: Path, include_hidden: bool) -> list[tuple[Path, str]]:
    """Every file-like entry under root, sorted, with the error of each folder not listable.

    Links to folders are listed, not followed (rglob did not follow them either); hidden
    names (a leading '.') are skipped with their whole subtree unless include_hidden.
    """
    errors: list[OSError] = []
    found: list[tuple[Path, str]] = []
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        if not include_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files = [f for f in files if not f.startswith(".")]
        base = Path(folder)
        found.extend((base / name, "") for name in dirs if (base / name).is_symlink())
        found.extend((base / name, "") for name in files)
    found.extend(
        (Path(e.filename), f"unreadable: folder cannot be listed: {e.strerror}") for e in errors
    )
    return sorted(found)


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


def read_folder(source: FolderSource, documents: DocumentsConfig) -> Iterator[RawDocument]:
    root = _folder_root(source)
    for path, problem in _entries(root, documents.include_hidden):
        doc_id = clean_id(path.relative_to(root).as_posix())
        if not source.holds(doc_id):  # another shard's: its path decides, its bytes stay unread
            continue
        if problem:
            yield rejected(doc_id, problem)
            continue
        try:
            if _target(path, root) is None or path.suffix.lower() not in FOLDER_SUFFIXES:
                continue  # a folder link, or not a document type this source reads
            if doc_id != path.relative_to(root).as_posix():
                raise Unusable("bad file name: not valid UTF-8; rename the file")
            content = read_bounded(path, documents.max_document_bytes)
        except Unusable as exc:
            yield rejected(doc_id, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the folder
            yield rejected(doc_id, f"unreadable: {type(exc).__name__}: {exc}")
            continue
        is_html = path.suffix.lower() in (".html", ".htm")
        yield RawDocument(doc_id, content, {"path": doc_id}, is_html=is_html)


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
