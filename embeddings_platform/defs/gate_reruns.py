"""The migration gate again whenever what serves changes.

A gate compares a shadow version with what serves. Its automation condition re-runs it when
the shadow's own index changes, but a swap, a rollback or a profile migration changes the
other side of the comparison without materializing anything. This sensor compares what each
gate result was evaluated against (its `serving_target` metadata) with what serves now and
requests the gate again for the partitions whose result is out of date.
"""

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ..core.migration_gate import serving_target
from ..core.sharding import owner
from .common import partition_tags
from .migration_gate import migration_gate
from .partitions import grid_key, registered_partition_keys
from .resources import PlatformResource
from .sensors import tick_interval
from .settings import REFRESH

GATE = AssetCheckKey(AssetKey("serving_index"), "migration_gate")

gate_job = define_asset_job(
    "migration_gate_job",
    selection=AssetSelection.checks(migration_gate),
    description="The migration gate of one (source, model version), re-run after a pointer move.",
)


def evaluated_against(instance, partition: str) -> str | None:
    """The serving target the partition's latest gate result compared with; None while a gate
    run is planned or in progress, or if the gate never ran there (the automation runs it)."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [GATE], partition_filter=PartitionKeyFilter(key=partition)
    )
    record = records.get(GATE)
    if record is None or record.status == AssetCheckExecutionRecordStatus.PLANNED:
        return None
    evaluation = record.event.dagster_event.event_specific_data if record.event else None
    value = getattr(evaluation, "metadata", {}).get("serving_target")
    return value.value if value is not None else ""  # results older than this sensor: stale


@sensor(
    name="gate_rerun_sensor",
    job=gate_job,
    minimum_interval_seconds=tick_interval(REFRESH.automation_interval_seconds),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Re-runs migration_gate of every shadow version whose last result was evaluated "
        "against something other than what serves now (after a swap, rollback or profile change)."
    ),
)
def gate_rerun_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    config = platform.load()
    store = platform.store(config)
    sources, models = registered_partition_keys(config, prepared_only=True)
    requests = []
    for pointer in store.pointers():
        target = serving_target(pointer)
        for source in (s for s in sources if owner(s) == pointer["source"]):
            for model in models:
                key = str(grid_key(source, model))
                if not context.instance.has_dynamic_partition("model", model):
                    continue
                against = evaluated_against(context.instance, key)
                if against is None or against == target:
                    continue
                requests.append(
                    RunRequest(
                        run_key=f"gate:{key}:{target}:{pointer['swapped_at']}",
                        tags=partition_tags(key),
                    )
                )
    return requests or SkipReason("every gate result compares with what serves now")


SENSORS = [gate_rerun_sensor]
JOBS = [gate_job]
