"""core check reports -> Dagster AssetCheckResults, shared by the checks and the assets
that run them."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from ..core import checks as core


def to_result(report, label: str) -> AssetCheckResult:
    """core report -> AssetCheckResult (numbers for the UI's plots, one line of text)."""
    passed = report.severity == core.OK
    metadata: dict[str, object] = dict(report.metadata())
    summary = "; ".join(report.problems) if report.problems else f"{label}: ok"
    if getattr(report, "note", ""):
        summary = f"{summary} ({report.note})"
    metadata["summary"] = MetadataValue.text(summary)
    metadata["table"] = MetadataValue.text(f"{report.table_name}@v{report.table_version}")
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR
        if report.severity == core.ERROR
        else AssetCheckSeverity.WARN,
        metadata=metadata,
        description=summary[:1000],
    )
