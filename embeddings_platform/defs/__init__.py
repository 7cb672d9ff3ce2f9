"""The thin Dagster layer: partitions, resources, assets, checks, sensors, automation."""

import warnings

try:  # partitioned asset checks are a preview feature in dagster 1.13; we rely on them knowingly
    from dagster._utils.warnings import PreviewWarning

    warnings.filterwarnings(
        "ignore", message=".*partitions_def.*AssetCheckSpec", category=PreviewWarning
    )
except ImportError:  # pragma: no cover - older/newer dagster
    pass
