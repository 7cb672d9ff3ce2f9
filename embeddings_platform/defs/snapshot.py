"""Stage 1 in Dagster: `source_snapshot` (one partition per source or shard) and its
quarantine check, evaluated inside every snapshot run."""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    asset,
)

from ..core import checks as core_checks
from ..core.stages.snapshot import take_snapshot
from .common import GROUP, OWNERS, _markdown_table
from .partitions import source_partitions
from .preparation import TRIGGER
from .resources import PlatformResource
from .results import to_result


@asset(
    partitions_def=source_partitions,
    group_name=GROUP,
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Immutable, content-addressed snapshot of one registered source: every document "
        "validated and hashed; bad documents quarantined with a reason."
    ),
    # Evaluated inside every snapshot run, so it can never lag the snapshot it describes.
    check_specs=[
        AssetCheckSpec(
            "quarantine",
            asset="source_snapshot",
            partitions_def=source_partitions,
            description=(
                "Documents of the newest snapshot set aside in the quarantine table, counted by "
                "reason (undecodable, empty, unprintable, lossy text, too large, parser errors, "
                "broken links, special files, no usable tokens, duplicates). "
                "WARN when any."
            ),
        )
    ],
)
def source_snapshot(
    context: AssetExecutionContext, platform: PlatformResource
) -> MaterializeResult:
    config = platform.load()
    store = platform.store(config)
    # A freshness re-check reads the whole source: it also catches what no stamp or watermark
    # showed (a row edited without moving its updated_at column).
    full = context.run.tags.get(TRIGGER) == "freshness-recheck"
    report = take_snapshot(
        store, config.source(context.partition_key), context.run.run_id, config.documents, full
    )
    for rejected in report.quarantined[:20]:
        context.log.warning(f"quarantined {rejected.doc_id!r}: {rejected.reason}")
    if report.lossy_documents:
        context.log.warning(
            f"kept {report.lossy_documents} documents holding a few U+FFFD "
            "(below documents.max_replacement_fraction)"
        )
    quarantine = to_result(core_checks.quarantine(store, context.partition_key), "quarantine")
    counts = {
        "documents": report.documents,
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "unchanged": report.unchanged,
        "metadata_changed": report.metadata_changed,
        "quarantined": len(report.quarantined),
        "lossy_documents": report.lossy_documents,
        "documents_read": report.documents_read,
    }
    return MaterializeResult(
        metadata={
            **counts,
            "snapshot_id": report.snapshot_id,
            "new_snapshot": report.is_new,
            "full_read": report.full_read,
            "summary": _markdown_table(counts),
        },
        data_version=DataVersion(report.snapshot_id),
        check_results=[quarantine],
    )


ASSETS = [source_snapshot]
JOBS: list = []
