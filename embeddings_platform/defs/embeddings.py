"""Stage 3 in Dagster: `embeddings` per (source, model version), its checks (consistency,
staleness) and `embed_job` (backfill it over shard partitions for a full embed)."""

from dataclasses import asdict

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetSelection,
    Backoff,
    DataVersion,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    asset_check,
    define_asset_job,
)

from ..core import checks as core
from ..core.config import PlatformConfig
from ..core.models import load_tokenizer, model_dimension, model_version
from ..core.progress import EmbedProgress
from ..core.serving import (
    model_for_version,
    registered_model_for,
    versions_in_use,
)
from ..core.stages.chunks import sync_chunks
from ..core.stages.embeddings import sync_embeddings
from ..core.store import chunks_table_name
from ..core.table_versions import last_data_version
from .common import (
    GROUP,
    OWNERS,
    _markdown_table,
    expected_dimension,
    grid_check,
    grid_of,
)
from .conditions import AFTER_DATA_CHANGE, ON_UPSTREAM_CHANGE
from .partitions import source_model_partitions
from .resources import PlatformResource


def model_to_build(context: AssetExecutionContext, config: PlatformConfig, store, version_id: str):
    """The settings of a version to refresh, or None for a retired one: unregistered and neither
    serving nor restorable by a rollback, so it no longer needs to follow the source."""
    registered = registered_model_for(config, version_id)
    if registered is not None:
        return registered
    if version_id not in versions_in_use(store, config.serving.retention_hours):
        context.log.info(
            f"model version {version_id} is retired (not registered, not serving, past "
            "retention): nothing to refresh"
        )
        return None
    return model_for_version(config, store, version_id)


def _ensure_chunks_for_strategy(context: AssetExecutionContext, store, source: str, model) -> None:
    """A newly registered model may chunk differently: cut its chunks before embedding.

    The chunks asset keeps every registered strategy current; this covers only the first
    run of a new model version, which can be triggered before chunks re-runs.
    """
    version = model_version(model)
    if store.has_table(chunks_table_name(source, version.chunking_strategy)):
        return
    snapshot = store.latest_snapshot(source)
    if snapshot is None:
        raise LookupError(f"source {source!r} has no snapshot; materialize source_snapshot first")
    report = sync_chunks(
        store,
        source,
        snapshot["snapshot_id"],
        model,
        version.chunking_strategy,
        load_tokenizer(model),
    )
    context.log.info(
        f"new chunking strategy {version.chunking_strategy}: wrote {report.chunks_written} chunks"
    )


@asset(
    partitions_def=source_model_partitions,
    deps=["chunks"],
    # runs in parallel, but at most pools.default_limit model-loading steps at once
    pool="embedding_model",
    # Model calls retry inside the step (config `retry:`); this retries the step itself after
    # other failures (storage, a killed worker). It resumes: committed batches are not redone.
    retry_policy=RetryPolicy(
        max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
    group_name=GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Vectors of one source under one model version: the system of record. Embeds only "
        "chunks without a vector for this version, deletes vectors of vanished chunks, "
        "upserts on chunk_id; every row carries its lineage."
    ),
)
def embeddings(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    # the timer starts with the step: its first line comes within seconds, whatever loads
    with EmbedProgress(context.log.info) as progress:
        return _embed(context, platform, progress)


def _embed(context, platform: PlatformResource, progress: EmbedProgress) -> MaterializeResult:
    config = platform.load()
    source, version_id = grid_of(context)
    store = platform.store(config)
    model = model_to_build(context, config, store, version_id)
    if model is None:
        return MaterializeResult(
            metadata={"retired": True, "model_version": version_id},
            data_version=DataVersion(f"{version_id}@retired"),
        )
    version = model_version(model)
    store.record_model_spec(version_id, model.name, asdict(model))
    _ensure_chunks_for_strategy(context, store, source, model)
    report = sync_embeddings(
        store,
        source,
        version,
        lambda: platform.embedder(model),
        context.run.run_id,
        batch_size=model.batch_size * 8,
        progress=progress,
        retry=config.retry,
        dimension=model_dimension(model),
    )
    if report.dead_lettered:
        context.log.warning(
            f"{report.dead_lettered} chunks kept failing in the model and went to the quarantine "
            "table (reason per chunk); they are retried on the next run"
        )
    counts = {
        "embedded": report.embedded,
        "skipped": report.skipped,
        "deleted": report.deleted,
        "metadata_updated": report.metadata_updated,
        "dead_lettered": report.dead_lettered,
    }
    return MaterializeResult(
        metadata={
            **counts,
            "model_calls": report.model_calls,
            "vectors": report.total_vectors,
            "chunks_per_second": round(report.chunks_per_second, 2),
            "embed_seconds": round(report.embed_seconds, 3),
            "model_load_seconds": round(progress.load_seconds, 3),  # 0: no model was needed
            "model_version": version_id,
            # identities: text, not plotted (a plot of a constant is noise)
            "dimension": MetadataValue.text(str(report.dimension or "unknown")),
            "table": report.table_name,
            "table_version": MetadataValue.text(str(report.table_version or "none")),
            "summary": _markdown_table(counts),
        },
        # rows, not indexes: serving_index's own index commits must not look like new data
        data_version=DataVersion(f"{version_id}@{_data_version(store, report)}"),
    )


def _data_version(store, report) -> int | None:
    if report.table_version is None:  # nothing embedded yet: no table
        return None
    return last_data_version(store.table(report.table_name))


@asset_check(
    asset=embeddings,
    name="consistency",
    partitions_def=source_model_partitions,
    blocking=True,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "One model version per table, dimension equal to the model's, no NaN/inf/null/zero-norm "
        "vectors, no duplicate chunk_id, chunk and vector counts agree. Blocking: an ERROR keeps "
        "serving_index (and so the serving pointer) from moving in the same run."
    ),
)
def embeddings_consistency(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    return grid_check(
        context,
        platform,
        "consistency",
        lambda config, store, source, version: core.consistency(
            store, source, version, expected_dimension(config, store, version), check_pointer=False
        ),
    )


@asset_check(
    asset=embeddings,
    name="staleness",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "Vectors whose chunk changed or vanished, chunks without a vector, documents deleted or "
        "changed in the newest snapshot still in the table, lag behind the newest snapshot."
    ),
)
def embeddings_staleness(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    return grid_check(
        context,
        platform,
        "staleness",
        lambda config, store, source, version: core.staleness(
            store, source, version, config.checks
        ),
    )


embed_job = define_asset_job(
    "embed_job",
    selection=AssetSelection.assets("embeddings", "serving_index"),
    description=(
        "Embed and index one (source or shard, model version) partition, with its checks. "
        "Backfill it over the shard partitions of a source for a full embed or a migration: "
        "any number of workers take them."
    ),
)


ASSETS = [embeddings]
CHECKS_DEFS = [embeddings_consistency, embeddings_staleness]
JOBS = [embed_job]
