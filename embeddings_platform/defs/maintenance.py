"""Retention cleanup: what stopped serving longer ago than serving.retention_hours."""

from dagster import (
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from ..core.retention import cleanup
from .resources import PlatformResource


@op(
    description=(
        "Retention expiry: drop unretained tables of unregistered model versions, expired tags "
        "and versions."
    )
)
def retention_cleanup(context: OpExecutionContext, platform: PlatformResource) -> None:
    config = platform.load()
    report = cleanup(platform.store(config), config)
    context.log.info(
        f"dropped {len(report.tables_dropped)} tables {report.tables_dropped}, deleted "
        f"{report.tags_deleted} tags, removed {report.versions_removed} old versions "
        f"({report.bytes_removed} bytes), compacted {report.fragments_compacted} fragments of "
        "bookkeeping tables"
    )


@job(
    description=(
        "Retention cleanup of old serving targets, tables and versions (serving.retention_hours)."
    )
)
def retention_cleanup_job():
    retention_cleanup()


retention_cleanup_schedule = ScheduleDefinition(
    name="retention_cleanup_schedule",
    job=retention_cleanup_job,
    cron_schedule="30 4 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily: what stopped serving more than serving.retention_hours ago is cleaned up.",
)


JOBS = [retention_cleanup_job]
SCHEDULES = [retention_cleanup_schedule]
