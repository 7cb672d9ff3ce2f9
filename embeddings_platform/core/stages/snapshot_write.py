"""Writing a snapshot (stage 1): its texts, its manifest as a delta or in full, its quarantine
rows, and last its snapshot row, which is what makes it visible.

Texts and quarantine rows are upserts (keyed by content, by snapshot and reason). Manifest rows
are appended under the key of the snapshot row this write is about to add, and only the rows
of a published snapshot row are ever read (core/manifests.py): they are new by construction,
so no merge has to join them against every row recorded so far. A run killed before its
snapshot row leaves rows nothing names, never read; run again, it writes its own."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa

from ..ids import digest
from ..manifests import KEYED_ROWS, MAX_CHAIN, MAX_DELTA_SHARE, MIN_DELTA_ROWS
from ..store import (
    DOCUMENT_TEXTS,
    QUARANTINE,
    SNAPSHOT_DOCUMENTS,
    SNAPSHOT_ENTRIES,
    SNAPSHOTS,
    Store,
    utcnow,
)

if TYPE_CHECKING:
    from .snapshot import Plan


def write_snapshot(store: Store, source: str, plan: "Plan", run_id: str) -> None:
    report = plan.report
    snapshot_id = report.snapshot_id
    now = utcnow()
    _write_quarantine(store, source, plan, run_id, now)
    if not report.is_new:
        return
    snapshot_key = f"{source}:{snapshot_id}:{now.isoformat()}"
    if not plan.texts_written:
        write_texts(store, plan.texts)
    documents, entries = _delta(plan)
    previous = plan.previous.row if plan.previous else {}
    delta_rows = int(previous.get("delta_rows") or 0) + len(documents) + len(entries)
    as_delta = (
        not report.full_read
        and int(previous.get("chain_length") or 0) + 1 <= MAX_CHAIN
        and delta_rows <= max(MIN_DELTA_ROWS, MAX_DELTA_SHARE * report.documents)
        and snapshot_id not in plan.previous.recorded  # content that came back: in full
    )
    if not as_delta:
        documents, entries = _full(plan)
    for name, schema, rows in [
        ("snapshot_documents", SNAPSHOT_DOCUMENTS, documents),
        ("snapshot_entries", SNAPSHOT_ENTRIES, entries),
    ]:
        _append_rows(store, name, schema, source, snapshot_id, snapshot_key, rows)
    state = {"kind": plan.changes.state, "settings": plan.settings, KEYED_ROWS: True}
    row = {
        "snapshot_key": snapshot_key,
        "source": source,
        "snapshot_id": snapshot_id,
        "created_at": now,
        "run_id": run_id,
        "documents": report.documents,
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "unchanged": report.unchanged,
        "quarantined": len(report.quarantined),
        "previous_snapshot_id": report.previous_snapshot_id,
        "base_snapshot_id": report.previous_snapshot_id if as_delta else None,
        "content_sum": f"{plan.content_sum:064x}",
        "state_json": json.dumps(state, sort_keys=True, default=str),
        "chain_length": int(previous.get("chain_length") or 0) + 1 if as_delta else 0,
        "delta_rows": delta_rows if as_delta else 0,
    }
    # The snapshot row is written last: it is what makes the snapshot and its manifest rows
    # visible. Its key holds this write's time, so it is new: appended, not merged.
    store.append(
        store.table("snapshots", SNAPSHOTS, "snapshot_key"),
        pa.Table.from_pylist([row], schema=SNAPSHOTS),
    )


def write_texts(store: Store, texts: dict[str, str]) -> None:
    """Texts by content hash, the ones not stored yet: a hash names one text forever, so a
    stored row is left as it is, and a text written for a snapshot that is never recorded
    (killed, or nothing changed after all) is only a row nothing refers to yet."""
    if texts:
        rows = [{"content_sha256": h, "text": t} for h, t in texts.items()]
        store.insert_missing(
            store.table("document_texts", DOCUMENT_TEXTS, "content_sha256"),
            pa.Table.from_pylist(rows, schema=DOCUMENT_TEXTS),
            "content_sha256",
        )


def _delta(plan: "Plan") -> tuple[list[dict], list[dict]]:
    """Rows of what differs from the last snapshot: documents new, changed (content, metadata
    or entry) or gone, and the stamps of the entries read or gone."""
    documents = [
        _document(doc_id, value)
        for doc_id, value in plan.current.items()
        if plan.before.get(doc_id) != value
    ]
    documents += [
        {"doc_id": doc_id, "removed": True} for doc_id in plan.before if doc_id not in plan.current
    ]
    entries = [{"entry": e, "stamp": s} for e, s in plan.changes.stamps.items()]
    return documents, entries


def _full(plan: "Plan") -> tuple[list[dict], list[dict]]:
    """Every document and entry stamp of the snapshot: after a full read, what was read; after
    a partial one, the last snapshot's manifest with this one's changes on top."""
    current = dict(plan.current)
    stamps = dict(plan.changes.stamps)
    if not plan.report.full_read:
        table = plan.previous.documents("doc_id", None)
        columns = ("doc_id", "content_sha256", "metadata_json", "entry")
        for doc_id, sha, meta, entry in zip(*(table.column(c).to_pylist() for c in columns)):
            if doc_id not in plan.before:  # a retired one is in `current` if it is still there
                current[doc_id] = (sha, meta, entry or doc_id)
        entries = plan.previous.entries()
        known = dict(zip(entries.column("entry").to_pylist(), entries.column("stamp").to_pylist()))
        stamps = {**known, **stamps}
    documents = [_document(doc_id, value) for doc_id, value in current.items()]
    return documents, [{"entry": e, "stamp": s} for e, s in stamps.items() if s is not None]


def _document(doc_id: str, value: tuple[str, str, str]) -> dict:
    sha, meta, entry = value
    return {
        "doc_id": doc_id,
        "content_sha256": sha,
        "metadata_json": meta,
        "entry": entry,
        "removed": False,
    }


def _append_rows(store, name, schema, source, snapshot_id, snapshot_key, rows: list[dict]):
    """Manifest rows under the snapshot row's key: new by construction, so appended."""
    if not rows:
        return
    key = "doc_id" if name == "snapshot_documents" else "entry"
    for row in rows:
        row.update(
            row_key=f"{snapshot_key}:{row[key]}",
            source=source,
            snapshot_id=snapshot_id,
            snapshot_key=snapshot_key,
        )
    store.append(store.table(name, schema, "row_key"), pa.Table.from_pylist(rows, schema))


def _write_quarantine(store: Store, source: str, plan: "Plan", run_id: str, now) -> None:
    snapshot_id = plan.report.snapshot_id
    rows = [
        {
            "source": source,
            "doc_id": r.doc_id,
            "reason": r.reason,
            "sample": r.sample[:200],
            "detected_at": now,
            "run_id": run_id,
            "entry": r.entry,
        }
        for r in plan.rejected
    ]
    rows += [
        {k: q.get(k) for k in ("source", "doc_id", "reason", "sample", "detected_at", "run_id")}
        | {"entry": q.get("entry")}
        for q in plan.carried
    ]
    if not rows:
        return
    for row in rows:
        row["snapshot_id"] = snapshot_id
        row["quarantine_id"] = digest(source, snapshot_id, row["doc_id"], row["reason"])
    store.upsert(
        store.table("quarantine", QUARANTINE, "quarantine_id"),
        pa.Table.from_pylist(rows, schema=QUARANTINE),
        "quarantine_id",
    )
