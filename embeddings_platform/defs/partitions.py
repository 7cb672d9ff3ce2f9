"""Partitions: one `source` per registered collection, one `model` per model version."""

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

from ..core.config import PlatformConfig
from ..core.models import model_is_prepared, model_version

source_partitions = DynamicPartitionsDefinition(name="source")
model_partitions = DynamicPartitionsDefinition(name="model")
source_model_partitions = MultiPartitionsDefinition(
    {"model": model_partitions, "source": source_partitions}
)


def registered_partition_keys(
    config: PlatformConfig, prepared_only: bool = False
) -> tuple[list[str], list[str]]:
    """(source keys, model version keys) the config registers.

    `prepared_only` leaves out models whose files are not prepared yet (a model2vec model not
    distilled): sensors and schedules use it, since a version id of those would distil in the tick.
    """
    sources = [key for s in config.sources for key in s.partition_keys]  # one per shard
    models = [m for m in config.models if not prepared_only or model_is_prepared(m)]
    return sources, [model_version(m).version_id for m in models]


def grid_key(source: str, version_id: str) -> MultiPartitionKey:
    return MultiPartitionKey({"source": source, "model": version_id})


def sync_partitions(instance, config: PlatformConfig) -> tuple[list[str], list[str]]:
    """Add partitions for newly registered sources and model versions; returns what was added."""
    sources, models = registered_partition_keys(config)
    new_sources = [s for s in sources if not instance.has_dynamic_partition("source", s)]
    new_models = [m for m in models if not instance.has_dynamic_partition("model", m)]
    if new_sources:
        instance.add_dynamic_partitions("source", new_sources)
    if new_models:
        instance.add_dynamic_partitions("model", new_models)
    return new_sources, new_models
