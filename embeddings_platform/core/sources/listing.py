"""Files' stamps: name, size, inode and change times, read with one stat, without opening a file.

Any write changes a file's ctime (which no tool can set back), so an unchanged stamp means
unchanged content: the refresh sensor's idle tick lists files instead of reading and hashing
the corpus (core/refresh.py), and a snapshot reads again only the files whose stamp moved.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

# A folder's listing in columns: a million files are compared in Arrow, not one object at a time.
LISTING = pa.schema(
    [
        ("key", pa.string()),  # the path relative to the folder, as a doc id (clean_id)
        ("raw", pa.binary()),  # the path's bytes when they are not UTF-8 (else null)
        ("stamp", pa.string()),  # file_stamp; null for a folder that cannot be listed
        ("link", pa.bool_()),  # a symbolic link (stat'ed through, not followed into)
        ("problem", pa.string()),  # a folder that cannot be listed
    ]
)
_STATS = (pa.int64(), pa.uint64(), pa.int64(), pa.int64())  # size, inode, mtime, ctime


def clean_id(name: str) -> str:
    """A file name that is not UTF-8 cannot be stored as an id: escape its bytes visibly."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


class _Columns:
    """A listing as it is walked: one list per column of LISTING."""

    def __init__(self) -> None:
        self.rels: list[str] = []
        self.sizes: list[int | None] = []
        self.inodes: list[int | None] = []
        self.mtimes: list[int | None] = []
        self.ctimes: list[int | None] = []
        self.links: list[bool] = []
        self.problems: dict[int, str] = {}

    def add(self, rel: str, st: os.stat_result | None, link: bool = False) -> None:
        self.rels.append(rel)
        self.sizes.append(st and st.st_size)
        self.inodes.append(st and st.st_ino)
        self.mtimes.append(st and st.st_mtime_ns)
        self.ctimes.append(st and st.st_ctime_ns)
        self.links.append(link)

    def table(self) -> pa.Table:
        try:  # names that are UTF-8 (nearly all): no Python loop
            keys, raw = pa.array(self.rels, pa.string()), pa.nulls(len(self.rels), pa.binary())
        except UnicodeEncodeError:
            cleaned = [clean_id(rel) for rel in self.rels]
            keys = pa.array(cleaned, pa.string())
            raw = pa.array(
                [os.fsencode(r) if c != r else None for r, c in zip(self.rels, cleaned)],
                pa.binary(),
            )
        columns = (self.sizes, self.inodes, self.mtimes, self.ctimes)
        parts = [pc.cast(pa.array(c, kind), pa.string()) for c, kind in zip(columns, _STATS)]
        stamps = pc.fill_null(pc.binary_join_element_wise(*parts, ":"), "gone")  # file_stamp
        problems = [None] * len(self.rels)
        for i, problem in self.problems.items():
            problems[i] = problem
        problems = pa.array(problems, pa.string())
        stamps = pc.if_else(pc.is_valid(problems), pa.scalar(None, pa.string()), stamps)
        return pa.Table.from_arrays(
            [keys, raw, stamps, pa.array(self.links, pa.bool_()), problems], schema=LISTING
        )


def list_folder(root: str, include_hidden: bool, prefix: str = "") -> tuple[pa.Table, bool]:
    """Every file-like entry below `root` (below its folder `prefix` if given), one stat each,
    as LISTING rows, and whether any folder could not be listed.

    Entries come in the folders' own order. Links are stat'ed through, not followed into; a
    folder that cannot be listed is an entry whose problem says so. Hidden names (a leading
    '.') are skipped with their subtree unless include_hidden."""
    rows = _Columns()
    rels, sizes, inodes, links = rows.rels, rows.sizes, rows.inodes, rows.links
    mtimes, ctimes = rows.mtimes, rows.ctimes
    folders = [(prefix, os.path.join(root, prefix) if prefix else root)]
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
            rows.problems[len(rels)] = f"unreadable: folder cannot be listed: {exc.strerror}"
            rows.add(rel_dir, None)
            continue
        head = f"{rel_dir}/" if rel_dir else ""
        try:
            for item in items:
                name = item.name
                if not include_hidden and name.startswith("."):
                    continue
                if item.is_dir(follow_symlinks=False):
                    folders.append((head + name, os.path.join(folder, name)))
                    continue
                links.append(item.is_symlink())
                rels.append(head + name)
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
    return rows.table(), bool(rows.problems)


def stat_entries(root: str, rels: Iterable[str]) -> pa.Table:
    """LISTING rows of these paths below root, each stat'ed again (gone: a null stamp)."""
    rows = _Columns()
    for rel in rels:
        path = os.path.join(root, rel)
        try:
            link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            link = False
        rows.add(rel, stat_or_none(path), link)
    return rows.table()


class FolderListing:
    """Every file-like entry below a folder with its stat, in columns (LISTING)."""

    def __init__(self, root: str, table: pa.Table):
        self.root = root
        self.table = table.combine_chunks()

    @classmethod
    def walk(cls, root: str, include_hidden: bool) -> "FolderListing":
        return cls(root, list_folder(root, include_hidden)[0])

    @property
    def keys(self) -> pa.Array:
        return self.table.column("key").combine_chunks()

    def stamps(self) -> pa.Array:
        """file_stamp of every entry in one Arrow array (None: a folder that cannot be listed)."""
        return self.table.column("stamp").combine_chunks()

    def digest(self) -> str:
        """One value for the whole listing (the folder's signature)."""
        joined = pc.binary_join_element_wise(self.keys, self.stamps(), pa.scalar("\0"))
        digest = hashlib.sha256()
        for buffer in joined.buffers()[1:]:
            digest.update(memoryview(buffer))
        return digest.hexdigest()

    def entries(self, positions) -> Iterator[Listed]:
        """Where the entries at these positions are, for reading them (each stat'ed again when
        it is read: it may have changed since)."""
        rows = self.table.select(["key", "raw", "link", "problem"])
        rows = rows.take(pa.array(positions, pa.int64()))
        columns = (rows.column(c).to_pylist() for c in rows.column_names)
        for key, raw, link, problem in zip(*columns):
            rel = os.fsdecode(raw) if raw is not None else key
            path = os.path.join(self.root, rel)
            if problem:
                yield Listed(rel, path, None, problem)
            else:
                yield Listed(rel, path, stat_or_none(path), "", bool(link))
