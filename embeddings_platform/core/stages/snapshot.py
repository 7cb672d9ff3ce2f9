"""Stage 1, snapshot: read and validate a source into an immutable, content-addressed snapshot.

Only what may have changed is read: the source kind compares what the last snapshot recorded
(its entries' stamps, a watermark, a table snapshot id) with the source now and reads only the
entries that moved (`SourceSettings.changes`). The documents of the entries left alone are
carried over unread, and so are their quarantine rows; the snapshot records only the difference
(core/manifests.py). The first snapshot, a change of the source's or the document rules'
settings, and `full=True` (a freshness re-check) read everything.

A snapshot id is a content address: a hash of the sum, modulo 2**256, of one hash per document
(id, content hash, metadata). The sum of the unchanged documents is carried over, so the id of
a partly read snapshot is the id a full read would give.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Callable

from ..config import DocumentsConfig, SourceConfig
from ..documents import Document, Rejected, duplicate, validate_all
from ..ids import digest
from ..manifests import Previous
from ..sources.base import Changes
from ..store import Store
from .snapshot_write import write_snapshot, write_texts

SUM_MODULUS = 1 << 256
FORMAT = "snapshot-v2"
MAX_HELD_DOCUMENTS = 50_000  # raw documents of a partial read held while the lookup runs


def _metadata_json(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)


def document_hash(doc_id: str, content_sha256: str, metadata_json: str) -> int:
    line = f"{doc_id}\x1e{content_sha256}\x1e{metadata_json}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(line).digest(), "big")


def snapshot_id_of_sum(total: int) -> str:
    return digest(FORMAT, f"{total % SUM_MODULUS:064x}")


def snapshot_id_of(docs: list[Document]) -> str:
    """Content address of a set of documents: equal documents and metadata give an equal id."""
    return snapshot_id_of_sum(
        sum(document_hash(d.doc_id, d.content_sha256, _metadata_json(d.metadata)) for d in docs)
    )


@dataclass
class SnapshotReport:
    source: str
    snapshot_id: str
    previous_snapshot_id: str | None
    documents: int
    added: int
    changed: int
    removed: int
    unchanged: int
    metadata_changed: int
    quarantined: list[Rejected] = field(default_factory=list)
    lossy_documents: int = 0  # kept despite a few U+FFFD (below documents.max_replacement_fraction)
    documents_read: int = 0  # documents the reader yielded: all of them, or the changed entries'
    full_read: bool = True

    @property
    def is_new(self) -> bool:
        return self.snapshot_id != self.previous_snapshot_id


@dataclass
class Plan:
    """A snapshot as read and compared, before anything is written."""

    report: SnapshotReport
    previous: Previous | None
    changes: Changes
    current: dict[str, tuple[str, str, str]]  # documents read: id -> (hash, metadata, entry)
    before: dict[str, tuple[str, str, str]]  # the same ids and retired ones, as last recorded
    texts: dict[str, str]  # content hash -> text of the documents added or changed
    rejected: list[Rejected]
    carried: list[dict]  # quarantine rows of untouched entries, carried over
    content_sum: int
    settings: str
    texts_written: bool = False  # by `on_read`, while the last snapshot's rows were looked up


def settings_key(source: SourceConfig, documents: DocumentsConfig) -> str:
    """What a partial read must not straddle: the source's and the document rules' settings."""
    return digest(FORMAT, repr(source), repr(documents))


def plan_snapshot(
    store: Store,
    source: SourceConfig,
    documents: DocumentsConfig,
    full: bool = False,
    on_read: Callable[[dict[str, str]], None] | None = None,
) -> Plan:
    """Read what changed since the last snapshot (everything when `full` or when the last one
    cannot be built on) and compare it with what that snapshot recorded; writes nothing itself.

    `on_read` gets the texts (content hash -> text) of the documents a partial read found,
    while the last snapshot's rows are looked up in another thread: take_snapshot stores them
    then, so the two costs overlap. A full read does not call it (its texts are mostly known)."""
    settings = settings_key(source, documents)
    with ThreadPoolExecutor(1) as pool:  # the last snapshot's rows come while documents validate
        loading = pool.submit(Previous.load, store, source.name)
        try:  # read as empty, a missing path would unserve every document
            source.check()  # (postgres: connects meanwhile, for the read)
        except BaseException:
            loading.exception()  # the source's error is the one to report
            raise
        previous = loading.result()
        usable = (
            previous is not None
            and not full
            and previous.incremental
            and previous.settings == settings
        )
        changes = source.changes(previous if usable else None, documents)
        raws, lookup = _read_and_look_up(pool, changes, previous, usable, source.entry_is_doc_id)
        counter = _Counter(raws)
        good, rejected = validate_all(source.name, counter, documents)
        touched = changes.touched if usable else None  # read after the documents (postgres)
        if lookup is None and previous is not None:
            lookup = pool.submit(*_before_lookup(previous, touched, source.entry_is_doc_id))
        early = on_read is not None and touched is not None and bool(good)
        if early:
            on_read({d.content_sha256: d.text for d in good.values()})
        before_rows = lookup.result() if lookup is not None else None
    current = {
        d.doc_id: (d.content_sha256, _metadata_json(d.metadata), d.entry or d.doc_id)
        for d in good.values()
    }
    texts = {d.content_sha256: d.text for d in good.values()}
    if touched is None:
        carried: list[dict] = []
    else:
        retired = set(before_rows.column("doc_id").to_pylist())
        kept = previous.documents("doc_id", set(current) - retired)
        for doc_id in kept.column("doc_id").to_pylist():  # the copy already recorded stays
            rejected.append(duplicate(doc_id, current.pop(doc_id)[2]))
        carried = [q for q in previous.quarantined if q.get("entry") not in touched]
    before = _as_dict(before_rows)
    lossy = sum(1 for d in good.values() if d.lossy and d.doc_id in current)
    report, total = _compare(source.name, previous, touched, current, before)
    report.quarantined = rejected + [Rejected(q["doc_id"], q["reason"]) for q in carried]
    report.lossy_documents = lossy
    report.documents_read = counter.count
    report.full_read = touched is None
    changed = {sha for sha, *_ in current.values()} - {sha for sha, *_ in before.values()}
    return Plan(
        report,
        previous,
        changes,
        current,
        before,
        {sha: texts[sha] for sha in changed},
        rejected,
        carried,
        total,
        settings,
        early,
    )


def _before_lookup(previous: Previous, touched: set[str] | None, entry_is_doc_id: bool):
    """The last snapshot's rows a read replaces: all of them, or those of the entries touched."""
    if touched is None:
        return previous.documents, "doc_id", None
    return previous.documents, "doc_id" if entry_is_doc_id else "entry", touched


def _read_and_look_up(pool, changes: Changes, previous, usable: bool, entry_is_doc_id: bool):
    """The raw documents, and the lookup of the last snapshot's rows they replace, started
    before they are validated when it can be: at once for a full read; for a partial one, once
    what it touched is known (after the read: postgres learns it while reading), when the raw
    documents of at most MAX_HELD_DOCUMENTS are to be held meanwhile. None: look up after."""
    if previous is None:
        return changes.documents, None
    if not usable or changes.touched is None:
        return changes.documents, pool.submit(*_before_lookup(previous, None, entry_is_doc_id))
    raws = iter(changes.documents)
    held = list(islice(raws, MAX_HELD_DOCUMENTS + 1))
    if len(held) > MAX_HELD_DOCUMENTS:
        return chain(held, raws), None
    return held, pool.submit(*_before_lookup(previous, changes.touched, entry_is_doc_id))


def _as_dict(rows) -> dict[str, tuple[str, str, str]]:
    if rows is None:
        return {}
    return {
        d: (sha, meta, entry or d)
        for d, sha, meta, entry in zip(
            *(
                rows.column(c).to_pylist()
                for c in ("doc_id", "content_sha256", "metadata_json", "entry")
            )
        )
    }


def _compare(source, previous, touched, current, before) -> tuple[SnapshotReport, int]:
    added = sum(1 for d in current if d not in before)
    changed = sum(1 for d, v in current.items() if d in before and before[d][0] != v[0])
    metadata_changed = sum(
        1
        for d, v in current.items()
        if d in before and before[d][0] == v[0] and before[d][1] != v[1]
    )
    removed = sum(1 for d in before if d not in current)
    if touched is None:
        count = len(current)
        total = sum(document_hash(d, sha, meta) for d, (sha, meta, _) in current.items())
    else:
        count = int(previous.row["documents"]) - removed + added
        total = int(previous.row["content_sum"], 16)
        total -= sum(document_hash(d, sha, meta) for d, (sha, meta, _) in before.items())
        total += sum(document_hash(d, sha, meta) for d, (sha, meta, _) in current.items())
    total %= SUM_MODULUS
    previous_id = previous.row["snapshot_id"] if previous else None
    report = SnapshotReport(
        source,
        snapshot_id_of_sum(total),
        previous_id,
        count,
        added,
        changed,
        removed,
        count - added - changed,
        metadata_changed,
    )
    return report, total


class _Counter:
    """Counts what a reader yields (the report's `documents_read`)."""

    def __init__(self, raws):
        self.raws, self.count = raws, 0

    def __iter__(self):
        for raw in self.raws:
            self.count += 1
            yield raw


def take_snapshot(
    store: Store,
    source: SourceConfig,
    run_id: str,
    documents: DocumentsConfig = DocumentsConfig(),
    full: bool = False,
) -> SnapshotReport:
    """Read what changed and record a new immutable snapshot if the content changed."""
    plan = plan_snapshot(store, source, documents, full, lambda texts: write_texts(store, texts))
    write_snapshot(store, source.name, plan, run_id)
    return plan.report
