"""Stage 2, chunks: bring the chunk table of (source, chunking strategy) in line with a snapshot."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from ..chunking import chunk_document
from ..config import ModelConfig
from ..ids import digest
from ..models import Tokenizer, chunk_window
from ..sharding import parse_key as parse_shard_key
from ..store import (
    CHUNKS,
    Store,
    chunks_table_name,
)


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
        return digest("chunks", self.snapshot_id, self.strategy)


def sync_chunks(
    store: Store,
    source: str,
    snapshot_id: str,
    model: ModelConfig,
    strategy: str,
    tokenizer: Tokenizer,
) -> ChunkReport:
    """Bring the chunk table of (source, strategy) in line with a snapshot.

    Only documents whose content hash changed are re-chunked; documents whose metadata
    alone changed get their metadata updated in place.
    """
    started = time.perf_counter()
    manifest = store.snapshot_manifest(source, snapshot_id)
    if not manifest and store.snapshot(source, snapshot_id) is None:  # an empty snapshot is valid
        raise LookupError(
            f"snapshot {snapshot_id!r} of source {source!r} is not recorded; materialize "
            "source_snapshot first"
        )
    table = store.table(chunks_table_name(source, strategy), CHUNKS, "chunk_id")
    shard = parse_shard_key(source)  # a shard owns only its documents' rows of the shared table
    existing = [
        r
        for r in Store.read(
            table, ["chunk_id", "doc_id", "doc_sha256", "metadata_json"]
        ).to_pylist()
        if shard.holds(r["doc_id"])
    ]
    existing_sha: dict[str, str] = {}
    for row in existing:
        existing_sha.setdefault(row["doc_id"], row["doc_sha256"])
    to_chunk = [d for d, (sha, _) in manifest.items() if existing_sha.get(d) != sha]
    texts = store.texts(manifest[d][0] for d in to_chunk)
    window = chunk_window(model)
    new_rows = []
    for doc_id in to_chunk:
        sha, meta = manifest[doc_id]
        for chunk in chunk_document(
            doc_id, texts[sha], tokenizer, window, model.chunking.overlap, strategy
        ):
            new_rows.append(
                {
                    "chunk_id": chunk.chunk_id,
                    "doc_id": doc_id,
                    "source": shard.source,
                    "chunk_index": chunk.chunk_index,
                    "text": chunk.text,
                    "chunk_sha256": chunk.chunk_sha256,
                    "doc_sha256": sha,
                    "chunking_strategy": strategy,
                    "source_snapshot": snapshot_id,
                    "metadata_json": meta,
                }
            )
    store.upsert(table, pa.Table.from_pylist(new_rows, schema=CHUNKS), "chunk_id")
    new_ids = {r["chunk_id"] for r in new_rows}
    rechunked = set(to_chunk)
    stale = [
        r["chunk_id"]
        for r in existing
        if (r["doc_id"] not in manifest or r["doc_id"] in rechunked)
        and r["chunk_id"] not in new_ids
    ]
    store.delete_where_in(table, "chunk_id", stale)
    drift = [
        {"chunk_id": r["chunk_id"], "metadata_json": manifest[r["doc_id"]][1]}
        for r in existing
        if r["doc_id"] in manifest
        and r["doc_id"] not in rechunked
        and r["metadata_json"] != manifest[r["doc_id"]][1]
    ]
    store.update_columns(table, drift, {"metadata_json": pa.string()})
    return ChunkReport(
        source,
        strategy,
        snapshot_id,
        len(to_chunk),
        len(new_rows),
        len(stale),
        len(drift),
        table.count_rows(),
        time.perf_counter() - started,
    )
