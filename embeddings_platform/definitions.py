"""The Definitions object that workspace.yaml (and `dagster dev`) loads.

Each defs/ module exports plain lists (ASSETS, CHECKS, SENSORS, ...); this file only
collects them, so adding a capability means adding one module and one line here.
"""

import os

from dagster import Definitions, EnvVar

from .core.config import CONFIG_ENV
from .defs.assets import ASSETS
from .defs.checks import CHECKS
from .defs.checks import JOBS as CHECK_JOBS
from .defs.checks import SCHEDULES as CHECK_SCHEDULES
from .defs.execution import JOBS as EXECUTION_JOBS
from .defs.execution import platform_executor
from .defs.migration import CHECKS as MIGRATION_CHECKS
from .defs.migration import JOBS as MIGRATION_JOBS
from .defs.migration import SCHEDULES as MIGRATION_SCHEDULES
from .defs.preparation import JOBS as PREPARATION_JOBS
from .defs.resources import PlatformResource
from .defs.sensors import JOBS as REFRESH_JOBS
from .defs.sensors import SCHEDULES as REFRESH_SCHEDULES
from .defs.sensors import SENSORS

# Where the registry lives differs per deployment: an EnvVar, so the UI shows the variable's
# name rather than a path, and the value is read where the step runs.
platform = PlatformResource(config_path=EnvVar(CONFIG_ENV)) if os.environ.get(CONFIG_ENV) else PlatformResource()

defs = Definitions(
    assets=[*ASSETS],
    asset_checks=[*CHECKS, *MIGRATION_CHECKS],
    sensors=[*SENSORS],
    schedules=[*CHECK_SCHEDULES, *REFRESH_SCHEDULES, *MIGRATION_SCHEDULES],
    jobs=[*CHECK_JOBS, *REFRESH_JOBS, *MIGRATION_JOBS, *EXECUTION_JOBS, *PREPARATION_JOBS],
    resources={"platform": platform},
    executor=platform_executor(),  # one process per run, or Celery when a broker is configured
)
