"""The Definitions object that workspace.yaml (and `dagster dev`) loads.

Each defs/ module exports plain lists (ASSETS, CHECKS, SENSORS, ...); this file only
collects them, so adding a capability means adding one module and one line here.
"""

from dagster import Definitions

from .defs.assets import ASSETS
from .defs.checks import CHECKS, JOBS as CHECK_JOBS, SCHEDULES as CHECK_SCHEDULES
from .defs.resources import PlatformResource
from .defs.sensors import JOBS as REFRESH_JOBS, SCHEDULES as REFRESH_SCHEDULES, SENSORS

defs = Definitions(
    assets=[*ASSETS],
    asset_checks=[*CHECKS],
    sensors=[*SENSORS],
    schedules=[*CHECK_SCHEDULES, *REFRESH_SCHEDULES],
    jobs=[*CHECK_JOBS, *REFRESH_JOBS],
    resources={"platform": PlatformResource()},
)
