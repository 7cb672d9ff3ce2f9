"""Change detection for the refresh sensor: which sources changed, which need a re-check.

A source's fingerprint is the id its next snapshot would get (a hash over every document's
content hash and metadata), so a touched file with the same bytes is no change and an edit
that keeps the file time is one. The decisions are pure functions of what the sensor read,
what its cursor remembers and what the store last recorded, so they are tested without
Dagster and survive restarts through the cursor.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .config import DocumentsConfig, SourceConfig
from .documents import read_source
from .stages.snapshot import snapshot_id_of


def source_fingerprint(source: SourceConfig, documents: DocumentsConfig = DocumentsConfig()) -> str:
    """Read the source and hash its content the way take_snapshot would (same document rules)."""
    docs, _ = read_source(source, documents)
    return snapshot_id_of(docs)


FILE_KINDS = ("folder", "jsonl", "beir")


def listing_signature(source: SourceConfig) -> str | None:
    """A hash of the name, size, inode and change times of every file below a file source,
    read without opening one. Any write changes a file's ctime (which no tool can set back), so
    an unchanged signature means unchanged content: an idle tick lists files instead of reading
    and hashing the corpus. None for sources without files (their content is read every tick).
    """
    if source.kind not in FILE_KINDS or source.path is None:
        return None
    digest = hashlib.sha256()
    for rel, st in _walk(Path(source.path)):
        seen = "gone" if st is None else "\0".join(
            str(v) for v in (st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
        digest.update(f"{rel}\0{seen}\n".encode())
    return digest.hexdigest()


def _stat(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:  # a dangling link, or deleted meanwhile: the read reports it
        return None


def _walk(root: Path):
    """(relative path, stat or None) of every file below root, following links, each folder once."""
    if not root.is_dir():
        yield ".", _stat(root)
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
            yield os.path.relpath(path, root), _stat(path)


@dataclass
class RefreshCursor:
    """What the sensor remembers between ticks: the fingerprint it last acted on per source, the
    file listing it last read each source at, and the partitions it saw waiting for their first
    build (their automation gets one tick first)."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    unbuilt: set[str] = field(default_factory=set)
    listings: dict[str, list[str]] = field(default_factory=dict)  # source -> [listing, fingerprint]

    @classmethod
    def parse(cls, raw: str | None) -> "RefreshCursor":
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return cls()  # an unreadable cursor only costs one re-read of every source
        return cls(dict(data.get("fingerprints", {})), set(data.get("unbuilt", [])),
                   dict(data.get("listings", {})))

    def serialize(self) -> str:
        return json.dumps({"fingerprints": self.fingerprints, "unbuilt": sorted(self.unbuilt),
                           "listings": self.listings}, sort_keys=True)


def changed(source: str, fingerprint: str, cursor: RefreshCursor, recorded_snapshot: str | None) -> bool:
    """True if the source's content is neither what the store recorded nor already requested.

    The store's latest snapshot is the reference, so a restart (or a lost cursor) does not
    re-request sources that are current; the cursor keeps a change that is already on its
    way from being requested again on every tick until its run lands.
    """
    return fingerprint != recorded_snapshot and fingerprint != cursor.fingerprints.get(source)


def known_fingerprint(source: str, listing: str | None, cursor: RefreshCursor) -> str | None:
    """The fingerprint read at this very file listing before, if any: no need to read again."""
    seen = cursor.listings.get(source)
    return seen[1] if listing is not None and seen and seen[0] == listing else None


def recheck_due(last_checked: datetime | None, now: datetime, window: timedelta) -> bool:
    """A partition not re-checked within its window is due; one never built is not (its first
    build is not a re-check: the automation starts it)."""
    return last_checked is not None and now - last_checked >= window
