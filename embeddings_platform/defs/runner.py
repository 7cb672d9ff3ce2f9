"""Run the asset graph from Python: used by the CLI's main job, benchmarks and tests."""

from __future__ import annotations

from dagster import AssetSelection, DagsterInstance, materialize

from ..core.config import PlatformConfig
from ..core.models import model_version
from .partitions import grid_key, sync_partitions
from .resources import PlatformResource


def materialize_graph(
    instance: DagsterInstance,
    config: PlatformConfig,
    sources: list[str] | None = None,
    models: list[str] | None = None,
    resources: dict | None = None,
    raise_on_error: bool = True,
) -> list:
    """Materialize the graph for the chosen sources x models: one run per partition.

    Source-level assets run once per source, then embeddings and serving_index once per
    (source, model version) cell; runs land in `instance`, so `dagster dev` shows them.
    """
    from ..definitions import defs

    sync_partitions(instance, config)
    resources = resources or {"platform": PlatformResource(config_path=str(config.config_path))}
    assets = [*defs.assets, *(defs.asset_checks or [])]  # selections include their checks
    results = []
    source_names = sources or [s.name for s in config.sources]
    model_configs = [m for m in config.models if not models or m.name in models]
    for source in source_names:
        results.append(materialize(
            assets, selection=AssetSelection.assets("source_snapshot", "chunks"), partition_key=source,
            instance=instance, resources=resources, raise_on_error=raise_on_error,
        ))
        for model in model_configs:
            key = grid_key(source, model_version(model).version_id)
            results.append(materialize(
                assets, selection=AssetSelection.assets("embeddings", "serving_index"), partition_key=key,
                instance=instance, resources=resources, raise_on_error=raise_on_error,
            ))
    return results
