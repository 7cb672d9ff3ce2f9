"""The lifecycle steps: snapshot a source, chunk it, embed what changed, serve it.

Each step is incremental by content hash: it reads what the previous run left in the store,
does only the difference, and is safe to rerun after a crash (writes are upserts keyed on
content-derived ids; deletions happen after the new rows are written).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from .checks import ConsistencyError, consistency, model_dimension
from .chunking import chunk_document
from .config import DocumentsConfig, ModelConfig, RetryConfig, ServingConfig, SourceConfig
from .documents import Document, Rejected, read_source
from .indexing import ann_plan, build_vector_index, vector_index
from .models import (
    Embedder,
    ModelVersion,
    Tokenizer,
    chunk_window,
    load_tokenizer,
    model_version,
)
from .resilience import embed_isolating_failures
from .sharding import owner
from .sharding import parse_key as parse_shard_key
from .store import (
    CHUNKS,
    DEAD_LETTER_REASON,
    DOCUMENT_TEXTS,
    QUARANTINE,
    SNAPSHOT_DOCUMENTS,
    SNAPSHOTS,
    Store,
    chunks_table_name,
    dead_letter_id,
    retry_on_conflict,
    serve_tag,
    utcnow,
    vectors_schema,
    vectors_table_name,
)

Progress = Callable[[int, int, float], None]  # (done, total, seconds so far)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


def _metadata_json(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)


# --- snapshot ----------------------------------------------------------------------------


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
    lines = sorted(f"{d.doc_id}\x1e{d.content_sha256}\x1e{_metadata_json(d.metadata)}" for d in docs)
    return _digest("snapshot-v1", *lines)


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
        1 for d, v in current.items() if d in previous and previous[d][0] == v[0] and previous[d][1] != v[1]
    )
    removed = sum(1 for d in previous if d not in current)
    report = SnapshotReport(
        source.name, snapshot_id, previous_id, len(docs), added, changed, removed,
        len(docs) - added - changed, metadata_changed, rejected,
        lossy_documents=sum(1 for d in docs if d.lossy),
    )
    now = utcnow()
    if rejected:
        quarantine = store.table("quarantine", QUARANTINE, "quarantine_id")
        rows = [
            {
                "quarantine_id": _digest(source.name, snapshot_id, r.doc_id, r.reason),
                "source": source.name, "snapshot_id": snapshot_id, "doc_id": r.doc_id,
                "reason": r.reason, "sample": r.sample[:200], "detected_at": now, "run_id": run_id,
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
        pa.Table.from_pylist([{"content_sha256": h, "text": t} for h, t in unique.items()], schema=DOCUMENT_TEXTS),
        "content_sha256",
    )
    manifest = store.table("snapshot_documents", SNAPSHOT_DOCUMENTS, "row_key")
    rows = [
        {"row_key": f"{source.name}:{snapshot_id}:{doc_id}", "source": source.name,
         "snapshot_id": snapshot_id, "doc_id": doc_id, "content_sha256": sha, "metadata_json": meta}
        for doc_id, (sha, meta) in current.items()
    ]
    store.upsert(manifest, pa.Table.from_pylist(rows, schema=SNAPSHOT_DOCUMENTS), "row_key")
    # The snapshot row is written last: it is what makes the snapshot visible.
    snapshots = store.table("snapshots", SNAPSHOTS, "snapshot_key")
    store.upsert(
        snapshots,
        pa.Table.from_pylist([{
            "snapshot_key": f"{source.name}:{snapshot_id}:{now.isoformat()}", "source": source.name,
            "snapshot_id": snapshot_id, "created_at": now, "run_id": run_id, "documents": len(docs),
            "added": added, "changed": changed, "removed": removed, "unchanged": report.unchanged,
            "quarantined": len(rejected), "previous_snapshot_id": previous_id,
        }], schema=SNAPSHOTS),
        "snapshot_key",
    )
    return report


# --- chunks ------------------------------------------------------------------------------


@dataclass
class ChunkReport:
    source: str
    strategy: str
    snapshot_id: str
    documents_chunked: int
    chunks_written: int
    chunks_deleted: int
    metadata_updated: int
    total_chunks: int
    seconds: float

    @property
    def data_version(self) -> str:
        return _digest("chunks", self.snapshot_id, self.strategy)


def sync_chunks(
    store: Store, source: str, snapshot_id: str, model: ModelConfig, strategy: str, tokenizer: Tokenizer
) -> ChunkReport:
    """Bring the chunk table of (source, strategy) in line with a snapshot.

    Only documents whose content hash changed are re-chunked; documents whose metadata
    alone changed get their metadata updated in place.
    """
    started = time.perf_counter()
    manifest = store.snapshot_manifest(source, snapshot_id)
    if not manifest:
        raise LookupError(f"snapshot {snapshot_id!r} of source {source!r} is not recorded; materialize source_snapshot first")
    table = store.table(chunks_table_name(source, strategy), CHUNKS, "chunk_id")
    shard = parse_shard_key(source)  # a shard owns only its documents' rows of the shared table
    existing = [r for r in Store.read(table, ["chunk_id", "doc_id", "doc_sha256", "metadata_json"]).to_pylist()
                if shard.holds(r["doc_id"])]
    existing_sha: dict[str, str] = {}
    for row in existing:
        existing_sha.setdefault(row["doc_id"], row["doc_sha256"])
    to_chunk = [d for d, (sha, _) in manifest.items() if existing_sha.get(d) != sha]
    texts = store.texts(manifest[d][0] for d in to_chunk)
    window = chunk_window(model)
    new_rows = []
    for doc_id in to_chunk:
        sha, meta = manifest[doc_id]
        for chunk in chunk_document(doc_id, texts[sha], tokenizer, window, model.chunking.overlap, strategy):
            new_rows.append({
                "chunk_id": chunk.chunk_id, "doc_id": doc_id, "source": shard.source,
                "chunk_index": chunk.chunk_index, "text": chunk.text, "chunk_sha256": chunk.chunk_sha256,
                "doc_sha256": sha, "chunking_strategy": strategy, "source_snapshot": snapshot_id,
                "metadata_json": meta,
            })
    store.upsert(table, pa.Table.from_pylist(new_rows, schema=CHUNKS), "chunk_id")
    new_ids = {r["chunk_id"] for r in new_rows}
    rechunked = set(to_chunk)
    stale = [
        r["chunk_id"] for r in existing
        if (r["doc_id"] not in manifest or r["doc_id"] in rechunked) and r["chunk_id"] not in new_ids
    ]
    store.delete_where_in(table, "chunk_id", stale)
    drift = [
        {"chunk_id": r["chunk_id"], "metadata_json": manifest[r["doc_id"]][1]}
        for r in existing
        if r["doc_id"] in manifest and r["doc_id"] not in rechunked and r["metadata_json"] != manifest[r["doc_id"]][1]
    ]
    _update_columns(table, drift, {"metadata_json": pa.string()})
    return ChunkReport(
        source, strategy, snapshot_id, len(to_chunk), len(new_rows), len(stale), len(drift),
        table.count_rows(), time.perf_counter() - started,
    )


def _update_columns(table, rows: list[dict], columns: dict[str, pa.DataType]) -> None:
    """Update some columns of existing rows by chunk_id, leaving vectors untouched."""
    if not rows:
        return
    schema = pa.schema([pa.field("chunk_id", pa.string(), nullable=False),
                        *[pa.field(n, t) for n, t in columns.items()]])
    data = pa.Table.from_pylist(rows, schema=schema)
    retry_on_conflict(lambda: table.merge_insert("chunk_id").when_matched_update_all().execute(data))


# --- embeddings --------------------------------------------------------------------------

# Columns a vector copies from its chunk that can change without the chunk text changing.
LINEAGE_OF_TEXT = ("doc_sha256", "source_snapshot", "metadata_json")


@dataclass
class EmbedReport:
    source: str
    model_version: str
    embedded: int
    skipped: int
    deleted: int
    metadata_updated: int
    model_calls: int
    embed_seconds: float
    total_seconds: float
    total_vectors: int
    table_name: str
    table_version: int | None
    dimension: int | None
    dead_lettered: int = 0  # chunks the model kept failing on: in quarantine, retried next run

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def sync_embeddings(
    store: Store,
    source: str,
    version: ModelVersion,
    get_embedder: Callable[[], Embedder],
    run_id: str,
    batch_size: int = 256,
    progress: Progress | None = None,
    retry: RetryConfig = RetryConfig(),
) -> EmbedReport:
    """Embed exactly the chunks that have no vector for this model version; drop vanished ones.

    The model is loaded only if something needs embedding, and each batch is committed as
    it is made, so a killed run resumes where it stopped.
    """
    started = time.perf_counter()
    version_id = version.version_id
    chunk_table_name = chunks_table_name(source, version.chunking_strategy)
    if not store.has_table(chunk_table_name):
        raise LookupError(f"no chunks for source {source!r} and strategy {version.chunking_strategy!r}; materialize chunks first")
    shard = parse_shard_key(source)  # a shard owns only its documents' rows of the shared tables
    chunks = [c for c in Store.read(store.table(chunk_table_name)).to_pylist() if shard.holds(c["doc_id"])]
    name = vectors_table_name(source, version_id)
    table = store.table(name) if store.has_table(name) else None
    existing = ([r for r in Store.read(table, ["chunk_id", "doc_id", *LINEAGE_OF_TEXT]).to_pylist() if shard.holds(r["doc_id"])]
                if table is not None else [])
    existing_meta = {r["chunk_id"]: tuple(r[c] for c in LINEAGE_OF_TEXT) for r in existing}
    current_ids = {c["chunk_id"] for c in chunks}
    # Longest first: batches of similar length pad less, as encode() over the whole list would.
    todo = sorted((c for c in chunks if c["chunk_id"] not in existing_meta), key=lambda c: -len(c["text"]))
    embedder: Embedder | None = None
    calls_before = 0
    embed_seconds = 0.0
    dead_letters: list[dict] = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        if embedder is None:
            embedder = get_embedder()
            calls_before = getattr(embedder, "calls", 0)
        t0 = time.perf_counter()
        outcome = embed_isolating_failures(embedder.embed, [c["text"] for c in batch], retry)
        embed_seconds += time.perf_counter() - t0
        dead_letters.extend(_dead_letter(batch[i], version_id, reason, run_id) for i, reason in outcome.failures.items())
        if outcome.indices:
            vectors = outcome.matrix()
            if table is None:
                table = store.table(name, vectors_schema(vectors.shape[1]), "chunk_id")
            now = utcnow()
            rows = [
                dict(batch[i], model_name=version.name, model_version=version_id, created_at=now, run_id=run_id,
                     vector=vectors[row].tolist())
                for row, i in enumerate(outcome.indices)
            ]
            store.upsert(table, pa.Table.from_pylist(rows, schema=table.schema), "chunk_id")
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo), time.perf_counter() - started)
    if dead_letters:  # set aside with the reason; the next run tries them again (they have no vector)
        store.upsert(store.table("quarantine", QUARANTINE, "quarantine_id"),
                     pa.Table.from_pylist(dead_letters, schema=QUARANTINE), "quarantine_id")
    deleted = 0
    drift: list[dict] = []
    if table is not None:
        deleted = store.delete_where_in(table, "chunk_id", [c for c in existing_meta if c not in current_ids])
        # Same chunk text under a new document version or new metadata: the vector stays (it
        # embeds identical text); its lineage moves to the document version it now stands for.
        drift = [
            {"chunk_id": c["chunk_id"], **{col: c[col] for col in LINEAGE_OF_TEXT}}
            for c in chunks
            if c["chunk_id"] in existing_meta and existing_meta[c["chunk_id"]] != tuple(c[col] for col in LINEAGE_OF_TEXT)
        ]
        _update_columns(table, drift, {col: pa.string() for col in LINEAGE_OF_TEXT})
    return EmbedReport(
        source=source, model_version=version_id, embedded=len(todo) - len(dead_letters),
        skipped=len(chunks) - len(todo), dead_lettered=len(dead_letters),
        deleted=deleted, metadata_updated=len(drift),
        model_calls=(getattr(embedder, "calls", 0) - calls_before) if embedder else 0,
        embed_seconds=embed_seconds, total_seconds=time.perf_counter() - started,
        total_vectors=table.count_rows() if table is not None else 0, table_name=name,
        table_version=table.version if table is not None else None,
        dimension=_dimension(table),
    )


def _dead_letter(chunk: dict, version_id: str, reason: str, run_id: str) -> dict:
    """A quarantine row for a chunk the model kept failing on."""
    return {
        "quarantine_id": dead_letter_id(chunk["source"], version_id, chunk["chunk_id"]), "source": chunk["source"],
        "snapshot_id": chunk["source_snapshot"], "doc_id": chunk["doc_id"],
        "reason": f"{DEAD_LETTER_REASON} ({version_id}, chunk {chunk['chunk_id']}): {reason}",
        "sample": chunk["text"][:200], "detected_at": utcnow(), "run_id": run_id,
    }


def _dimension(table) -> int | None:
    if table is None:
        return None
    return table.schema.field("vector").type.list_size


# --- serving index -----------------------------------------------------------------------


class MixedModelVersionsError(RuntimeError):
    """Raised rather than serve an index whose rows come from more than one model version."""


@dataclass
class IndexReport:
    source: str
    model_version: str
    table_name: str
    table_version: int
    rows: int
    index_type: str
    pointer_moved: bool
    serving_model_version: str | None
    seconds: float
    rebuilt: bool

    @property
    def data_version(self) -> str:
        return f"{self.model_version}@{self.table_version}"


def model_versions_in(table) -> set[str]:
    return set(Store.read(table, ["model_version"]).column("model_version").unique().to_pylist())


def _vector_index_names(table) -> list[str]:
    return [i.name for i in table.list_indices() if "vector" in i.columns]


def build_serving_index(
    store: Store,
    source: str,
    version_id: str,
    serving: ServingConfig,
    run_id: str,
    is_default_model: bool,
    expected_dimension: int | None = None,
) -> IndexReport:
    """Index a model version's table and, if it is what serves this source, move the pointer.

    A table of a version that does not serve yet is indexed as a shadow candidate; only a
    migration (after its gate) moves the pointer to it. The pointer moves only to a table
    that passes `checks.consistency` (else ConsistencyError, and the old target keeps serving).
    """
    started = time.perf_counter()
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        raise LookupError(f"no vectors for source {source!r} and model {version_id!r}; materialize embeddings first")
    table = store.table(name)
    found = model_versions_in(table)
    if found - {version_id}:
        raise MixedModelVersionsError(
            f"table {name} holds vectors of model versions {sorted(found)}; refusing to serve it"
        )
    pointer = store.pointer(source)
    serves_this = pointer is not None and pointer["model_version"] == version_id
    rows = table.count_rows()
    # Indexing bumps the table version and tags it; a tag on the current version means
    # nothing was written since the last build, so there is nothing to rebuild.
    rebuilt = serve_tag(table.version) not in table.tags.list()
    if rebuilt:  # the shards of a source may index their shared table at the same time
        plan = ann_plan(rows, serving.ann_min_rows)
        if not plan.exact:
            retry_on_conflict(lambda: build_vector_index(table, plan))
        else:
            for index_name in _vector_index_names(table):
                retry_on_conflict(lambda n=index_name: table.drop_index(n))
        if rows:
            retry_on_conflict(lambda: table.create_fts_index("text", replace=True))
        _tag(table, table.version)
    table_version = table.version
    tag = serve_tag(table_version)
    already_pinned = serves_this and pointer["table_name"] == name and pointer["table_version"] == table_version
    moved = not already_pinned and (serves_this or (pointer is None and is_default_model))
    if moved:  # blocking check: never point serving at an inconsistent table
        check = consistency(store, source, version_id, expected_dimension, check_pointer=False)
        if not check.ok:
            raise ConsistencyError(check)
    if moved:  # a refresh only ever moves forward: a slower shard cannot pin an older version
        moved = store.set_pointer({
            "source": owner(source), "model_version": version_id, "table_name": name,
            "table_version": table_version, "tag": tag, "swapped_at": utcnow(), "run_id": run_id,
            "reason": "refresh" if serves_this else "initial",
        }, only_forward=True)
    return IndexReport(
        source, version_id, name, table_version, rows, _index_type(table), moved,
        version_id if (moved or serves_this) else (pointer["model_version"] if pointer else None),
        time.perf_counter() - started, rebuilt=rebuilt,
    )


def _tag(table, version: int) -> None:
    """Tag a version for serving (keeps cleanup from deleting it); another shard may have."""
    try:
        table.tags.create(serve_tag(version), version)
    except (ValueError, OSError, RuntimeError) as exc:
        if "exist" not in str(exc).lower():
            raise


def _index_type(table) -> str:
    index = vector_index(table)
    return str(index.index_type) if index is not None else "exact"


# --- the whole chain, without an orchestrator -------------------------------------------


@dataclass
class RefreshReport:
    snapshot: SnapshotReport
    chunks: ChunkReport
    embeddings: EmbedReport
    index: IndexReport


def refresh(
    store: Store,
    source: SourceConfig,
    model: ModelConfig,
    serving: ServingConfig,
    get_embedder: Callable[[], Embedder],
    run_id: str,
    is_default_model: bool = True,
    retry: RetryConfig = RetryConfig(),
    documents: DocumentsConfig = DocumentsConfig(),
) -> RefreshReport:
    """snapshot -> chunks -> embeddings -> serving index for one source x model cell.

    The same calls the Dagster assets make, in order; for benchmarks, scripts and tests
    that do not need the orchestrator.
    """
    version = model_version(model)
    snap = take_snapshot(store, source, run_id, documents)
    chunk_report = sync_chunks(store, source.name, snap.snapshot_id, model, version.chunking_strategy,
                               load_tokenizer(model))
    embed_report = sync_embeddings(store, source.name, version, get_embedder, run_id,
                                   batch_size=model.batch_size * 8, retry=retry)
    index_report = build_serving_index(store, source.name, version.version_id, serving, run_id, is_default_model,
                                       expected_dimension=model_dimension(model))
    return RefreshReport(snap, chunk_report, embed_report, index_report)
