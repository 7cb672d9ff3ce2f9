"""Stage 1, snapshot: read and validate a source into an immutable, content-addressed snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from ..config import DocumentsConfig, SourceConfig
from ..documents import Document, Rejected, read_source
from ..ids import digest
from ..store import (
    DOCUMENT_TEXTS,
    QUARANTINE,
    SNAPSHOT_DOCUMENTS,
    SNAPSHOTS,
    Store,
    utcnow,
)


def _metadata_json(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)


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

    @property
    def is_new(self) -> bool:
        return self.snapshot_id != self.previous_snapshot_id


def snapshot_id_of(docs: list[Document]) -> str:
    """Content address of a snapshot: equal documents and metadata give an equal id."""
    lines = sorted(
        f"{d.doc_id}\x1e{d.content_sha256}\x1e{_metadata_json(d.metadata)}" for d in docs
    )
    return digest("snapshot-v1", *lines)


def take_snapshot(
    store: Store, source: SourceConfig, run_id: str, documents: DocumentsConfig = DocumentsConfig()
) -> SnapshotReport:
    """Read and validate a source; record a new immutable snapshot if its content changed."""
    docs, rejected = read_source(source, documents)
    snapshot_id = snapshot_id_of(docs)
    latest = store.latest_snapshot(source.name)
    previous_id = latest["snapshot_id"] if latest else None
    previous = store.snapshot_manifest(source.name, previous_id) if previous_id else {}
    current = {d.doc_id: (d.content_sha256, _metadata_json(d.metadata)) for d in docs}
    added = sum(1 for d in current if d not in previous)
    changed = sum(1 for d, v in current.items() if d in previous and previous[d][0] != v[0])
    metadata_changed = sum(
        1
        for d, v in current.items()
        if d in previous and previous[d][0] == v[0] and previous[d][1] != v[1]
    )
    removed = sum(1 for d in previous if d not in current)
    report = SnapshotReport(
        source.name,
        snapshot_id,
        previous_id,
        len(docs),
        added,
        changed,
        removed,
        len(docs) - added - changed,
        metadata_changed,
        rejected,
        lossy_documents=sum(1 for d in docs if d.lossy),
    )
    now = utcnow()
    if rejected:
        quarantine = store.table("quarantine", QUARANTINE, "quarantine_id")
        rows = [
            {
                "quarantine_id": digest(source.name, snapshot_id, r.doc_id, r.reason),
                "source": source.name,
                "snapshot_id": snapshot_id,
                "doc_id": r.doc_id,
                "reason": r.reason,
                "sample": r.sample[:200],
                "detected_at": now,
                "run_id": run_id,
            }
            for r in rejected
        ]
        store.upsert(quarantine, pa.Table.from_pylist(rows, schema=QUARANTINE), "quarantine_id")
    if not report.is_new:
        return report
    texts = store.table("document_texts", DOCUMENT_TEXTS, "content_sha256")
    unique = {d.content_sha256: d.text for d in docs}
    store.upsert(
        texts,
        pa.Table.from_pylist(
            [{"content_sha256": h, "text": t} for h, t in unique.items()], schema=DOCUMENT_TEXTS
        ),
        "content_sha256",
    )
    manifest = store.table("snapshot_documents", SNAPSHOT_DOCUMENTS, "row_key")
    rows = [
        {
            "row_key": f"{source.name}:{snapshot_id}:{doc_id}",
            "source": source.name,
            "snapshot_id": snapshot_id,
            "doc_id": doc_id,
            "content_sha256": sha,
            "metadata_json": meta,
        }
        for doc_id, (sha, meta) in current.items()
    ]
    store.upsert(manifest, pa.Table.from_pylist(rows, schema=SNAPSHOT_DOCUMENTS), "row_key")
    # The snapshot row is written last: it is what makes the snapshot visible.
    snapshots = store.table("snapshots", SNAPSHOTS, "snapshot_key")
    store.upsert(
        snapshots,
        pa.Table.from_pylist(
            [
                {
                    "snapshot_key": f"{source.name}:{snapshot_id}:{now.isoformat()}",
                    "source": source.name,
                    "snapshot_id": snapshot_id,
                    "created_at": now,
                    "run_id": run_id,
                    "documents": len(docs),
                    "added": added,
                    "changed": changed,
                    "removed": removed,
                    "unchanged": report.unchanged,
                    "quarantined": len(rejected),
                    "previous_snapshot_id": previous_id,
                }
            ],
            schema=SNAPSHOTS,
        ),
        "snapshot_key",
    )
    return report
