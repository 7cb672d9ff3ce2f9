"""Retention expiry, the cleanup job: migrations and refreshes leave old tables, serve tags and
table versions behind, kept while a rollback may still need them (`serving.retained_targets`,
`serving.retention_hours`) and removed here once none can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import PlatformConfig
from .models import model_version
from .serving import retained_targets
from .stages.serving_index import model_versions_in
from .store import Store, latest_serve_tag, utcnow
from .table_versions import version_times


@dataclass
class CleanupReport:
    tables_dropped: list[str] = field(default_factory=list)
    tags_deleted: int = 0
    versions_removed: int = 0
    bytes_removed: int = 0


def cleanup(store: Store, config: PlatformConfig, now: datetime | None = None) -> CleanupReport:
    """Retention expiry: drop tables of unregistered model versions nothing retains, delete expired
    serve tags, and remove table versions older than the window (tagged ones are kept)."""
    now = now or utcnow()
    hours = config.serving.retention_hours
    keep = {(t["table_name"], t["table_version"]) for t in retained_targets(store, hours, now)}
    registered = {model_version(m).version_id for m in config.models}
    report = CleanupReport()
    for name in store.table_names():
        if not name.startswith("vectors__"):
            continue
        table = store.open_table(name)
        retained_here = {version for table_name, version in keep if table_name == name}
        versions = model_versions_in(table) if table.count_rows() else set()
        if versions and not versions & registered and not retained_here:
            store.drop_table(name)
            report.tables_dropped.append(name)
            continue
        latest = latest_serve_tag(table)
        created_at = version_times(table)
        for tag_name, tag in table.tags.list().items():
            version = tag["version"] if isinstance(tag, dict) else getattr(tag, "version", None)
            if version is None or version in retained_here or version == latest:
                continue
            created = created_at.get(version)
            if created is not None and now - created > timedelta(hours=hours):
                table.tags.delete(tag_name)
                report.tags_deleted += 1
        stats = table.to_lance().cleanup_old_versions(
            older_than=timedelta(hours=hours), error_if_tagged_old_versions=False
        )
        report.versions_removed += int(getattr(stats, "old_versions", 0) or 0)
        report.bytes_removed += int(getattr(stats, "bytes_removed", 0) or 0)
    return report
