"""Stage 2 in Dagster: `chunks`, cut for every chunking strategy in use."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ..core.models import load_tokenizer, model_version
from ..core.serving import (
    models_in_use,
)
from ..core.stages.chunks import sync_chunks
from .common import GROUP, OWNERS, _markdown_table
from .partitions import source_partitions
from .resources import PlatformResource


@asset(
    partitions_def=source_partitions,
    deps=["source_snapshot"],
    group_name=GROUP,
    # No automation condition: chunks is built in the same run as its snapshot (snapshot_job,
    # recheck_source_job, the CLI). Automated too, it raced that run: an automation tick that saw
    # the snapshot's new data version but not yet the chunks written after it requested a second,
    # empty chunks run (a new source's first build showed one).
    kinds={"python", "lancedb"},
    owners=OWNERS,
    description=(
        "Token-window chunks of the latest snapshot, per chunking strategy of the registered "
        "models (measured with each model's own tokenizer); chunk_id = hash(doc, strategy, text)."
    ),
)
def chunks(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    config = platform.load()
    store = platform.store(config)
    source = context.partition_key
    snapshot = store.latest_snapshot(source)
    if snapshot is None:
        raise LookupError(f"source {source!r} has no snapshot; materialize source_snapshot first")
    # Every model that builds or serves: an edited entry's old version keeps serving until a
    # migration replaces it, so its chunking strategy stays current too.
    in_use = models_in_use(config, store, config.serving.retention_hours)
    by_strategy = {model_version(m).chunking_strategy: m for m in reversed(in_use)}
    metadata: dict[str, object] = {
        "snapshot_id": snapshot["snapshot_id"],
        "strategies": MetadataValue.text(", ".join(sorted(by_strategy))),
    }
    totals = {
        "documents_chunked": 0,
        "chunks_written": 0,
        "chunks_deleted": 0,
        "metadata_updated": 0,
        "total_chunks": 0,
    }
    for strategy, model in sorted(by_strategy.items()):
        report = sync_chunks(
            store, source, snapshot["snapshot_id"], model, strategy, load_tokenizer(model)
        )
        context.log.info(
            f"{strategy}: chunked {report.documents_chunked} documents, wrote "
            f"{report.chunks_written}, deleted {report.chunks_deleted}, total {report.total_chunks}"
        )
        for key in totals:
            totals[key] += getattr(report, key)
    data_version = "|".join([snapshot["snapshot_id"], *sorted(by_strategy)])
    return MaterializeResult(
        metadata={**metadata, **totals, "summary": _markdown_table(totals)},
        data_version=DataVersion(data_version),
    )


ASSETS = [chunks]
