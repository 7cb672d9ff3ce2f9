"""Files' stamps: name, size, inode and change times, read with one stat, without opening a file.

Any write changes a file's ctime (which no tool can set back), so an unchanged stamp means
unchanged content: the refresh sensor's idle tick lists files instead of reading and hashing
the corpus (core/refresh.py), and a snapshot reads again only the files whose stamp moved.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def file_stamp(st: os.stat_result | None) -> str:
    """A file's size, inode and modification and change times: moves with any write."""
    if st is None:
        return "gone"
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def stamps_digest(stamps: Iterable[tuple[str, str | None]]) -> str:
    """One value for a whole listing of (entry, stamp) pairs, in the order given."""
    return hashlib.sha256(
        "".join(f"{key}\0{stamp}\n" for key, stamp in stamps).encode("utf-8", "surrogateescape")
    ).hexdigest()


def listing_digest(entries: Iterable[tuple[str, os.stat_result | None]]) -> str:
    return stamps_digest((rel, file_stamp(st)) for rel, st in entries)


def stat_or_none(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:  # a dangling link, or deleted meanwhile: the read reports it
        return None


def walk(root: Path) -> Iterator[tuple[str, os.stat_result | None]]:
    """(relative path, stat or None) of every file below root, following links, each folder
    once; just root itself when it is a file."""
    if not root.is_dir():
        yield ".", stat_or_none(root)
        return
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            yield os.path.relpath(path, root), stat_or_none(path)


class Listed(NamedTuple):
    """One entry of a folder's listing: where it is, its stat, and whether it is a link."""

    rel: str  # relative to the folder
    path: str
    info: os.stat_result | None  # following a link; None when it cannot be stat'ed
    problem: str = ""  # a folder that cannot be listed
    link: bool = False


class FolderListing:
    """Every file-like entry below a folder, one stat each, kept in columns: a million files
    are compared with the last snapshot's stamps in Arrow, not one Python object at a time.

    Entries come in the folders' own order. Links are stat'ed through, not followed into; a
    folder that cannot be listed is an entry whose problem says so (its stamp is None: it is
    read, and reported, every time). Hidden names (a leading '.') are skipped with their
    subtree unless include_hidden."""

    def __init__(self, root: str, include_hidden: bool):
        self.root = root
        self.rels: list[str] = []
        self.sizes: list[int | None] = []
        self.inodes: list[int | None] = []
        self.mtimes: list[int | None] = []
        self.ctimes: list[int | None] = []
        self.problems: dict[int, str] = {}
        self.links: set[int] = set()
        self._list(include_hidden)

    def _list(self, include_hidden: bool) -> None:
        rels, sizes, inodes = self.rels, self.sizes, self.inodes
        mtimes, ctimes = self.mtimes, self.ctimes
        folders = [("", self.root)]
        while folders:
            rel_dir, folder = folders.pop()
            try:  # listed through a descriptor: each stat resolves one name, not the whole path
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
                try:
                    with os.scandir(fd) as listing:
                        items = list(listing)
                except BaseException:
                    os.close(fd)
                    raise
            except OSError as exc:
                self.problems[len(rels)] = f"unreadable: folder cannot be listed: {exc.strerror}"
                rels.append(rel_dir)
                for column in (sizes, inodes, mtimes, ctimes):
                    column.append(None)
                continue
            prefix = f"{rel_dir}/" if rel_dir else ""
            try:
                for item in items:
                    name = item.name
                    if not include_hidden and name.startswith("."):
                        continue
                    if item.is_dir(follow_symlinks=False):
                        folders.append((prefix + name, os.path.join(folder, name)))
                        continue
                    if item.is_symlink():
                        self.links.add(len(rels))
                    rels.append(prefix + name)
                    try:
                        st = item.stat()  # through a link; fstatat on the folder's descriptor
                    except OSError:  # a dangling link, or gone since the listing
                        st = None
                    sizes.append(st and st.st_size)
                    inodes.append(st and st.st_ino)
                    mtimes.append(st and st.st_mtime_ns)
                    ctimes.append(st and st.st_ctime_ns)
            finally:
                os.close(fd)

    def stamps(self) -> pa.Array:
        """file_stamp of every entry in one Arrow array (None: a folder that cannot be listed)."""
        parts = [
            pc.cast(pa.array(column, pa.uint64()), pa.string())
            for column in (self.sizes, self.inodes, self.mtimes, self.ctimes)
        ]
        joined = pc.fill_null(pc.binary_join_element_wise(*parts, ":"), "gone")
        if not self.problems:
            return joined
        unreadable = np.zeros(len(self.rels), dtype=bool)
        unreadable[list(self.problems)] = True
        return pc.if_else(pa.array(unreadable), pa.scalar(None, pa.string()), joined)

    def digest(self) -> str:
        """One value for the whole listing (the folder's signature)."""
        names = pa.array(self.rels, pa.string())
        joined = pc.binary_join_element_wise(names, self.stamps(), pa.scalar("\0"))
        digest = hashlib.sha256()
        for buffer in joined.buffers()[1:]:
            digest.update(memoryview(buffer))
        return digest.hexdigest()

    def entry(self, i: int) -> Listed:
        """Where entry i is, for reading it (stat'ed again: it may have changed since)."""
        path = os.path.join(self.root, self.rels[i])
        if i in self.problems:
            return Listed(self.rels[i], path, None, self.problems[i])
        return Listed(self.rels[i], path, stat_or_none(path), "", i in self.links)
