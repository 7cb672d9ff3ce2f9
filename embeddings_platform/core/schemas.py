"""The tables' schemas and names: what every row of the platform's storage looks like.

Tables
- `snapshots`, `snapshot_documents`, `snapshot_entries`, `document_texts`: immutable,
  content-addressed source snapshots, their manifests as a full manifest plus deltas
  (core/manifests.py), and a document's text stored once per content hash.
- `quarantine`: documents set aside, and chunks a model kept failing on, with their reason.
- `chunks__<source>__<strategy>`: the current chunks of a source for one chunking strategy.
- `vectors__<source>__<model version>`: the system of record for one model version; one
  table per version, so two vector spaces can never share an index.
- `serving_pointers`: source -> (table, table version, retrieval profile), one row per source,
  moved in one commit; `serving_history` keeps every move for rollback and lineage.
- `model_specs`: the full settings each model version was built with.
- `index_state`: what index maintenance needs to remember of a vectors table: when its vector
  index was last trained, a retrain the `ann_recall` check requested, and which snapshot each
  shard had when it last reached `serving_index` (core/index_maintenance.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pyarrow as pa

from .ids import digest
from .sharding import owner


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_TS = pa.timestamp("us", tz="UTC")


def _key(name: str) -> pa.Field:
    return pa.field(name, pa.string(), nullable=False)


SNAPSHOTS = pa.schema(
    [
        _key("snapshot_key"),
        pa.field("source", pa.string()),
        pa.field("snapshot_id", pa.string()),
        pa.field("created_at", _TS),
        pa.field("run_id", pa.string()),
        pa.field("documents", pa.int64()),
        pa.field("added", pa.int64()),
        pa.field("changed", pa.int64()),
        pa.field("removed", pa.int64()),
        pa.field("unchanged", pa.int64()),
        pa.field("quarantined", pa.int64()),
        pa.field("previous_snapshot_id", pa.string()),
        # core/manifests.py: a snapshot whose manifest is a delta names its base (None: full)
        pa.field("base_snapshot_id", pa.string()),
        pa.field("content_sum", pa.string()),  # the additive content hash its id is made from
        pa.field("state_json", pa.string()),  # what the kind remembers (a watermark, table id)
        pa.field("chain_length", pa.int64()),  # deltas since the last full manifest
        pa.field("delta_rows", pa.int64()),  # rows those deltas hold
    ]
)
SNAPSHOT_DOCUMENTS = pa.schema(
    [
        _key("row_key"),
        pa.field("source", pa.string()),
        pa.field("snapshot_id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("content_sha256", pa.string()),
        pa.field("metadata_json", pa.string()),
        pa.field("entry", pa.string()),  # the file, data file or row the document was read from
        pa.field("removed", pa.bool_()),  # in a delta: the document is gone since the base
        # the snapshot row that publishes the row (core/manifests.py; None: written before)
        pa.field("snapshot_key", pa.string()),
    ]
)
# The stamp of every entry a snapshot read (a file's size and times, a data file's deletes):
# an entry whose stamp has not moved is not read again. A removed entry has stamp None.
SNAPSHOT_ENTRIES = pa.schema(
    [
        _key("row_key"),
        pa.field("source", pa.string()),
        pa.field("snapshot_id", pa.string()),
        pa.field("entry", pa.string()),
        pa.field("stamp", pa.string()),
        pa.field("snapshot_key", pa.string()),  # as in SNAPSHOT_DOCUMENTS
    ]
)
DOCUMENT_TEXTS = pa.schema([_key("content_sha256"), pa.field("text", pa.string())])


DEAD_LETTER_REASON = "embedding failed"  # how a quarantine row of a chunk (not a document) begins


SERVE_TAG_PREFIX = "serve-v"


def serve_tag(version: int) -> str:
    """The tag that pins a table version a serving_index run indexed
    (cleanup keeps tagged versions)."""
    return f"{SERVE_TAG_PREFIX}{version}"


def latest_serve_tag(table) -> int | None:
    """The newest table version a serving_index run indexed and tagged (None: never indexed)."""
    versions = [
        int(name.removeprefix(SERVE_TAG_PREFIX))
        for name in table.tags.list()
        if name.startswith(SERVE_TAG_PREFIX)
    ]
    return max(versions) if versions else None


def dead_letter_id(source: str, version_id: str, chunk_id: str) -> str:
    """quarantine_id of a chunk a model version kept failing on (one row per chunk and version)."""
    return digest(source, version_id, chunk_id)


QUARANTINE = pa.schema(
    [
        _key("quarantine_id"),
        pa.field("source", pa.string()),
        pa.field("snapshot_id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("sample", pa.string()),
        pa.field("detected_at", _TS),
        pa.field("run_id", pa.string()),
        pa.field("entry", pa.string()),  # a document's entry: carried to the next snapshot unread
    ]
)
CHUNKS = pa.schema(
    [
        _key("chunk_id"),
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("chunk_index", pa.int32()),
        pa.field("text", pa.string()),
        pa.field("chunk_sha256", pa.string()),
        pa.field("doc_sha256", pa.string()),
        pa.field("chunking_strategy", pa.string()),
        pa.field("source_snapshot", pa.string()),
        pa.field("metadata_json", pa.string()),
    ]
)
LINEAGE_COLUMNS = (
    "chunk_id",
    "doc_id",
    "source",
    "chunk_sha256",
    "doc_sha256",
    "model_name",
    "model_version",
    "chunking_strategy",
    "source_snapshot",
    "created_at",
    "run_id",
)
POINTERS = pa.schema(
    [
        _key("source"),
        pa.field("model_version", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("table_version", pa.int64()),
        pa.field("tag", pa.string()),
        pa.field("swapped_at", _TS),
        pa.field("run_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("profile", pa.string()),  # the retrieval profile (core/retrieval.py) as JSON
    ]
)
MODEL_SPECS = pa.schema(
    [
        _key("version_id"),
        pa.field("model_name", pa.string()),
        pa.field("spec_json", pa.string()),
        pa.field("recorded_at", _TS),
    ]
)
INDEX_STATE = pa.schema(
    [
        _key("key"),  # "<kind>:<table>" or "shard:<table>:<shard key>"
        pa.field("kind", pa.string()),  # trained | retrain_request | shard
        pa.field("table_name", pa.string()),
        pa.field("at", _TS),
        pa.field("table_version", pa.int64()),
        pa.field("rows", pa.int64()),
        pa.field("detail", pa.string()),  # index type, request reason, or the shard's snapshot
    ]
)
POINTER_HISTORY = pa.schema(
    [
        _key("event_id"),
        *[POINTERS.field(n) for n in POINTERS.names if n != "source"],
        pa.field("source", pa.string()),
    ]
)


def vectors_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            _key("chunk_id"),
            pa.field("doc_id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("chunk_index", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("chunk_sha256", pa.string()),
            pa.field("doc_sha256", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("chunking_strategy", pa.string()),
            pa.field("source_snapshot", pa.string()),
            pa.field("created_at", _TS),
            pa.field("run_id", pa.string()),
            pa.field("metadata_json", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def chunks_table_name(source: str, strategy: str) -> str:
    """One chunks table per (source, strategy); the shards of a source share it."""
    return f"chunks__{owner(source)}__{_SAFE.sub('_', strategy)}"


def vectors_table_name(source: str, model_version: str) -> str:
    """One vectors table per (source, model version); the shards of a source share it."""
    return f"vectors__{owner(source)}__{_SAFE.sub('_', model_version)}"
