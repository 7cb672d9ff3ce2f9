"""What keeps the graph current with only `dagster dev` running.

- `source_change_sensor` adds partitions for newly registered sources and model versions,
  re-reads every source and requests ONE run of `source_snapshot` + `chunks` for exactly the
  sources whose content hash changed, and re-checks partitions whose freshness window is running
  out (only partitions built before: a first build is the automation's);
- `embeddings_automation` (running by default, unlike Dagster's own) carries new chunks down:
  embeddings, serving_index and their checks of one (source, model version) in ONE run;
- `consistency_sweep_schedule` runs every asset check over every partition on a cron.

Both intervals are `refresh:` settings (docs/refresh.md: what happens between save and served).
"""

from datetime import datetime, timedelta, timezone

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from ..core.refresh import (
    RefreshCursor,
    changed,
    known_fingerprint,
    listing_signature,
    recheck_due,
    source_fingerprint,
)
from .common import partition_tags  # checks-only jobs take their partition as run tags
from .embeddings import embed_job
from .partitions import (
    grid_key,
    registered_partition_keys,
)
from .preparation import TRIGGER, prepare_models_job, prepare_request, unprepared
from .resources import PlatformResource
from .settings import REFRESH

snapshot_job = define_asset_job(
    "snapshot_job",
    selection=["source_snapshot", "chunks"],
    description="Snapshot a changed source and cut its chunks in one run; automation goes on.",
)
recheck_source_job = define_asset_job(
    "recheck_source_job",
    selection=["source_snapshot", "chunks"],
    description=(
        "Freshness re-check of one source: snapshot and chunks (no-ops when nothing changed)."
    ),
)
recheck_grid_job = define_asset_job(
    "recheck_grid_job",
    selection=["embeddings", "serving_index"],
    description=(
        "Freshness re-check of one (source, model version): zero model calls when nothing changed."
    ),
)
sweep_job = define_asset_job(
    "consistency_sweep_job",
    selection=AssetSelection.checks_for_assets("embeddings", "serving_index"),
    description=(
        "Every asset check of one (source, model version), without re-materializing anything."
    ),
)


# The daemon looks at sensors every 5 s and starts a tick once `minimum_interval_seconds` have
# passed since the last one began. Measured at the next look, a 10 s interval has passed by a
# hair or not yet (the tick began a moment into its look): ticks came every 10 or 15 s. Asking
# for 2 s less makes a configured interval the period users get (rounded up to the 5 s loop).
LOOP_SLACK_SECONDS = 2


def tick_interval(seconds: int) -> int:
    """The minimum_interval_seconds that makes ticks come every `seconds` (see above)."""
    return max(1, seconds - LOOP_SLACK_SECONDS)


def last_materialized(instance, asset: str, partition: str) -> datetime | None:
    """When a partition of an asset last materialized, from the instance's event log."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return datetime.fromtimestamp(records[0].timestamp, tz=timezone.utc) if records else None


@sensor(
    name="source_change_sensor",
    minimum_interval_seconds=tick_interval(REFRESH.sensor_interval_seconds),
    default_status=DefaultSensorStatus.RUNNING,
    jobs=[snapshot_job, recheck_source_job, recheck_grid_job, embed_job, prepare_models_job],
    description=(
        "Registers new sources and model versions as partitions, requests a snapshot + chunks "
        "run of each source whose content hash changed, and re-checks partitions before their "
        "freshness fails."
    ),
)
def source_change_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    config = platform.load()
    store = platform.store(config)
    instance = context.instance
    now = datetime.now(timezone.utc)
    runs = _prepare(context, config, now)
    sources, models = registered_partition_keys(config, prepared_only=True)
    partition_requests = []
    new_sources = [s for s in sources if not instance.has_dynamic_partition("source", s)]
    new_models = [m for m in models if not instance.has_dynamic_partition("model", m)]
    if new_sources:
        partition_requests.append(AddDynamicPartitionsRequest("source", new_sources))
    if new_models:
        partition_requests.append(AddDynamicPartitionsRequest("model", new_models))

    cursor = RefreshCursor.parse(context.cursor)
    window = timedelta(hours=config.refresh.freshness_warn_hours)
    unbuilt = set()
    for key in sources:  # a sharded source is compared shard by shard: a change runs one shard
        try:  # an unchanged file listing needs no read: an idle tick does not read the corpus
            listing = listing_signature(config.source(key))
            known = known_fingerprint(key, listing, cursor)
            settled = known is not None and known == cursor.fingerprints.get(key)
            # settled: this content was requested or found recorded: no change, whatever the
            # store says now (so it is not asked)
            latest = None if settled else store.latest_snapshot_id(key)
            # Never snapshotted: its first run reads it all; the tick (cut at 60 s) does not.
            fingerprint = known or (
                source_fingerprint(config.source(key), config.documents, store)
                if latest
                else f"first:{listing}"
            )
        except Exception as exc:  # noqa: BLE001 - one unreadable source must not stop the others
            context.log.error(f"source {key!r} could not be read: {exc}")
            continue
        if listing is not None:
            cursor.listings[key] = [listing, fingerprint]
        if latest is not None and fingerprint == latest:
            cursor.fingerprints[key] = fingerprint  # recorded: settled from the next tick on
        if not settled and changed(key, fingerprint, cursor, latest):
            cursor.fingerprints[key] = fingerprint
            # The cursor keeps a change from being requested twice. A run key of the content
            # alone would make the daemon drop an edit that returns to earlier content (edit,
            # undo, redo): a run key is used once. The tick's time makes each change its own.
            # a source never snapshot before is being built, not changed: say so on its run
            trigger = "content-change" if latest else "initial-build"
            runs.append(
                RunRequest(
                    job_name=snapshot_job.name,
                    partition_key=key,
                    run_key=f"change:{key}:{fingerprint}:{now.timestamp():.3f}",
                    tags={TRIGGER: trigger},
                )
            )
            continue
        runs.extend(_rechecks(instance, key, models, now, window, cursor.materialized))
        runs.extend(_missed_first_builds(instance, key, models, cursor, unbuilt))
    cursor.unbuilt = unbuilt
    cursor.listings = {k: v for k, v in cursor.listings.items() if k in sources}  # registered
    grid = {str(grid_key(s, m)) for s in sources for m in models} | set(sources)
    cursor.materialized = {
        k: v for k, v in cursor.materialized.items() if k.partition(":")[2] in grid
    }
    context.update_cursor(cursor.serialize())
    if not runs and not partition_requests:
        return SkipReason("no source changed and every partition is within its freshness window")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=partition_requests)


def _prepare(context: SensorEvaluationContext, config, now: datetime) -> list[RunRequest]:
    """A run that prepares models whose files do not exist yet; this tick skips them."""
    models = unprepared(config)
    if not models:
        return []
    names = ", ".join(m.name for m in models)
    context.log.info(
        f"models not prepared yet, their partitions wait: {names}; "
        f"requesting {prepare_models_job.name}"
    )
    busy = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    ]
    running = RunsFilter(job_name=prepare_models_job.name, statuses=busy)
    if context.instance.get_run_records(running, limit=1):
        return []
    return [prepare_request(models, now)]


def _rechecks(
    instance,
    source: str,
    models: list[str],
    now: datetime,
    window: timedelta,
    seen: dict[str, float],
) -> list[RunRequest]:
    """Re-materialize only the partitions of `source` whose last run is older than the window.

    Narrower than AutomationCondition.freshness_failed(), which would select every partition
    of the asset; these runs find nothing changed, call no model, and trigger nothing below.
    A partition never built is no re-check: the automation builds it (`_missed_first_builds`).
    `seen` remembers when each partition last materialized: a later run only moves its re-check
    later, so none is due before that time plus the window and the event log is not asked.
    """
    bucket = int(now.timestamp() // window.total_seconds())
    tags = {TRIGGER: "freshness-recheck"}
    requests = []

    def quiet(asset: str, partition: str) -> bool:
        ran = seen.get(f"{asset}:{partition}")
        return ran is not None and now.timestamp() - ran < window.total_seconds()

    def due(asset: str, partition: str) -> bool:
        last = last_materialized(instance, asset, partition)
        if last is not None:
            seen[f"{asset}:{partition}"] = last.timestamp()
        return recheck_due(last, now, window)

    if (
        not quiet("source_snapshot", source)
        and instance.has_dynamic_partition("source", source)
        and due("source_snapshot", source)
    ):
        requests.append(
            RunRequest(
                job_name=recheck_source_job.name,
                partition_key=source,
                run_key=f"recheck:{source}:{bucket}",
                tags=tags,
            )
        )
    for model in models:
        key = str(grid_key(source, model))
        if quiet("serving_index", key) or not instance.has_dynamic_partition("model", model):
            continue
        if due("serving_index", key):
            requests.append(
                RunRequest(
                    job_name=recheck_grid_job.name,
                    partition_key=key,
                    run_key=f"recheck:{key}:{bucket}",
                    tags=tags,
                )
            )
    return requests


def _missed_first_builds(
    instance, source: str, models: list[str], cursor: RefreshCursor, unbuilt: set[str]
) -> list[RunRequest]:
    """First builds the automation did not start: it starts a partition that *becomes* missing,
    but not one that already was at its very first evaluation (a fresh install's first ticks).

    A grid partition whose chunks exist and that no run ever targeted is noted on one tick; still
    so on the next (the automation ticked in between), it gets a run tagged `initial-build`.
    One the cursor saw built (`materialized`) is never a first build again: it is not looked up.
    """
    keys = {model: str(grid_key(source, model)) for model in models}
    built = {m for m, key in keys.items() if f"serving_index:{key}" in cursor.materialized}
    if len(built) == len(models) or not instance.has_dynamic_partition("source", source):
        return []
    if last_materialized(instance, "chunks", source) is None:
        return []
    requests = []
    for model in [m for m in models if m not in built]:
        key = keys[model]
        if not instance.has_dynamic_partition("model", model):
            continue
        if ran := last_materialized(instance, "serving_index", key):
            cursor.materialized[f"serving_index:{key}"] = ran.timestamp()
            continue
        if instance.get_latest_planned_materialization_info(AssetKey("embeddings"), key):
            continue  # a run took it (the automation's, or one still on its way)
        unbuilt.add(key)
        if key in cursor.unbuilt:
            requests.append(
                RunRequest(
                    job_name=embed_job.name,
                    partition_key=key,
                    run_key=f"initial:{key}",
                    tags={TRIGGER: "initial-build"},
                )
            )
    return requests


embeddings_automation = AutomationConditionSensorDefinition(
    "embeddings_automation",
    target=AssetSelection.all() | AssetSelection.all_asset_checks(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=tick_interval(REFRESH.automation_interval_seconds),
    emit_backfills=False,  # one run per partition, each visible as automation-triggered
    description="Evaluates the automation conditions of every asset and check (running by default; "
    "refresh.automation_interval_seconds).",
)


@schedule(
    name="consistency_sweep_schedule",
    job=sweep_job,
    cron_schedule=REFRESH.sweep_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Full consistency sweep: every check of every registered (source, model version) "
        "(refresh.sweep_cron)."
    ),
)
def consistency_sweep_schedule(context: ScheduleEvaluationContext, platform: PlatformResource):
    sources, models = registered_partition_keys(platform.load(), prepared_only=True)
    keys = [
        str(grid_key(s, m))
        for s in sources
        for m in models
        if context.instance.has_dynamic_partition("source", s)
        and context.instance.has_dynamic_partition("model", m)
    ]
    if not keys:
        return SkipReason("nothing registered yet")
    stamp = (
        context.scheduled_execution_time.isoformat()
        if context.scheduled_execution_time
        else "manual"
    )
    return [RunRequest(run_key=f"sweep:{key}:{stamp}", tags=partition_tags(key)) for key in keys]


SENSORS = [source_change_sensor, embeddings_automation]
SCHEDULES = [consistency_sweep_schedule]
JOBS = [snapshot_job, recheck_source_job, recheck_grid_job, sweep_job]
