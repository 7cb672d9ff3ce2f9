"""What keeps the graph current with only `dagster dev` running.

- `source_change_sensor` adds partitions for newly registered sources and model versions,
  re-reads every source and requests a `source_snapshot` run for exactly the sources whose
  content hash changed, and re-checks sources whose freshness window is running out;
- `embeddings_automation` (running by default, unlike Dagster's own) carries a new snapshot
  down through chunks, embeddings and serving_index by their automation conditions;
- `consistency_sweep_schedule` runs every asset check over every partition on a cron.
"""

from datetime import datetime, timedelta, timezone

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from ..core.config import RefreshConfig, load_config
from ..core.refresh import RefreshCursor, changed, recheck_due, source_fingerprint
from .assets import chunks, embeddings, serving_index, source_snapshot
from .checks import partition_tags  # checks-only jobs take their partition as run tags
from .partitions import (
    grid_key,
    registered_partition_keys,
    source_model_partitions,
    source_partitions,
)
from .resources import PlatformResource

snapshot_job = define_asset_job(
    "snapshot_job", selection=[source_snapshot], partitions_def=source_partitions,
    description="Snapshot one source; automation carries a changed snapshot downstream.",
)
recheck_source_job = define_asset_job(
    "recheck_source_job", selection=[source_snapshot, chunks], partitions_def=source_partitions,
    description="Freshness re-check of one source: snapshot and chunks (no-ops when nothing changed).",
)
recheck_grid_job = define_asset_job(
    "recheck_grid_job", selection=[embeddings, serving_index], partitions_def=source_model_partitions,
    description="Freshness re-check of one (source, model version): zero model calls when nothing changed.",
)
sweep_job = define_asset_job(
    "consistency_sweep_job",
    selection=AssetSelection.checks_for_assets(embeddings, serving_index),
    partitions_def=source_model_partitions,
    description="Every asset check of one (source, model version), without re-materializing anything.",
)


def _refresh_config() -> RefreshConfig:
    try:
        return load_config().refresh
    except Exception:  # noqa: BLE001 - a broken registry is reported when the sensor runs
        return RefreshConfig()


def last_materialized(instance, asset: str, partition: str) -> datetime | None:
    """When a partition of an asset last materialized, from the instance's event log."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return datetime.fromtimestamp(records[0].timestamp, tz=timezone.utc) if records else None


@sensor(
    name="source_change_sensor",
    minimum_interval_seconds=_refresh_config().sensor_interval_seconds,
    default_status=DefaultSensorStatus.RUNNING,
    jobs=[snapshot_job, recheck_source_job, recheck_grid_job],
    description=(
        "Registers new sources and model versions as partitions, requests a snapshot of each "
        "source whose content hash changed, and re-checks sources before their freshness fails."
    ),
)
def source_change_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    config = platform.load()
    store = platform.store(config)
    instance = context.instance
    sources, models = registered_partition_keys(config)
    partition_requests = []
    new_sources = [s for s in sources if not instance.has_dynamic_partition("source", s)]
    new_models = [m for m in models if not instance.has_dynamic_partition("model", m)]
    if new_sources:
        partition_requests.append(AddDynamicPartitionsRequest("source", new_sources))
    if new_models:
        partition_requests.append(AddDynamicPartitionsRequest("model", new_models))

    cursor = RefreshCursor.parse(context.cursor)
    now = datetime.now(timezone.utc)
    window = timedelta(hours=config.refresh.freshness_warn_hours)
    runs = []
    for key in sources:  # a sharded source is compared shard by shard: a change runs one shard
        try:
            fingerprint = source_fingerprint(config.source(key), config.documents)
        except Exception as exc:  # noqa: BLE001 - one unreadable source must not stop the others
            context.log.error(f"source {key!r} could not be read: {exc}")
            continue
        latest = store.latest_snapshot(key)
        if changed(key, fingerprint, cursor, latest["snapshot_id"] if latest else None):
            cursor.fingerprints[key] = fingerprint
            runs.append(RunRequest(
                job_name=snapshot_job.name, partition_key=key,
                run_key=f"change:{key}:{fingerprint}", tags={"embeddings_platform/trigger": "content-change"},
            ))
            continue
        runs.extend(_rechecks(instance, key, models, now, window))
    context.update_cursor(cursor.serialize())
    if not runs and not partition_requests:
        return SkipReason("no source changed and every partition is within its freshness window")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=partition_requests)


def _rechecks(instance, source: str, models: list[str], now: datetime, window: timedelta) -> list[RunRequest]:
    """Re-materialize only the partitions of `source` whose last run is older than the window.

    Narrower than AutomationCondition.freshness_failed(), which would select every partition
    of the asset; these runs find nothing changed, call no model, and trigger nothing below.
    """
    bucket = int(now.timestamp() // window.total_seconds())
    tags = {"embeddings_platform/trigger": "freshness-recheck"}
    requests = []
    if instance.has_dynamic_partition("source", source) and recheck_due(
        last_materialized(instance, "source_snapshot", source), now, window
    ):
        requests.append(RunRequest(job_name=recheck_source_job.name, partition_key=source,
                                   run_key=f"recheck:{source}:{bucket}", tags=tags))
    for model in models:
        if not instance.has_dynamic_partition("model", model):
            continue
        key = str(grid_key(source, model))
        if recheck_due(last_materialized(instance, "serving_index", key), now, window):
            requests.append(RunRequest(job_name=recheck_grid_job.name, partition_key=key,
                                       run_key=f"recheck:{key}:{bucket}", tags=tags))
    return requests


embeddings_automation = AutomationConditionSensorDefinition(
    "embeddings_automation",
    target=AssetSelection.all() | AssetSelection.all_asset_checks(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    emit_backfills=False,  # one run per partition, each visible as automation-triggered
    description="Evaluates the automation conditions of every asset and check (running by default).",
)


@schedule(
    name="consistency_sweep_schedule",
    job=sweep_job,
    cron_schedule=_refresh_config().sweep_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Full consistency sweep: every check of every registered (source, model version) (refresh.sweep_cron).",
)
def consistency_sweep_schedule(context: ScheduleEvaluationContext, platform: PlatformResource):
    sources, models = registered_partition_keys(platform.load())
    keys = [
        str(grid_key(s, m)) for s in sources for m in models
        if context.instance.has_dynamic_partition("source", s) and context.instance.has_dynamic_partition("model", m)
    ]
    if not keys:
        return SkipReason("nothing registered yet")
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    return [RunRequest(run_key=f"sweep:{key}:{stamp}", tags=partition_tags(key)) for key in keys]


SENSORS = [source_change_sensor, embeddings_automation]
SCHEDULES = [consistency_sweep_schedule]
JOBS = [snapshot_job, recheck_source_job, recheck_grid_job, sweep_job]
