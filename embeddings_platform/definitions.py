"""The Definitions object that workspace.yaml (and `dagster dev`) loads.

One defs/ module per stage holds its asset, its checks and its jobs; sensors.py holds what
keeps the graph current, maintenance.py the retention cleanup. This file only collects them
and applies the freshness window read once from the registry (defs/settings.py).
"""

import os
import warnings
from datetime import timedelta

from dagster import (
    BetaWarning,
    Definitions,
    EnvVar,
    FreshnessPolicy,
    apply_freshness_policy,
    map_asset_specs,
)

from .core.config import CONFIG_ENV
from .defs import (
    chunks,
    embeddings,
    gate_reruns,
    index_merges,
    maintenance,
    preparation,
    sensors,
    serving_index,
    snapshot,
)
from .defs.execution import platform_executor
from .defs.resources import PlatformResource
from .defs.settings import REFRESH

# Dagster 1.13 warns that `owners` is in beta when it copies a sensor to bind resources to the
# sensor's jobs, though no sensor here sets owners (the copy passes its own empty list on): a
# warning in every code-server and run log that nothing here can act on.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
    category=BetaWarning,
)

# Every asset must have been (re-)checked within the window: the refresh sensor re-checks a
# partition at the warn window, so FAIL in the UI means the re-checks themselves are failing.
FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=REFRESH.freshness_fail_hours),
    warn_window=timedelta(hours=REFRESH.freshness_warn_hours),
)
ASSETS = [*snapshot.ASSETS, *chunks.ASSETS, *embeddings.ASSETS, *serving_index.ASSETS]

# Where the registry lives differs per deployment: an EnvVar, so the UI shows the variable's
# name rather than a path, and the value is read where the step runs.
platform = (
    PlatformResource(config_path=EnvVar(CONFIG_ENV))
    if os.environ.get(CONFIG_ENV)
    else PlatformResource()
)

defs = Definitions(
    assets=map_asset_specs(lambda spec: apply_freshness_policy(spec, FRESHNESS), ASSETS),
    asset_checks=[*embeddings.CHECKS_DEFS, *serving_index.CHECKS_DEFS],
    sensors=[*sensors.SENSORS, *gate_reruns.SENSORS, *index_merges.SENSORS],
    schedules=[*serving_index.SCHEDULES, *sensors.SCHEDULES, *maintenance.SCHEDULES],
    jobs=[
        *snapshot.JOBS,
        *embeddings.JOBS,
        *serving_index.JOBS,
        *sensors.JOBS,
        *gate_reruns.JOBS,
        *index_merges.JOBS,
        *maintenance.JOBS,
        *preparation.JOBS,
    ],
    resources={"platform": platform},
    executor=platform_executor(),  # one process per run, or Celery when a broker is configured
)
