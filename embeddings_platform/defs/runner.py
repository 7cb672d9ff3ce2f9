"""Run the asset graph from Python: used by the CLI's main job, benchmarks and tests."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager

from dagster import AssetSelection, DagsterInstance, SensorResult, materialize

from ..core.config import PlatformConfig
from ..core.models import model_version, prepare_model
from ..core.serving import models_in_use
from ..core.store import Store
from .partitions import grid_key, sync_partitions
from .resources import PlatformResource


def materialize_graph(
    instance: DagsterInstance,
    config: PlatformConfig,
    sources: list[str] | None = None,
    models: list[str] | None = None,
    resources: dict | None = None,
    raise_on_error: bool = True,
    on_run: Callable[[Any], None] | None = None,
    around: Callable[[], ContextManager] = nullcontext,
) -> list:
    """Materialize the graph for the chosen sources x models: one run per partition.

    Source-level assets run once per source (shard), then embeddings and serving_index once per
    (source, model version) cell; runs land in `instance`, so `dagster dev` shows them.
    Each run (and model preparation) executes inside `around()` (the CLI sends its output to a
    file there); `on_run(result)` is called after each, outside it.
    """
    from ..definitions import defs

    for model in config.models:  # distil or export what a version is made of, once (slow)
        with around():
            prepare_model(model)
    sync_partitions(instance, config)
    resources = resources or {"platform": PlatformResource(config_path=str(config.config_path))}
    assets = [*defs.assets, *(defs.asset_checks or [])]  # selections include their checks
    results = []
    # An edited entry's old version keeps serving (and following the source) until migrated.
    in_use = models_in_use(config, Store(config.storage_uri), config.serving.retention_hours)
    model_configs = [m for m in in_use if not models or m.name in models]
    versions = [model_version(m).version_id for m in model_configs]
    missing = [v for v in versions if not instance.has_dynamic_partition("model", v)]
    if missing:
        instance.add_dynamic_partitions("model", missing)

    def run(selection: list[str], partition_key) -> bool:
        with around():
            result = materialize(
                assets,
                selection=AssetSelection.assets(*selection),
                partition_key=partition_key,
                instance=instance,
                resources=resources,
                raise_on_error=raise_on_error,
            )
        results.append(result)
        if on_run is not None:
            on_run(result)
        return result.success

    # Every shard of a source snapshots and chunks first, then its cells run: a shard's
    # serving_index sees which siblings are still to come and leaves index maintenance to the
    # last of them (once per refresh, not once per shard).
    for source in config.sources:
        if sources and source.name not in sources:
            continue
        ready = [key for key in source.partition_keys if run(["source_snapshot", "chunks"], key)]
        for key in ready:  # (raise_on_error=False) a failed shard's cells would only fail
            for model in model_configs:
                run(["embeddings", "serving_index"], grid_key(key, model_version(model).version_id))
    return results


GRAPH_ORDER = ("source_snapshot", "chunks", "embeddings", "serving_index")


def run_sensor_requests(instance: DagsterInstance, sensor_result, resources: dict) -> list:
    """Execute a sensor's run requests in-process, as the daemon would launch them."""
    from ..definitions import defs

    if not isinstance(sensor_result, SensorResult):  # a SkipReason
        return []
    for request in sensor_result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    results = []
    for request in sensor_result.run_requests or []:
        job = defs.resolve_job_def(request.job_name)
        selection = [key.to_user_string() for key in job.asset_layer.executable_asset_keys]
        if not selection:  # an op job (model preparation)
            results.append(
                job.execute_in_process(
                    instance=instance, resources=resources, tags=dict(request.tags)
                )
            )
            continue
        results.append(
            materialize(
                [*defs.assets, *(defs.asset_checks or [])],
                selection=selection,
                partition_key=request.partition_key,
                instance=instance,
                resources=resources,
                tags=dict(request.tags),
            )
        )
    return results


def run_automation_until_quiet(
    instance: DagsterInstance,
    resources: dict,
    cursor=None,
    max_ticks: int = 10,
    launched: list | None = None,
):
    """Tick the automation conditions and run what they request until nothing is requested.

    In-process stand-in for the daemon's `embeddings_automation` sensor (tests, benchmarks): the
    requests of a tick are grouped into runs by Dagster's own `build_run_requests`, as the daemon
    groups them, and each run is one `materialize` of exactly its assets and checks. Returns (per
    tick {asset: sorted requested partition keys}, cursor for the next call); `launched`, if
    given, receives one {partition, assets, checks} per run.
    """
    from dagster import AssetKey, evaluate_automation_conditions
    from dagster._core.definitions.automation_tick_evaluation_context import (
        build_run_requests,
    )

    from ..definitions import defs

    assets = [*defs.assets, *(defs.asset_checks or [])]
    ticks = []
    for _ in range(max_ticks):
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        requested = {
            name: sorted(result.get_requested_partitions(AssetKey(name))) for name in GRAPH_ORDER
        }
        requested = {name: keys for name, keys in requested.items() if keys}
        ticks.append(requested)
        subsets = result._requested_subsets  # noqa: SLF001 - what the daemon groups into runs
        runs = build_run_requests(
            entity_subsets=subsets,
            asset_graph=defs.resolve_asset_graph(),
            run_tags=None,
            emit_backfills=False,
        )
        if not runs:
            return ticks, cursor
        for run in runs:
            keys, checks = list(run.asset_selection or []), list(run.asset_check_keys or [])
            if launched is not None:
                launched.append(
                    {
                        "partition": run.partition_key,
                        "assets": sorted(k.to_user_string() for k in keys),
                        "checks": sorted(
                            f"{k.asset_key.to_user_string()}:{k.name}" for k in checks
                        ),
                    }
                )
            selection = AssetSelection.assets(*keys).without_checks() | AssetSelection.checks(
                *checks
            )
            # a checks-only run takes its partition from the tags (see checks.partition_tags)
            partition = run.partition_key if keys else None
            materialize(
                assets,
                selection=selection,
                partition_key=partition,
                instance=instance,
                resources=resources,
                tags={**run.tags, "dagster/from_automation_condition": "true"},
            )
    raise RuntimeError(f"automation still requesting work after {max_ticks} ticks: {ticks[-1]}")
