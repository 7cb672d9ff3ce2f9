"""core check reports -> Dagster AssetCheckResults, shared by the checks and the assets
that run them."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from ..core import checks as core


def as_metadata(facts: dict[str, object]) -> dict[str, MetadataValue]:
    """Facts (flags, names, identities, settings) as values the UI shows but does not plot."""
    return {
        key: MetadataValue.bool(value) if isinstance(value, bool) else MetadataValue.text(value)
        for key, value in facts.items()
    }


def to_result(report, label: str) -> AssetCheckResult:
    """core report -> AssetCheckResult: measurements as numbers (the UI plots them), the rest
    as text, one line of description. A report that evaluated nothing (no labelled queries, no
    ANN index) says so and carries no numbers: no zeros that read like measurements."""
    evaluated = getattr(report, "evaluated", True)
    metadata: dict[str, object] = {**report.metadata(), **as_metadata(report.facts())}
    if not evaluated:
        summary = f"{label}: nothing to evaluate: {report.note}"
    else:
        summary = "; ".join(report.problems) if report.problems else f"{label}: ok"
        if getattr(report, "note", ""):
            summary = f"{summary} ({report.note})"
    metadata["summary"] = MetadataValue.text(summary)
    version = getattr(report, "table_version", None)
    metadata["table"] = MetadataValue.text(
        f"{report.table_name}@v{version}" if version else report.table_name
    )
    return AssetCheckResult(
        passed=report.severity == core.OK,
        severity=AssetCheckSeverity.ERROR
        if report.severity == core.ERROR
        else AssetCheckSeverity.WARN,
        metadata=metadata,
        description=summary[:1000],
    )
