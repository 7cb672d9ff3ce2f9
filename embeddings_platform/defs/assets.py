"""The asset graph: source_snapshot -> chunks -> embeddings -> serving_index.

Each asset reads resources, calls one core function, and reports numbers the UI plots.
"""


import time
from dataclasses import asdict
from datetime import timedelta

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    DataVersion,
    FreshnessPolicy,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from ..core import checks as core_checks
from ..core.config import PlatformConfig, RefreshConfig, load_config
from ..core.evaluation import labelled_queries
from ..core.models import load_tokenizer, model_dimension, model_version
from ..core.serving import (
    model_for_version,
    models_in_use,
    registered_model_for,
    text_preview,
    versions_in_use,
)
from ..core.stages.chunks import sync_chunks
from ..core.stages.embeddings import sync_embeddings
from ..core.stages.serving_index import build_serving_index
from ..core.stages.snapshot import take_snapshot
from ..core.store import chunks_table_name, last_data_version
from .conditions import ON_UPSTREAM_CHANGE
from .partitions import source_model_partitions, source_partitions
from .progress import EmbedProgress
from .resources import PlatformResource
from .results import to_result

OWNERS = ["team:ml-platform"]
GROUP = "embeddings"


def _refresh_config() -> RefreshConfig:
    try:
        return load_config().refresh
    except Exception:  # noqa: BLE001 - a broken registry is reported by the sensor and assets
        return RefreshConfig()


_REFRESH = _refresh_config()
# Every asset must have been (re-)checked within the window: the refresh sensor re-checks a
# source at the warn window, so FAIL in the UI means the re-checks themselves are failing.
FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=_REFRESH.freshness_fail_hours),
    warn_window=timedelta(hours=_REFRESH.freshness_warn_hours),
)


def _markdown_table(rows: dict[str, object]) -> MetadataValue:
    lines = ["| what | count |", "| --- | ---: |", *[f"| {k} | {v} |" for k, v in rows.items()]]
    return MetadataValue.md("\n".join(lines))


def _grid(context: AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["source"], keys["model"]


@asset(
    partitions_def=source_partitions,
    group_name=GROUP,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    freshness_policy=FRESHNESS,
    description=(
        "Immutable, content-addressed snapshot of one registered source: every document "
        "validated and hashed; bad documents quarantined with a reason."
    ),
    # Evaluated inside every snapshot run, so it can never lag the snapshot it describes.
    check_specs=[AssetCheckSpec(
        "quarantine", asset="source_snapshot", partitions_def=source_partitions,
        description="Documents of the newest snapshot set aside in the quarantine table, counted by reason "
                    "(undecodable, empty, unprintable, lossy text, too large, parser errors, "
                    "broken links, special files, no usable tokens, duplicates). "
                    "WARN when any.")],
)
def source_snapshot(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    store = platform.store(config)
    report = take_snapshot(store, config.source(context.partition_key), context.run_id,
                           config.documents)
    for rejected in report.quarantined[:20]:
        context.log.warning(f"quarantined {rejected.doc_id!r}: {rejected.reason}")
    if report.lossy_documents:
        context.log.warning(f"kept {report.lossy_documents} documents holding a few U+FFFD "
                            "(below documents.max_replacement_fraction)")
    quarantine = to_result(core_checks.quarantine(store, context.partition_key), "quarantine")
    counts = {
        "documents": report.documents, "added": report.added, "changed": report.changed,
        "removed": report.removed, "unchanged": report.unchanged,
        "metadata_changed": report.metadata_changed, "quarantined": len(report.quarantined),
        "lossy_documents": report.lossy_documents,
    }
    return MaterializeResult(
        metadata={
            **counts,
            "snapshot_id": report.snapshot_id,
            "new_snapshot": report.is_new,
            "summary": _markdown_table(counts),
        },
        data_version=DataVersion(report.snapshot_id),
        check_results=[quarantine],
    )


@asset(
    partitions_def=source_partitions,
    deps=[source_snapshot],
    group_name=GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    freshness_policy=FRESHNESS,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Token-window chunks of the latest snapshot, per chunking strategy of the registered "
        "models (measured with each model's own tokenizer); chunk_id = hash(doc, strategy, text)."
    ),
)
def chunks(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    store = platform.store(config)
    source = context.partition_key
    snapshot = store.latest_snapshot(source)
    if snapshot is None:
        raise LookupError(f"source {source!r} has no snapshot; materialize source_snapshot first")
    # Every model that builds or serves: an edited entry's old version keeps serving until a
    # migration replaces it, so its chunking strategy stays current too.
    in_use = models_in_use(config, store, config.serving.retention_hours)
    by_strategy = {model_version(m).chunking_strategy: m for m in reversed(in_use)}
    metadata: dict[str, object] = {"snapshot_id": snapshot["snapshot_id"], "strategies": len(by_strategy)}
    totals = {"documents_chunked": 0, "chunks_written": 0, "chunks_deleted": 0, "metadata_updated": 0, "total_chunks": 0}
    for strategy, model in sorted(by_strategy.items()):
        report = sync_chunks(store, source, snapshot["snapshot_id"], model, strategy, load_tokenizer(model))
        context.log.info(
            f"{strategy}: chunked {report.documents_chunked} documents, wrote {report.chunks_written}, "
            f"deleted {report.chunks_deleted}, total {report.total_chunks}"
        )
        for key in totals:
            totals[key] += getattr(report, key)
    data_version = "|".join([snapshot["snapshot_id"], *sorted(by_strategy)])
    return MaterializeResult(
        metadata={**metadata, **totals, "summary": _markdown_table(totals)},
        data_version=DataVersion(data_version),
    )


def _model_to_build(context: AssetExecutionContext, config: PlatformConfig, store, version_id: str):
    """The settings of a version to refresh, or None for a retired one: unregistered and neither
    serving nor restorable by a rollback, so it no longer needs to follow the source."""
    if registered_model_for(config, version_id) is not None:
        return registered_model_for(config, version_id)
    if version_id not in versions_in_use(store, config.serving.retention_hours):
        context.log.info(f"model version {version_id} is retired (not registered, not serving, past "
                         "retention): nothing to refresh")
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
    report = sync_chunks(store, source, snapshot["snapshot_id"], model, version.chunking_strategy, load_tokenizer(model))
    context.log.info(f"new chunking strategy {version.chunking_strategy}: wrote {report.chunks_written} chunks")


class _TimedLoad:
    """The model loader sync_embeddings calls (only if something needs embedding), timed: a
    refresh's latency is often the model load, so each run reports it."""

    def __init__(self, load):
        self._load = load
        self.seconds = 0.0

    def __call__(self):
        started = time.perf_counter()
        try:
            return self._load()
        finally:
            self.seconds += time.perf_counter() - started


@asset(
    partitions_def=source_model_partitions,
    deps=[chunks],
    pool="embedding_model",  # runs in parallel, but at most pools.default_limit model-loading steps at once
    # Model calls retry inside the step (config `retry:`); this retries the step itself after
    # other failures (storage, a killed worker). It resumes: committed batches are not redone.
    retry_policy=RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
    group_name=GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    freshness_policy=FRESHNESS,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Vectors of one source under one model version: the system of record. Embeds only "
        "chunks without a vector for this version, deletes vectors of vanished chunks, "
        "upserts on chunk_id; every row carries its lineage."
    ),
)
def embeddings(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    source, version_id = _grid(context)
    store = platform.store(config)
    model = _model_to_build(context, config, store, version_id)
    if model is None:
        return MaterializeResult(metadata={"retired": True, "model_version": version_id},
                                 data_version=DataVersion(f"{version_id}@retired"))
    version = model_version(model)
    store.record_model_spec(version_id, model.name, asdict(model))
    _ensure_chunks_for_strategy(context, store, source, model)

    log_progress = EmbedProgress(context.log.info, f"{source} x {version_id}")
    load = _TimedLoad(lambda: platform.embedder(model))
    report = sync_embeddings(
        store, source, version, load, context.run_id,
        batch_size=model.batch_size * 8, progress=log_progress, retry=config.retry,
        dimension=model_dimension(model),
    )
    log_progress.close()
    if report.dead_lettered:
        context.log.warning(f"{report.dead_lettered} chunks kept failing in the model and went to the quarantine "
                            "table (reason per chunk); they are retried on the next run")
    counts = {"embedded": report.embedded, "skipped": report.skipped, "deleted": report.deleted,
              "metadata_updated": report.metadata_updated, "dead_lettered": report.dead_lettered}
    return MaterializeResult(
        metadata={
            **counts,
            "model_calls": report.model_calls,
            "vectors": report.total_vectors,
            "chunks_per_second": round(report.chunks_per_second, 2),
            "embed_seconds": round(report.embed_seconds, 3),
            "model_load_seconds": round(load.seconds, 3),  # 0 when nothing needed the model
            "model_version": version_id,
            "dimension": report.dimension or 0,
            "table": report.table_name,
            "table_version": report.table_version or 0,
            "summary": _markdown_table(counts),
        },
        # rows, not indexes: serving_index's own index commits must not look like new data
        data_version=DataVersion(f"{version_id}@{_data_version(store, report)}"),
    )


def _data_version(store, report) -> int | None:
    if report.table_version is None:  # nothing embedded yet: no table
        return None
    return last_data_version(store.table(report.table_name))


@asset(
    partitions_def=source_model_partitions,
    deps=[embeddings],
    group_name=GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    freshness_policy=FRESHNESS,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Vector index (ANN above serving.ann_min_rows, exact below) and full-text index on a "
        "model version's table, tagged at a pinned table version. Moves the source's serving "
        "pointer when this version is what serves; otherwise it is a shadow candidate."
    ),
)
def serving_index(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    source, version_id = _grid(context)
    model = _model_to_build(context, config, platform.store(config), version_id)
    if model is None:
        return MaterializeResult(metadata={"retired": True, "model_version": version_id},
                                 data_version=DataVersion(f"{version_id}@retired"))
    report = build_serving_index(
        platform.store(config), source, version_id, config.serving, context.run_id,
        is_default_model=model.name == config.serving_model(source),
        expected_dimension=model_dimension(model),  # the pointer only moves to a consistent table
    )
    preview = _sample_search(platform, config, source, report)
    return MaterializeResult(
        metadata={
            **preview,
            "rows": report.rows,
            "index_type": report.index_type,
            "table": report.table_name,
            "table_version": report.table_version,
            "pointer_moved": report.pointer_moved,
            "serving_model_version": report.serving_model_version or "",
            "rebuilt": report.rebuilt,
            "refused_empty": report.refused_empty,
            "index_seconds": round(report.seconds, 3),
        },
        data_version=DataVersion(report.data_version),
    )


def _sample_search(platform: PlatformResource, config: PlatformConfig, source: str, report) -> dict:
    """A Markdown preview of what the index returns for the source's first labelled query."""
    queries = labelled_queries(config.source(source))
    if not queries or not report.rows:
        return {}
    query = queries[0].text
    hits = text_preview(platform.store(config), report.table_name, report.table_version, query)
    lines = [f"**{query}** (full-text, table `{report.table_name}` v{report.table_version})", "",
             "| # | document | score | text |", "| ---: | --- | ---: | --- |",
             *[f"| {i} | `{h['doc_id']}` | {h['score']:.2f} | {h['text'].replace('|', '/')} |"
               for i, h in enumerate(hits, start=1)]]
    return {"sample_search": MetadataValue.md("\n".join(lines))}


ASSETS = [source_snapshot, chunks, embeddings, serving_index]
