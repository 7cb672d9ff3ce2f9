"""Delta indexes merged off the refreshes' path.

Each refresh adds a small delta index per index of its table (core/indexing.py); each costs a
query about a millisecond at 1M rows, and merging them cost more than the refresh step itself.
So a refresh never merges (short of indexing.DELTA_HARD_LIMIT): this sensor reads the
`index_deltas` each serving_index materialization records, and past indexing.MAX_DELTAS
requests one serving_index run of that partition tagged to merge them. That run merges,
passes the same blocking consistency check and pins the merged version, so searches gain from
it; a refresh that lands meanwhile only ever moves the pointer forward.
"""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from ..core.indexing import MAX_DELTAS
from .partitions import source_model_partitions
from .preparation import TRIGGER
from .sensors import tick_interval
from .settings import REFRESH

MERGE_TRIGGER = "merge-index-deltas"  # the serving_index step merges deltas in runs with this
BATCH = 1000  # materializations read per tick (the next tick goes on from the cursor)

index_merge_job = define_asset_job(
    "index_merge_job",
    selection=["serving_index"],
    tags={TRIGGER: MERGE_TRIGGER},
    description=(
        "serving_index of one (source, model version) that also merges the delta indexes "
        "refreshes left, and pins the merged version (requested by index_merge_sensor)."
    ),
)


def latest_deltas(instance, after: int | None) -> tuple[dict[str, tuple[int, str, str]], int]:
    """Per vectors table, its latest (index_deltas, table_version, partition) among the
    serving_index materializations after storage id `after`, and the storage id read up to.
    By table, not partition: the shards of a source share one table, and one merge serves all."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("serving_index"), after_storage_id=after),
        limit=BATCH,
        ascending=True,
    ).records
    latest = {}
    for record in records:  # ascending: a later materialization of a table replaces one
        event = record.asset_materialization
        if event is None or event.partition is None:
            continue
        meta = event.metadata
        if "index_deltas" in meta and "table" in meta:
            version = str(meta["table_version"].value) if "table_version" in meta else ""
            latest[str(meta["table"].value)] = (
                int(meta["index_deltas"].value),
                version,
                event.partition,
            )
    return latest, (records[-1].storage_id if records else after)


def _registered(instance, partition: str) -> bool:
    """A partition removed since it materialized (a retired model) gets no run."""
    keys = source_model_partitions.get_partition_key_from_str(partition).keys_by_dimension
    return all(instance.has_dynamic_partition(dim, key) for dim, key in keys.items())


@sensor(
    name="index_merge_sensor",
    job=index_merge_job,
    minimum_interval_seconds=tick_interval(REFRESH.sensor_interval_seconds),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Requests a merge of a table's delta indexes once a refresh leaves more than "
        f"{MAX_DELTAS} of them, in a serving_index run of its own (off the refresh's path)."
    ),
)
def index_merge_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    latest, read_to = latest_deltas(context.instance, after)
    requests = [
        RunRequest(
            run_key=f"merge:{table}:{version}",  # once per table version left with deltas
            partition_key=partition,
        )
        for table, (deltas, version, partition) in sorted(latest.items())
        if deltas > MAX_DELTAS and _registered(context.instance, partition)
    ]
    cursor = str(read_to) if read_to is not None else None
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(
        skip_reason=SkipReason(f"no table has more than {MAX_DELTAS} delta indexes"),
        cursor=cursor,
    )


SENSORS = [index_merge_sensor]
JOBS = [index_merge_job]
