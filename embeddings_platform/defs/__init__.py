"""The thin Dagster layer: partitions, resources, assets, checks, sensors, automation."""
