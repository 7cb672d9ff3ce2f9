"""A cheap signature of files: name, size, inode and change times, read without opening one.

Any write changes a file's ctime (which no tool can set back), so an unchanged signature means
unchanged content: the refresh sensor's idle tick lists files instead of reading and hashing
the corpus (core/refresh.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator


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
