"""Migrations in the UI: the evaluation gate as a check, retention cleanup on a schedule.

The gate runs after every serving_index materialization of a model version that does not
serve (a shadow candidate), so the UI shows, per source, whether the candidate may swap in
and by how much it differs from what serves. The swap itself is a deliberate act:
`embeddings-platform migrate --source S --model M` (docs/migration.md).
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    asset_check,
    job,
    op,
)

from ..core.evaluation import labelled_queries
from ..core.migration import cleanup, evaluate_gate, query_embedders, swap
from ..core.models import model_dimension
from ..core.serving import model_for_version
from .assets import serving_index
from .conditions import AFTER_DATA_CHANGE
from .partitions import source_model_partitions
from .resources import PlatformResource


@asset_check(
    asset=serving_index,
    name="migration_gate",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "For a model version that does not serve its source: recall@k and nDCG@k of its index on the "
        "source's labelled queries against the serving index. Fails (ERROR) when the candidate is worse "
        "than migration.max_recall_drop / max_ndcg_drop allow; only a passing candidate may swap in."
    ),
)
def migration_gate(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    keys = context.multi_partition_key.keys_by_dimension
    source, version_id = keys["source"], keys["model"]
    store = platform.store(config)
    pointer = store.pointer(source)
    if pointer is not None and pointer["model_version"] == version_id:
        return AssetCheckResult(passed=True, metadata={"serving": 1, "passed": 1},
                                description="this model version serves the source; nothing to gate")
    report = evaluate_gate(store, source, version_id, labelled_queries(config.source(source)),
                           query_embedders(store, config, platform.embedder), config.migration)
    if report.passed and config.migration.promote == "auto":  # the operator chose: a pass swaps
        row = swap(store, report, run_id=context.run.run_id,
                   expected_dimension=model_dimension(model_for_version(config, store, version_id)))
        summary = f"gate passed: swapped in (migration.promote: auto) at {row['table_name']}@v{row['table_version']}"
    elif report.passed:
        summary = "gate passed: may swap in (embeddings-platform migrate --source S --model M)"
    elif not report.evaluable:  # nothing to judge by is not a failure of the candidate
        summary = "; ".join(report.reasons)
    else:
        summary = "gate failed: " + "; ".join(report.reasons)
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR if report.evaluable else AssetCheckSeverity.WARN,
        metadata={**report.metadata, "serving": 0, "summary": MetadataValue.text(summary),
                  "serving_model_version": MetadataValue.text(report.serving_version or ""),
                  "serving_table_version": MetadataValue.text(str(report.serving_table_version)),
                  "candidate_profile": MetadataValue.text(report.candidate_profile)},
        description=summary[:1000],
    )


@op(description="Retention expiry: drop unretained tables of unregistered model versions, expired tags and versions.")
def retention_cleanup(context: OpExecutionContext, platform: PlatformResource) -> None:
    config = platform.load()
    report = cleanup(platform.store(config), config)
    context.log.info(
        f"dropped {len(report.tables_dropped)} tables {report.tables_dropped}, deleted {report.tags_deleted} "
        f"tags, removed {report.versions_removed} old versions ({report.bytes_removed} bytes)")


@job(description="Retention cleanup of old serving targets, tables and versions (serving.retention_hours).")
def retention_cleanup_job():
    retention_cleanup()


retention_cleanup_schedule = ScheduleDefinition(
    name="retention_cleanup_schedule", job=retention_cleanup_job, cron_schedule="30 4 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily: what stopped serving more than serving.retention_hours ago is cleaned up.",
)

CHECKS = [migration_gate]
JOBS = [retention_cleanup_job]
SCHEDULES = [retention_cleanup_schedule]
