"""Asset checks on embeddings and serving_index, partitioned like the assets they check.

Each check calls one function of core/checks.py and turns its report into an
AssetCheckResult: severity WARN or ERROR, numeric metadata the UI plots per partition.
Checks run after the materializations they check (eager automation condition) and the
served staleness check also runs on a schedule, because data ages without any run.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset_check,
    define_asset_job,
    schedule,
)

from ..core import checks as core
from ..core.config import ChecksConfig, load_config
from ..core.evaluation import labelled_queries
from ..core.models import model_dimension
from ..core.serving import model_for_version
from .assets import embeddings, serving_index
from .conditions import AFTER_DATA_CHANGE
from .partitions import grid_key, source_model_partitions
from .resources import PlatformResource
from .results import to_result

AFTER_MATERIALIZATION = AFTER_DATA_CHANGE


def _grid(context: AssetCheckExecutionContext) -> tuple[str, str]:
    keys = context.multi_partition_key.keys_by_dimension
    return keys["source"], keys["model"]


def _expected_dimension(config, store, version_id: str) -> int | None:
    try:
        return model_dimension(model_for_version(config, store, version_id))
    except LookupError:  # a version with no recorded settings still gets checked, without this test
        return None


@asset_check(
    asset=embeddings,
    name="consistency",
    partitions_def=source_model_partitions,
    blocking=True,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "One model version per table, dimension equal to the model's, no NaN/inf/null/zero-norm "
        "vectors, no duplicate chunk_id, chunk and vector counts agree. Blocking: an ERROR keeps "
        "serving_index (and so the serving pointer) from moving in the same run."
    ),
)
def embeddings_consistency(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    report = core.consistency(platform.store(config), source, version_id, _expected_dimension(config, platform.store(config), version_id),
                              check_pointer=False)
    return to_result(report, "consistency")


@asset_check(
    asset=embeddings,
    name="staleness",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "Vectors whose chunk changed or vanished, chunks without a vector, documents deleted or "
        "changed in the newest snapshot still in the table, lag behind the newest snapshot."
    ),
)
def embeddings_staleness(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    return to_result(core.staleness(platform.store(config), source, version_id, config.checks), "staleness")


@asset_check(
    asset=serving_index,
    name="served_consistency",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "Consistency of the pinned serving version (the latest, for a shadow version), and the "
        "serving pointer targets a table version that still exists."
    ),
)
def served_consistency(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    report = core.consistency(platform.store(config), source, version_id, _expected_dimension(config, platform.store(config), version_id),
                              at="served")
    return to_result(report, "served consistency")


@asset_check(
    asset=serving_index,
    name="served_staleness",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "Staleness of what is served: documents deleted or changed in the source still served, "
        "and hours the served data is behind the newest snapshot. Also runs on a schedule."
    ),
)
def served_staleness(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    report = core.staleness(platform.store(config), source, version_id, config.checks, at="served")
    return to_result(report, "served staleness")


@asset_check(
    asset=serving_index,
    name="ann_recall",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "recall@k of the ANN index against exact search on the same table version, sampled stored "
        "vectors as queries; ERROR below checks.ann_recall.floor. Exact search reports 1.0."
    ),
)
def ann_recall(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    return to_result(core.ann_recall(platform.store(config), source, version_id, config.checks), "ann recall")


@asset_check(
    asset=serving_index,
    name="retrieval_recall",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_MATERIALIZATION,
    description=(
        "recall@k, nDCG@k and ragas ID-based context recall/precision of the source's labelled "
        "queries through the served index, against the first passing result (baseline): WARN past "
        "a 2-point drop, ERROR past checks.retrieval.drop_points.error."
    ),
)
def retrieval_recall(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
    config = platform.load()
    source, version_id = _grid(context)
    queries = labelled_queries(config.source(source))
    store = platform.store(config)
    if not queries:
        return to_result(core.retrieval_recall(store, source, version_id, [], lambda texts: None, config.checks),
                         "retrieval recall")
    try:
        model = model_for_version(config, store, version_id)
    except LookupError as exc:  # queries cannot be embedded without the model
        report = core.RetrievalReport(source, version_id, "", 0, severity=core.WARN, problems=[str(exc)])
        return to_result(report, "retrieval recall")
    # loaded only if a query is not in the query-vector cache yet
    report = core.retrieval_recall(store, source, version_id, queries, lambda texts: platform.embedder(model).embed(texts),
                                   config.checks, run_id=context.run.run_id)
    return to_result(report, "retrieval recall")


CHECKS = [embeddings_consistency, embeddings_staleness, served_consistency, served_staleness, ann_recall,
          retrieval_recall]

staleness_job = define_asset_job(
    "served_staleness_job",
    selection=AssetSelection.checks(served_staleness),
    partitions_def=source_model_partitions,
    description="The time-based staleness check of every served (source, model version).",
)


def partition_tags(partition_key: str) -> dict[str, str]:
    """Run tags naming one grid partition.

    A job that selects only asset checks has no partitions definition of its own in dagster
    1.13 (it is inferred from selected assets), so `partition_key=` is rejected for it; the
    partition is passed as run tags, which is what a partition key becomes anyway.
    """
    keys = source_model_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return {"dagster/partition": partition_key,
            **{f"dagster/partition/{dim}": value for dim, value in keys.items()}}


def served_grid_keys(platform: PlatformResource, instance) -> list[str]:
    """Grid partitions that currently serve a source (one per serving pointer)."""
    config = platform.load()
    store = platform.store(config)
    keys = []
    for pointer in store.pointers():
        if instance.has_dynamic_partition("source", pointer["source"]) and instance.has_dynamic_partition(
            "model", pointer["model_version"]
        ):
            keys.append(str(grid_key(pointer["source"], pointer["model_version"])))
    return sorted(keys)


def _staleness_cron() -> str:
    try:
        return load_config().checks.staleness_cron
    except Exception:  # noqa: BLE001 - a broken registry is reported by the sensor and assets
        return ChecksConfig().staleness_cron


@schedule(
    name="served_staleness_schedule",
    job=staleness_job,
    cron_schedule=_staleness_cron(),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-runs served_staleness for every served partition (checks.staleness.schedule).",
)
def served_staleness_schedule(context: ScheduleEvaluationContext, platform: PlatformResource):
    keys = served_grid_keys(platform, context.instance)
    if not keys:
        return SkipReason("no source is served yet")
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    return [RunRequest(run_key=f"{key}:{stamp}", tags=partition_tags(key)) for key in keys]


SCHEDULES = [served_staleness_schedule]
JOBS = [staleness_job]
