"""Sensors: keep Dagster's dynamic partitions in line with the registry file."""

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from .partitions import registered_partition_keys
from .resources import PlatformResource


@sensor(
    name="registry_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition for every newly registered source and model version.",
)
def registry_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    sources, models = registered_partition_keys(platform.load())
    instance = context.instance
    new_sources = [s for s in sources if not instance.has_dynamic_partition("source", s)]
    new_models = [m for m in models if not instance.has_dynamic_partition("model", m)]
    if not new_sources and not new_models:
        return SkipReason("registry unchanged")
    requests = []
    if new_sources:
        requests.append(AddDynamicPartitionsRequest("source", new_sources))
    if new_models:
        requests.append(AddDynamicPartitionsRequest("model", new_models))
    return SensorResult(dynamic_partitions_requests=requests)


SENSORS = [registry_sensor]
