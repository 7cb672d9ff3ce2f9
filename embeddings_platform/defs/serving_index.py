"""Stage 4 in Dagster: `serving_index`, the checks of what serves (consistency, staleness,
ANN recall, retrieval recall), the migration gate, and the served-staleness schedule."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetSelection,
    DataVersion,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    schedule,
)

from ..core import checks as core
from ..core.config import PlatformConfig
from ..core.models import model_dimension
from ..core.serving import (
    model_for_version,
    text_preview,
)
from ..core.stages.serving_index import build_serving_index
from .common import (
    GROUP,
    OWNERS,
    expected_dimension,
    grid_check,
    grid_of,
    partition_tags,
    served_grid_keys,
)
from .conditions import AFTER_DATA_CHANGE, ON_UPSTREAM_CHANGE
from .embeddings import model_to_build
from .index_merges import MERGE_TRIGGER
from .migration_gate import labelled, migration_gate
from .partitions import source_model_partitions
from .preparation import TRIGGER
from .resources import PlatformResource
from .results import to_result
from .settings import CHECKS


@asset(
    partitions_def=source_model_partitions,
    deps=["embeddings"],
    group_name=GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Vector index (ANN above serving.ann_min_rows, exact below) and full-text index on a "
        "model version's table, maintained incrementally (retrained past "
        "serving.retrain_fraction or a failed ann_recall), tagged at a pinned table version. "
        "Moves the source's serving pointer when this version is what serves; otherwise it is "
        "a shadow candidate."
    ),
)
def serving_index(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    source, version_id = grid_of(context)
    model = model_to_build(context, config, platform.store(config), version_id)
    if model is None:
        return MaterializeResult(
            metadata={"retired": True, "model_version": version_id},
            data_version=DataVersion(f"{version_id}@retired"),
        )
    report = build_serving_index(
        platform.store(config),
        source,
        version_id,
        config.serving,
        context.run.run_id,
        is_default_model=model.name == config.serving_model(source),
        expected_dimension=model_dimension(model),  # the pointer only moves to a consistent table
        merge_deltas=context.run.tags.get(TRIGGER) == MERGE_TRIGGER,
    )
    preview = _sample_search(context, platform, config, source, report)
    return MaterializeResult(
        metadata={
            **preview,
            "rows": report.rows,
            "index_type": report.index_type,
            "table": report.table_name,
            "table_version": MetadataValue.text(str(report.table_version)),
            "pointer_moved": report.pointer_moved,
            "serving_model_version": report.serving_model_version or "",
            "rebuilt": report.rebuilt,
            "refused_empty": report.refused_empty,
            "index_seconds": round(report.seconds, 3),
            **_maintenance_metadata(report),
        },
        data_version=DataVersion(report.data_version),
    )


def _maintenance_metadata(report) -> dict:
    """What the step did to the indexes: numbers the UI plots, and the reason as text."""
    m = report.maintenance
    return {
        "index_action": MetadataValue.text(m.action),  # built | retrained | merged | ...
        "index_reason": MetadataValue.text(m.reason),
        "retrain_reason": MetadataValue.text(
            m.reason if m.action in ("built", "retrained") else ""
        ),
        "unindexed_rows_before": m.unindexed_before,
        "unindexed_rows_after": m.unindexed_after,
        "rows_since_training": m.rows_since_training,
        "waiting_for_shards": MetadataValue.text(", ".join(m.waiting_for)),
        "fragments_compacted": m.fragments_compacted,
        "index_deltas": m.deltas_after,  # the index-merge sensor reads this
        "index_maintenance_seconds": round(m.seconds, 3),
        "index_train_seconds": round(m.train_seconds, 3),
        "consistency_check_seconds": round(report.check_seconds, 3),
        "commit_conflicts": report.conflicts,
    }


def _sample_search(context, platform, config: PlatformConfig, source: str, report) -> dict:
    """A Markdown preview of what the index returns for the source's first labelled query."""
    queries, problem = labelled(config, source)
    if problem:
        context.log.warning(f"no sample search: {problem}")
    if not queries or not report.rows:
        return {}
    query = queries[0].text
    hits = text_preview(platform.store(config), report.table_name, report.table_version, query)
    lines = [
        f"**{query}** (full-text, table `{report.table_name}` v{report.table_version})",
        "",
        "| # | document | score | text |",
        "| ---: | --- | ---: | --- |",
        *[
            f"| {i} | `{h['doc_id']}` | {h['score']:.2f} | {h['text'].replace('|', '/')} |"
            for i, h in enumerate(hits, start=1)
        ],
    ]
    return {"sample_search": MetadataValue.md("\n".join(lines))}


@asset_check(
    asset=serving_index,
    name="served_consistency",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "Consistency of the pinned serving version (the latest, for a shadow version), and the "
        "serving pointer targets a table version that still exists."
    ),
)
def served_consistency(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    return grid_check(
        context,
        platform,
        "served consistency",
        lambda config, store, source, version: core.consistency(
            store, source, version, expected_dimension(config, store, version), at="served"
        ),
    )


@asset_check(
    asset=serving_index,
    name="served_staleness",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "Staleness of what is served: documents deleted or changed in the source still served, "
        "and hours the served data is behind the newest snapshot. Also runs on a schedule."
    ),
)
def served_staleness(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    return grid_check(
        context,
        platform,
        "served staleness",
        lambda config, store, source, version: core.staleness(
            store, source, version, config.checks, at="served"
        ),
    )


@asset_check(
    asset=serving_index,
    name="ann_recall",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "recall@k of the ANN index against exact search on the same table version, sampled stored "
        "vectors as queries; ERROR below checks.ann_recall.floor. Without an ANN index (exact "
        "search) there is nothing to evaluate: it passes and says so, with no recall figure."
    ),
)
def ann_recall(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    return grid_check(
        context,
        platform,
        "ann recall",
        lambda config, store, source, version: core.ann_recall(
            store, source, version, config.checks
        ),
    )


@asset_check(
    asset=serving_index,
    name="retrieval_recall",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "recall@k, nDCG@k and ragas ID-based context recall/precision of the source's labelled "
        "queries through the served index, against the first passing result (baseline): WARN past "
        "a 2-point drop, ERROR past checks.retrieval.drop_points.error. WARN (nothing to "
        "evaluate, no figures) for a source without labelled queries."
    ),
)
def retrieval_recall(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    config = platform.load()
    source, version_id = grid_of(context)
    queries, problem = labelled(config, source)
    store = platform.store(config)
    if problem:
        report = core.RetrievalReport(
            source, version_id, "", 0, severity=core.ERROR, evaluated=False, note=problem
        )
        return to_result(report, "retrieval recall")
    if not queries:
        return to_result(
            core.retrieval_recall(store, source, version_id, [], lambda texts: None, config.checks),
            "retrieval recall",
        )
    try:
        model = model_for_version(config, store, version_id)
    except LookupError as exc:  # queries cannot be embedded without the model
        report = core.RetrievalReport(
            source, version_id, "", 0, severity=core.WARN, evaluated=False, note=str(exc)
        )
        return to_result(report, "retrieval recall")
    # loaded only if a query is not in the query-vector cache yet
    report = core.retrieval_recall(
        store,
        source,
        version_id,
        queries,
        lambda texts: platform.embedder(model).embed(texts),
        config.checks,
        run_id=context.run.run_id,
    )
    return to_result(report, "retrieval recall")


staleness_job = define_asset_job(
    "served_staleness_job",
    selection=AssetSelection.checks(served_staleness),
    description="The time-based staleness check of every served (source, model version).",
)


def _served_staleness(context: ScheduleEvaluationContext, platform: PlatformResource):
    keys = served_grid_keys(platform, context.instance)
    if not keys:
        return SkipReason("no source is served yet")
    stamp = (
        context.scheduled_execution_time.isoformat()
        if context.scheduled_execution_time
        else "manual"
    )
    return [RunRequest(run_key=f"{key}:{stamp}", tags=partition_tags(key)) for key in keys]


# Data ages without any run: served_staleness re-runs on `checks.staleness.schedule`.
served_staleness_schedule = schedule(
    name="served_staleness_schedule",
    job=staleness_job,
    cron_schedule=CHECKS.staleness_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-runs served_staleness for every served partition (checks.staleness.schedule).",
)(_served_staleness)

ASSETS = [serving_index]
CHECKS_DEFS = [served_consistency, served_staleness, ann_recall, retrieval_recall, migration_gate]
JOBS = [staleness_job]
SCHEDULES = [served_staleness_schedule]
