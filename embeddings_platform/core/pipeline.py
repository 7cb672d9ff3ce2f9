"""The lifecycle steps: snapshot a source, chunk it, embed what changed, serve it.

Each step is incremental by content hash: it reads what the previous run left in the store,
does only the difference, and is safe to rerun after a crash (writes are upserts keyed on
content-derived ids; deletions happen after the new rows are written).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .config import (
    DocumentsConfig,
    ModelConfig,
    RetryConfig,
    ServingConfig,
    SourceConfig,
)
from .models import Embedder, load_tokenizer, model_dimension, model_version, prepare_model
from .stages.chunks import ChunkReport, sync_chunks
from .stages.embeddings import EmbedReport, sync_embeddings
from .stages.serving_index import (
    IndexReport,
    MixedModelVersionsError,
    build_serving_index,
    model_versions_in,
)
from .stages.snapshot import SnapshotReport, snapshot_id_of, take_snapshot
from .store import Store

__all__ = [
    "ChunkReport",
    "EmbedReport",
    "IndexReport",
    "MixedModelVersionsError",
    "RefreshReport",
    "SnapshotReport",
    "build_serving_index",
    "model_versions_in",
    "refresh",
    "snapshot_id_of",
    "sync_chunks",
    "sync_embeddings",
    "take_snapshot",
]


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
    prepare_model(model)  # a distilled or exported version is made once, here in the run
    version = model_version(model)
    store.record_model_spec(version.version_id, model.name, asdict(model))
    snap = take_snapshot(store, source, run_id, documents)
    chunk_report = sync_chunks(
        store,
        source.name,
        snap.snapshot_id,
        model,
        version.chunking_strategy,
        load_tokenizer(model),
    )
    embed_report = sync_embeddings(
        store,
        source.name,
        version,
        get_embedder,
        run_id,
        batch_size=model.batch_size * 8,
        retry=retry,
        dimension=model_dimension(model),
    )
    index_report = build_serving_index(
        store,
        source.name,
        version.version_id,
        serving,
        run_id,
        is_default_model,
        expected_dimension=model_dimension(model),
    )
    return RefreshReport(snap, chunk_report, embed_report, index_report)
