"""The registry settings the definitions are built with, read once when the code location loads
(sensor intervals, cron strings, freshness windows).

A broken registry must not take the code location down: the UI, the run history and every job
that does not need it stay up, with default settings; the runs and sensor ticks that need the
registry report its error (the resource loads it again in each step).
"""

from ..core.config import ChecksConfig, ConfigError, RefreshConfig, load_config

try:
    _CONFIG = load_config()
except ConfigError:
    _CONFIG = None

REFRESH: RefreshConfig = _CONFIG.refresh if _CONFIG else RefreshConfig()
CHECKS: ChecksConfig = _CONFIG.checks if _CONFIG else ChecksConfig()
