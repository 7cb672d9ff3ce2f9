"""What the stage modules share: owners, group, the grid of a partition, tables for the UI."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    MetadataValue,
)

from ..core.models import model_dimension
from ..core.serving import (
    model_for_version,
)
from .partitions import grid_key, source_model_partitions
from .resources import PlatformResource
from .results import to_result

OWNERS = ["team:ml-platform"]


GROUP = "embeddings"


def _markdown_table(rows: dict[str, object]) -> MetadataValue:
    lines = ["| what | count |", "| --- | ---: |", *[f"| {k} | {v} |" for k, v in rows.items()]]
    return MetadataValue.md("\n".join(lines))


def grid_of(context) -> tuple[str, str]:
    """(source, model version) of the source x model partition an asset or a check runs for."""
    if isinstance(context, AssetCheckExecutionContext):
        keys = context.multi_partition_key.keys_by_dimension
    else:
        keys = context.partition_key.keys_by_dimension
    return keys["source"], keys["model"]


def expected_dimension(config, store, version_id: str) -> int | None:
    try:
        return model_dimension(model_for_version(config, store, version_id))
    except LookupError:  # a version with no recorded settings still gets checked, without this test
        return None


def partition_tags(partition_key: str) -> dict[str, str]:
    """Run tags naming one grid partition.

    A job that selects only asset checks has no partitions definition of its own in dagster
    1.13 (it is inferred from selected assets), so `partition_key=` is rejected for it; the
    partition is passed as run tags, which is what a partition key becomes anyway.
    """
    keys = source_model_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return {
        "dagster/partition": partition_key,
        **{f"dagster/partition/{dim}": value for dim, value in keys.items()},
    }


def served_grid_keys(platform: PlatformResource, instance) -> list[str]:
    """Grid partitions that currently serve a source (one per serving pointer)."""
    config = platform.load()
    store = platform.store(config)
    keys = []
    for pointer in store.pointers():
        if instance.has_dynamic_partition(
            "source", pointer["source"]
        ) and instance.has_dynamic_partition("model", pointer["model_version"]):
            keys.append(str(grid_key(pointer["source"], pointer["model_version"])))
    return sorted(keys)


def grid_check(context, platform, label: str, run) -> AssetCheckResult:
    """What every check of a (source, model version) partition does: take the registry and
    store of this step and the partition, run one core check, turn its report into the result."""
    config = platform.load()
    source, version_id = grid_of(context)
    return to_result(run(config, platform.store(config), source, version_id), label)
