"""Retention expiry, the cleanup job: migrations and refreshes leave old tables, serve tags and
table versions behind, kept while a rollback may still need them (`serving.retained_targets`,
`serving.retention_hours`) and removed here once none can.

The other tables (snapshots and their manifests, stored texts, chunks, pointers, index state)
gain a data fragment and a version with every write, and nothing else compacts them: reads of
a source's snapshots or chunks would slow with its history. Here they are compacted once they
hold more than BOOKKEEPING_FRAGMENTS, and their versions older than the window are removed
(nothing reads them at an old version; only the vectors tables are pinned). Vectors tables are
compacted by index maintenance, which keeps their index segments whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import PlatformConfig
from .models import model_version
from .serving import retained_targets
from .stages.serving_index import model_versions_in
from .store import Store, latest_serve_tag, retry_on_conflict, utcnow
from .table_versions import version_times

BOOKKEEPING_FRAGMENTS = 32  # a table that is not a vectors table is compacted past this


@dataclass
class CleanupReport:
    tables_dropped: list[str] = field(default_factory=list)
    tags_deleted: int = 0
    versions_removed: int = 0
    bytes_removed: int = 0
    fragments_compacted: int = 0  # of the tables that are not vectors tables


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
            _tidy(store.open_table(name), timedelta(hours=hours), report)
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
        _remove_versions(table, timedelta(hours=hours), report)
    return report


def _tidy(table, older_than: timedelta, report: CleanupReport) -> None:
    """Compact a table that is not a vectors table once it has many fragments (a writer racing
    the compaction retries; so does the compaction), then remove its old versions."""
    if len(table.to_lance().get_fragments()) > BOOKKEEPING_FRAGMENTS:
        metrics = retry_on_conflict(lambda: table.to_lance().optimize.compact_files())
        report.fragments_compacted += int(metrics.fragments_removed)
    _remove_versions(table, older_than, report)


def _remove_versions(table, older_than: timedelta, report: CleanupReport) -> None:
    stats = table.to_lance().cleanup_old_versions(
        older_than=older_than, error_if_tagged_old_versions=False
    )
    report.versions_removed += int(getattr(stats, "old_versions", 0) or 0)
    report.bytes_removed += int(getattr(stats, "bytes_removed", 0) or 0)
