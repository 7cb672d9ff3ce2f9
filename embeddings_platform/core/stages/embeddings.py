"""Stage 3, embeddings: embed exactly the chunks without a vector for a model version."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from ..config import RetryConfig
from ..models import Embedder, ModelVersion
from ..progress import EmbedProgress
from ..resilience import embed_isolating_failures
from ..sharding import parse_key as parse_shard_key
from ..store import (
    DEAD_LETTER_REASON,
    QUARANTINE,
    Store,
    chunks_table_name,
    dead_letter_id,
    utcnow,
    vectors_schema,
    vectors_table_name,
)

CATCH_UP_PASSES = 3

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
    passes: int = 1  # more than 1: chunks changed while the step embedded, and it caught up

    def plus(self, later: "EmbedReport") -> "EmbedReport":
        """Two passes of one step as one report (the later pass's table state)."""
        return dataclasses.replace(
            later,
            embedded=self.embedded + later.embedded,
            skipped=later.skipped,
            deleted=self.deleted + later.deleted,
            metadata_updated=self.metadata_updated + later.metadata_updated,
            model_calls=self.model_calls + later.model_calls,
            embed_seconds=self.embed_seconds + later.embed_seconds,
            dead_lettered=self.dead_lettered + later.dead_lettered,
            passes=self.passes + later.passes,
        )

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
    progress: EmbedProgress | None = None,
    retry: RetryConfig = RetryConfig(),
    dimension: int | None = None,
) -> EmbedReport:
    """Embed exactly the chunks that have no vector for this model version; drop vanished ones.

    The model is loaded only if something needs embedding, and each batch is committed as
    it is made, so a killed run resumes where it stopped. `progress` is told the plan, the
    model load and each batch (its timer decides when to log).
    """
    started = time.perf_counter()
    chunk_table_name = chunks_table_name(source, version.chunking_strategy)
    if not store.has_table(chunk_table_name):
        raise LookupError(
            f"no chunks for source {source!r} and strategy {version.chunking_strategy!r}; "
            "materialize chunks first"
        )
    loaded: list[Embedder] = []

    def embedder_once() -> Embedder:  # one model load for every pass
        if not loaded:
            loaded.append(get_embedder())
        return loaded[0]

    # Chunks written while this step embeds (a change saved mid-build) would otherwise wait for
    # the next change: the automation counts this materialization as handling them. So the step
    # passes again while the chunks table moved during the pass before (bounded).
    totals: EmbedReport | None = None
    for _ in range(CATCH_UP_PASSES):
        read_at = store.table(chunk_table_name).version
        report = _one_pass(
            store,
            source,
            version,
            chunk_table_name,
            read_at,
            embedder_once,
            run_id,
            batch_size,
            progress,
            retry,
            dimension,
        )
        totals = report if totals is None else totals.plus(report)
        if store.table(chunk_table_name).version == read_at:
            break
    totals.total_seconds = time.perf_counter() - started
    return totals


def _one_pass(
    store: Store,
    source: str,
    version: ModelVersion,
    chunk_table_name: str,
    read_at: int,
    get_embedder: Callable[[], Embedder],
    run_id: str,
    batch_size: int,
    progress: EmbedProgress | None,
    retry: RetryConfig,
    dimension: int | None,
) -> EmbedReport:
    version_id = version.version_id
    shard = parse_shard_key(source)  # a shard owns only its documents' rows of the shared tables
    chunks = [
        c
        for c in Store.read(store.open_table(chunk_table_name, read_at)).to_pylist()
        if shard.holds(c["doc_id"])
    ]
    name = vectors_table_name(source, version_id)
    table = store.table(name) if store.has_table(name) else None
    existing = (
        [
            r
            for r in Store.read(table, ["chunk_id", "doc_id", *LINEAGE_OF_TEXT]).to_pylist()
            if shard.holds(r["doc_id"])
        ]
        if table is not None
        else []
    )
    existing_meta = {r["chunk_id"]: tuple(r[c] for c in LINEAGE_OF_TEXT) for r in existing}
    current_ids = {c["chunk_id"] for c in chunks}
    # Longest first: batches of similar length pad less, as encode() over the whole list would.
    todo = sorted(
        (c for c in chunks if c["chunk_id"] not in existing_meta), key=lambda c: -len(c["text"])
    )
    if progress:
        progress.planned(len(todo), len(chunks) - len(todo))
    embedder: Embedder | None = None
    calls_before = 0
    embed_seconds = 0.0
    dead_letters: list[dict] = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        if embedder is None:
            if progress:
                progress.loading_model()
            embedder = get_embedder()
            if progress:
                progress.model_loaded()
            calls_before = getattr(embedder, "calls", 0)
        t0 = time.perf_counter()
        outcome = embed_isolating_failures(embedder.embed, [c["text"] for c in batch], retry)
        embed_seconds += time.perf_counter() - t0
        dead_letters.extend(
            _dead_letter(batch[i], version_id, reason, run_id)
            for i, reason in outcome.failures.items()
        )
        if outcome.indices:
            vectors = outcome.matrix()
            if table is None:
                table = store.table(name, vectors_schema(vectors.shape[1]), "chunk_id")
            now = utcnow()
            rows = [
                dict(
                    batch[i],
                    model_name=version.name,
                    model_version=version_id,
                    created_at=now,
                    run_id=run_id,
                    vector=vectors[row].tolist(),
                )
                for row, i in enumerate(outcome.indices)
            ]
            store.upsert(table, pa.Table.from_pylist(rows, schema=table.schema), "chunk_id")
        if progress:
            progress.embedded(min(start + batch_size, len(todo)), embed_seconds)
    if (
        table is None
    ):  # an empty source (or shard) still gets a table: it serves nothing, not stale data
        table = store.table(name, vectors_schema(dimension or get_embedder().dimension), "chunk_id")
    if (
        dead_letters
    ):  # set aside with the reason; the next run tries them again (they have no vector)
        store.upsert(
            store.table("quarantine", QUARANTINE, "quarantine_id"),
            pa.Table.from_pylist(dead_letters, schema=QUARANTINE),
            "quarantine_id",
        )
    deleted = store.delete_where_in(
        table, "chunk_id", [c for c in existing_meta if c not in current_ids]
    )
    # Same chunk text under a new document version or new metadata: the vector stays (it
    # embeds identical text); its lineage moves to the document version it now stands for.
    drift = [
        {"chunk_id": c["chunk_id"], **{col: c[col] for col in LINEAGE_OF_TEXT}}
        for c in chunks
        if c["chunk_id"] in existing_meta
        and existing_meta[c["chunk_id"]] != tuple(c[col] for col in LINEAGE_OF_TEXT)
    ]
    store.update_columns(table, drift, {col: pa.string() for col in LINEAGE_OF_TEXT})
    return EmbedReport(
        source=source,
        model_version=version_id,
        embedded=len(todo) - len(dead_letters),
        skipped=len(chunks) - len(todo),
        dead_lettered=len(dead_letters),
        deleted=deleted,
        metadata_updated=len(drift),
        model_calls=(getattr(embedder, "calls", 0) - calls_before) if embedder else 0,
        embed_seconds=embed_seconds,
        total_seconds=0.0,
        total_vectors=table.count_rows(),
        table_name=name,
        table_version=table.version,
        dimension=_dimension(table),
    )


def _dead_letter(chunk: dict, version_id: str, reason: str, run_id: str) -> dict:
    """A quarantine row for a chunk the model kept failing on."""
    return {
        "quarantine_id": dead_letter_id(chunk["source"], version_id, chunk["chunk_id"]),
        "source": chunk["source"],
        "snapshot_id": chunk["source_snapshot"],
        "doc_id": chunk["doc_id"],
        "reason": f"{DEAD_LETTER_REASON} ({version_id}, chunk {chunk['chunk_id']}): {reason}",
        "sample": chunk["text"][:200],
        "detected_at": utcnow(),
        "run_id": run_id,
    }


def _dimension(table) -> int | None:
    if table is None:
        return None
    return table.schema.field("vector").type.list_size
