"""The migration gate: may a model version that does not serve its source swap in? A check of
`serving_index` (one module per check that carries its own logic); labelled queries shared."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)

from ..core.config import PlatformConfig
from ..core.evaluation import labelled_queries
from ..core.migration import swap
from ..core.migration_gate import evaluate_gate, query_embedders, serving_target
from ..core.models import model_dimension
from ..core.serving import model_for_version
from .common import grid_of
from .conditions import AFTER_DATA_CHANGE
from .partitions import source_model_partitions
from .resources import PlatformResource
from .results import as_metadata

GATE_FACTS = ("queries", "k", "passed", "evaluable")  # settings and flags: text, not plotted


def labelled(config: PlatformConfig, source: str) -> tuple[list, str]:
    """The source's labelled queries, or none and why not (a malformed canary file): a typo in
    the labels must not stop the index from being built."""
    try:
        return labelled_queries(config.source(source)), ""
    except (OSError, ValueError) as exc:
        return [], str(exc)


@asset_check(
    asset="serving_index",
    name="migration_gate",
    partitions_def=source_model_partitions,
    automation_condition=AFTER_DATA_CHANGE,
    description=(
        "For a model version that does not serve its source: recall@k and nDCG@k of its index "
        "on the source's labelled queries against the serving index. Fails (ERROR) when the "
        "candidate is worse than migration.max_recall_drop / max_ndcg_drop allow; only a "
        "passing candidate may swap in. WARN (not evaluable) without labelled queries."
    ),
)
def migration_gate(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> AssetCheckResult:
    config = platform.load()
    source, version_id = grid_of(context)
    store = platform.store(config)
    pointer = store.pointer(source)
    if pointer is not None and pointer["model_version"] == version_id:
        return AssetCheckResult(
            passed=True,
            metadata=as_metadata(
                {"serving": True, "evaluable": False, "serving_target": serving_target(pointer)}
            ),
            description="this model version serves the source; nothing to gate",
        )
    queries, problem = labelled(config, source)
    if problem:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata=as_metadata(
                {"serving": False, "evaluable": False, "serving_target": serving_target(pointer)}
            ),
            description=f"nothing to evaluate: {problem}"[:1000],
        )
    report = evaluate_gate(
        store,
        source,
        version_id,
        queries,
        query_embedders(store, config, platform.embedder),
        config.migration,
    )
    if report.passed and config.migration.promote == "auto":  # the operator chose: a pass swaps
        row = swap(
            store,
            report,
            run_id=context.run.run_id,
            expected_dimension=model_dimension(model_for_version(config, store, version_id)),
        )
        summary = (
            "gate passed: swapped in (migration.promote: auto) at "
            f"{row['table_name']}@v{row['table_version']}"
        )
    elif report.passed:
        summary = "gate passed: may swap in (embeddings-platform migrate --source S --model M)"
    elif not report.evaluable:  # nothing to judge by is not a failure of the candidate
        summary = "nothing to evaluate: " + "; ".join(report.reasons)
    else:
        summary = "gate failed: " + "; ".join(report.reasons)
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR if report.evaluable else AssetCheckSeverity.WARN,
        metadata={
            # measured only when evaluable: no zeros posing as recall of a gate never run
            **{k: v for k, v in report.metadata.items() if k not in GATE_FACTS},
            **as_metadata(
                {
                    "serving": False,
                    "evaluable": report.evaluable,
                    "passed": report.passed,
                    "queries": str(report.queries),
                    "k": str(report.k),
                    "summary": summary,
                    "serving_model_version": report.serving_version or "",
                    "serving_target": report.serving_target,
                    "serving_table_version": str(report.serving_table_version),
                    "candidate_profile": report.candidate_profile,
                }
            ),
        }
        if report.evaluable
        else as_metadata(
            {
                "serving": False,
                "evaluable": False,
                "summary": summary,
                "serving_target": report.serving_target,
            }
        ),
        description=summary[:1000],
    )
