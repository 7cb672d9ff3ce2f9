"""What every source kind shares: its common settings, and reading entries one by one.

One entry that cannot be read (too large, a broken link, a FIFO, a line that is not JSON)
becomes a RawDocument carrying its rejection, so it reaches quarantine and the rest of the
source goes on. A source that cannot be read at all (its path is missing, of the wrong type
or unreadable) raises SourceError naming the source and the setting to fix: that is an
operator's mistake, not a bad document.

A kind made of entries (files, data files, rows) stamps each one without reading it; a snapshot
then reads only the entries whose stamp moved since the last (`changes`, `entry_changes`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass as dataclass_plain
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Iterator, NamedTuple, Protocol

from pydantic import BeforeValidator
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, KnownKeys, PositiveInt, SourceError, resolve_path
from ..settings import DocumentsConfig
from ..sharding import owner, parse_key, shard_keys
from .listing import clean_id, listing_digest, walk  # noqa: F401 - clean_id: shared here

# O_NONBLOCK: opening a FIFO that replaced a file after it was listed must not hang the read.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
ConfigPath = Annotated[Path, BeforeValidator(resolve_path)]


@settings(config=STRICT, kw_only=True)
class SourceSettings(KnownKeys):
    """Settings every source kind takes; a kind adds its own fields and reads its documents."""

    # Each entry is one document named after it (a file, a row): the last snapshot's documents
    # of some entries are then found by doc id, in one lookup.
    entry_is_doc_id: ClassVar[bool] = False

    name: str
    kind: str
    canary: ConfigPath | None = (
        None  # labelled queries: {"query": ..., "relevant": [doc ids]} per line
    )
    shards: PositiveInt = 1  # partitions cut by doc-id hash (docs/sharding.md)
    serve_model: str | None = None  # the model a new source serves from (default: the first)

    @property
    def partition_keys(self) -> list[str]:
        """One `source` partition per shard (just the name when unsharded)."""
        return shard_keys(self.name, self.shards)

    def holds(self, doc_id: str) -> bool:
        """Is the document this partition's? A shard's settings carry its partition key as
        `name`; a kind that knows its doc ids before reading (folder: paths) skips the others'."""
        return parse_key(self.name).holds(doc_id)

    def where(self, key: str) -> str:
        """A setting's place in the registry, for error messages."""
        return f"sources[{owner(self.name)}].{key}"

    def check(self) -> None:
        """Raise SourceError if the source cannot be read at all (before any document is)."""

    def read(self, documents: DocumentsConfig) -> Iterator["RawDocument"]:
        """Every document of the source, unvalidated, in a stable order."""
        raise NotImplementedError

    def signature(self) -> str | None:
        """A value that changes whenever the content may have, computed without reading any
        document; None when there is no such shortcut (the sensor then reads the source).
        This default lists the files below a kind's `path`."""
        path = getattr(self, "path", None)
        return listing_digest(walk(Path(path))) if path is not None else None

    def changes(self, previous: "PreviousRead | None", documents: DocumentsConfig) -> "Changes":
        """What a snapshot must read: everything when `previous` is None, else only what may
        have changed since. This default treats the source as one entry: an unchanged
        signature reads nothing, any other reads it all. Kinds made of many entries (files,
        data files, rows) override it, or use `entry_changes`."""
        stamp = self.signature()
        state = {"signature": stamp} if stamp is not None else {}
        if previous is not None and stamp is not None and previous.state == state:
            return Changes([], set(), state=state)
        return Changes(self.read(documents), None, state=state)

    def labelled_queries(self) -> list:
        """The source's labelled queries: its canary file, else what the kind ships, else none."""
        from ..evaluation import load_canary

        return load_canary(self.canary) if self.canary is not None else self.kind_queries()

    def kind_queries(self) -> list:
        return []


@dataclass_plain(frozen=True)
class RawDocument:
    """What a reader yields before validation: bytes or text plus metadata, or why it could not."""

    doc_id: str
    content: bytes | str
    metadata: dict[str, Any] = field(default_factory=dict)
    is_html: bool = False
    rejection: str = ""  # set when the reader could not read this entry at all
    sample: str = ""
    entry: str = ""  # the file, data file or row it came from ("": the doc id)


class Entry(NamedTuple):
    """One unit a kind reads at a time (a file, a data file) and its stamp: a value that moves
    whenever its content may have (None: always read again). `where` finds it for reading."""

    stamp: str | None
    where: Any = None


@dataclass_plain
class Changes:
    """What a kind read for a snapshot: the documents of the entries it (re)read. `touched`
    names those entries and the ones gone: their earlier documents are replaced by these.
    None: the whole source was read. It may fill while the documents are read (postgres reads
    in one transaction): read it after them."""

    documents: Iterable[RawDocument]
    touched: set[str] | None
    stamps: dict[str, str | None] = field(default_factory=dict)  # touched entries' stamps now
    state: dict[str, Any] = field(default_factory=dict)  # what the kind remembers for next time


class PreviousRead(Protocol):
    """What the last snapshot recorded, loaded only as far as a kind asks (core/manifests.py)."""

    state: dict[str, Any]

    def stamps(self) -> dict[str, str]: ...

    def entries(self) -> Any: ...  # Arrow: entry, stamp (None: gone), for large listings

    def stamps_of(self, entries: set[str]) -> dict[str, str]: ...  # only these (O(entries))

    def keys(self) -> Any: ...  # Arrow: the doc ids and quarantined entries it recorded

    def known(self, keys: set[str]) -> set[str]: ...  # which of these it recorded


def entry_changes(
    source: "SourceSettings",
    current: dict[str, Entry],
    previous: PreviousRead | None,
    read_entries,
    state: dict[str, Any] | None = None,
) -> Changes:
    """Changes of a kind made of entries: read those whose stamp moved or that are new; the ones
    gone are touched too, so their documents leave the snapshot. Stamps are taken before the
    read, so an entry written during it differs next time and is read again."""
    stamps = {key: entry.stamp for key, entry in current.items()}
    if previous is None:
        return Changes(read_entries(current), None, stamps, state or {})
    before = previous.stamps()
    moved = {k: e for k, e in current.items() if e.stamp is None or before.get(k) != e.stamp}
    gone = set(before) - set(current)
    touched_stamps = {**{k: stamps[k] for k in moved}, **dict.fromkeys(gone)}
    return Changes(read_entries(moved), set(moved) | gone, touched_stamps, state or {})


class Unusable(Exception):
    """One entry of a source cannot be read; the message is its quarantine reason."""


def rejected(doc_id: str, reason: str, sample: str = "", entry: str = "") -> RawDocument:
    return RawDocument(doc_id, b"", rejection=reason, sample=sample, entry=entry)


def source_error(source: SourceSettings, key: str, problem: str) -> SourceError:
    return SourceError(f"{source.where(key)}: {problem}")
