"""The Dagster checks: partitioned like their assets, executed with the graph on an ephemeral
instance, with the right severities, numeric metadata, blocking, automation and schedule."""

import json
import math
from datetime import datetime, timezone

import pyarrow as pa
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    BoolMetadataValue,
    DagsterInstance,
    Definitions,
    FloatMetadataValue,
    IntMetadataValue,
    SkipReason,
    TextMetadataValue,
    build_schedule_context,
    define_asset_job,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
)

from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.definitions import ASSETS, defs
from embeddings_platform.defs import embeddings as embeddings_defs
from embeddings_platform.defs import serving_index as serving_defs
from embeddings_platform.defs.common import partition_tags
from embeddings_platform.defs.partitions import (
    grid_key,
    source_model_partitions,
    source_partitions,
)
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.defs.serving_index import served_staleness_schedule
from embeddings_platform.testing import write_config

from ..core.test_checks import CANARY

# the checks of the asset graph (the migration gate has its own tests)
CHECKS = [
    c
    for c in [*embeddings_defs.CHECKS_DEFS, *serving_defs.CHECKS_DEFS]
    if c is not serving_defs.migration_gate
]
ALL = [*ASSETS, *CHECKS]
EMBEDDINGS_CHECKS = {"consistency", "staleness"}
SERVING_CHECKS = {"served_consistency", "served_staleness", "ann_recall", "retrieval_recall"}
GRID_CHECK_KEYS = (
    {("embeddings", n) for n in EMBEDDINGS_CHECKS}
    | {("serving_index", n) for n in SERVING_CHECKS}
    | {("serving_index", "migration_gate")}
)
SOURCE_CHECK_KEYS = {("source_snapshot", "quarantine")}


def _plotted(metadata) -> dict:
    """The values the UI plots: ints and floats."""
    return {
        k: v for k, v in metadata.items() if isinstance(v, (IntMetadataValue, FloatMetadataValue))
    }


FLAGS = {
    "served",
    "serving",
    "has_ann_index",
    "counts_compared",
    "pointer_target_exists",
    "has_baseline",
    "baseline_recorded",
    "evaluated",
}


# the quarantine check is part of the snapshot step itself, so it is selected with it
SNAPSHOT_AND_CHUNKS = AssetSelection.assets(
    "source_snapshot", "chunks"
).without_checks() | AssetSelection.checks_for_assets("source_snapshot")


def _setup(tmp_path, corpus, **checks_section):
    canary = tmp_path / "canary.jsonl"
    canary.write_text("\n".join(json.dumps(c) for c in CANARY) + "\n")
    extra = {"checks": {"retrieval": {"k": 1}, **checks_section}}
    path = write_config(
        tmp_path / "checked.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
        **extra,
    )
    from embeddings_platform.core.config import load_config

    config = load_config(path)
    return config, {"platform": PlatformResource(config_path=str(path))}


def run_checks(selection, partition_key, instance, resources):
    """A checks-only run (dagster.materialize needs a selected asset to infer partitions)."""
    selection = selection - AssetSelection.checks_for_assets(
        "source_snapshot"
    )  # runs inside the snapshot step
    job = define_asset_job(
        "checks_only", selection=selection, partitions_def=source_model_partitions
    )
    definitions = Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[job], resources=resources)
    return definitions.resolve_job_def("checks_only").execute_in_process(
        instance=instance, tags=partition_tags(str(partition_key)), raise_on_error=False
    )


def _evaluations(results):
    out = {}
    for result in results:
        for evaluation in result.get_asset_check_evaluations():
            out[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation
    return out


def test_checks_are_registered_partitioned_like_their_assets():
    graph = defs.get_repository_def().asset_graph
    keys = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert keys == GRID_CHECK_KEYS | SOURCE_CHECK_KEYS
    for check_def in CHECKS:
        for spec in check_def.check_specs:
            expected = (
                source_partitions
                if spec.asset_key.to_user_string() == "source_snapshot"
                else source_model_partitions
            )
            assert spec.partitions_def == expected == graph.get(spec.asset_key).partitions_def
            assert graph.get(spec.key).automation_condition is not None
    blocking = {spec.key.name for c in CHECKS for spec in c.check_specs if spec.blocking}
    assert blocking == {"consistency"}
    assert "served_staleness_schedule" in [s.name for s in defs.schedules]


def test_checks_run_with_the_graph_and_plot_only_what_they_measure(tmp_path, corpus, embedder):
    config, resources = _setup(tmp_path, corpus)
    instance = DagsterInstance.ephemeral()
    results = materialize_graph(instance, config, resources=resources)
    evaluations = _evaluations(results)
    assert set(evaluations) == GRID_CHECK_KEYS | SOURCE_CHECK_KEYS
    quarantine = evaluations.pop(("source_snapshot", "quarantine"))
    assert (
        quarantine.passed
        and quarantine.partition == "notes"
        and quarantine.metadata["quarantined"].value == 0
    )
    gate = evaluations[("serving_index", "migration_gate")]
    assert gate.passed and gate.metadata["serving"].value is True  # the only model: no gate
    assert not _plotted(gate.metadata)
    key = grid_key("notes", model_version(config.models[0]).version_id)
    for (asset, name), evaluation in evaluations.items():
        assert evaluation.passed, (asset, name, evaluation.description)
        assert evaluation.partition == key
        meta = evaluation.metadata
        # identities and settings are text (a plot of a constant is noise), flags are bools
        for label in ("table_version", "dimension", "expected_dimension", "k", "queries"):
            assert label not in meta or isinstance(meta[label], TextMetadataValue), (name, label)
        flags = {label: v for label, v in meta.items() if label in FLAGS}
        assert flags and all(isinstance(v, BoolMetadataValue) for v in flags.values()), name
        table = vectors_table_name("notes", key.keys_by_dimension["model"])
        if name != "migration_gate":
            assert meta["table"].value == f"{table}@v{meta['table_version'].value}", name
    for name in ("consistency", "staleness"):
        assert _plotted(evaluations[("embeddings", name)].metadata), name
    consistency = evaluations[("embeddings", "consistency")].metadata
    assert consistency["vectors"].value == 8 and consistency["dimension"].value == "256"
    # exact search below serving.ann_min_rows: nothing to compare, so no recall is reported
    ann = evaluations[("serving_index", "ann_recall")]
    assert ann.description.startswith("ann recall: nothing to evaluate: no ANN index")
    assert ann.metadata["evaluated"].value is False and "recall" not in ann.metadata
    recall = evaluations[("serving_index", "retrieval_recall")].metadata
    assert (
        recall["recall"].value == 1.0
        and recall["baseline_recorded"].value is True
        and recall["queries"].value == "5"
    )
    assert recall["context_recall"].value == 1.0
    assert isinstance(recall["recall"], FloatMetadataValue)
    # results are stored per partition, so the UI plots them over runs
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey("serving_index"), "retrieval_recall")]
    )
    assert list(record.values())[0].status.value == "SUCCEEDED"
    # the second run compares with the stored baseline instead of recording a new one
    again = run_checks(AssetSelection.checks_for_assets("serving_index"), key, instance, resources)
    second = _evaluations([again])[("serving_index", "retrieval_recall")].metadata
    assert second["has_baseline"].value is True and second["baseline_recorded"].value is False
    assert second["recall_drop_points"].value == 0.0


def test_failed_consistency_blocks_serving_index_and_keeps_the_pointer(tmp_path, corpus, embedder):
    config, resources = _setup(tmp_path, corpus)
    instance = DagsterInstance.ephemeral()
    materialize_graph(instance, config, resources=resources)
    store = Store(config.storage_uri)
    version_id = model_version(config.models[0]).version_id
    pointer = store.pointer("notes")
    table = store.db.open_table(vectors_table_name("notes", version_id))
    row = Store.read(table).to_pylist()[0]
    row["vector"] = [math.nan] * len(row["vector"])
    table.to_lance().merge_insert("chunk_id").when_matched_update_all().execute(
        pa.Table.from_pylist([row], schema=table.schema)
    )
    key = grid_key("notes", version_id)
    result = materialize(
        ALL,
        selection=AssetSelection.assets("embeddings", "serving_index"),
        partition_key=key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    evaluation = _evaluations([result])[("embeddings", "consistency")]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["nan_or_inf"].value == 1
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"embeddings"}  # the blocking ERROR kept serving_index from running
    assert store.pointer("notes")["table_version"] == pointer["table_version"]


def test_stale_vectors_warn_or_error_by_configured_threshold(tmp_path, corpus, embedder):
    config, resources = _setup(
        tmp_path, corpus, staleness={"stale_fraction": {"warn": 0.0, "error": 0.9}}
    )
    instance = DagsterInstance.ephemeral()
    materialize_graph(instance, config, resources=resources)
    (corpus / "cats.md").unlink()
    materialize(
        ALL,
        selection=SNAPSHOT_AND_CHUNKS,
        partition_key="notes",
        instance=instance,
        resources=resources,
    )
    key = grid_key("notes", model_version(config.models[0]).version_id)
    result = run_checks(
        AssetSelection.checks_for_assets("embeddings", "serving_index"), key, instance, resources
    )
    evaluations = _evaluations([result])
    stale = evaluations[("embeddings", "staleness")]
    assert not stale.passed and stale.severity == AssetCheckSeverity.WARN
    assert (
        stale.metadata["deleted_docs_present"].value == 1
        and stale.metadata["stale_vanished"].value > 0
    )
    assert not evaluations[
        ("serving_index", "served_staleness")
    ].passed  # the deleted doc is still served
    # chunks moved ahead of the vectors: pending work, reported by staleness, not an inconsistency
    consistency = evaluations[("embeddings", "consistency")]
    assert consistency.passed and consistency.metadata["counts_compared"].value == 0
    assert evaluations[("serving_index", "served_consistency")].passed


def requested_checks(result) -> dict[str, int]:
    """check name -> partitions requested (sizes of dynamic-partition subsets
    need the tick's context)."""
    from dagster._core.definitions.partitions.context import partition_loading_context

    with partition_loading_context(new_ctx=result._partition_loading_context):
        return {r.key.name: r.true_subset.size for r in result.results if r.true_subset.size}


def test_checks_are_requested_after_their_asset_materializes(tmp_path, corpus, embedder):
    config, resources = _setup(tmp_path, corpus)
    instance = DagsterInstance.ephemeral()
    from embeddings_platform.defs.partitions import sync_partitions

    sync_partitions(instance, config)
    materialize(
        ALL,
        selection=SNAPSHOT_AND_CHUNKS,
        partition_key="notes",
        instance=instance,
        resources=resources,
    )
    key = grid_key("notes", model_version(config.models[0]).version_id)
    selection = AssetSelection.all_asset_checks()
    first = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert first.total_requested == 0  # the first tick only starts the cursor
    materialize(
        ALL,
        selection=AssetSelection.assets("embeddings", "serving_index").without_checks(),
        partition_key=key,
        instance=instance,
        resources=resources,
    )
    second = evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    assert requested_checks(second) == {
        name: 1 for name in EMBEDDINGS_CHECKS | SERVING_CHECKS | {"migration_gate"}
    }
    run_checks(AssetSelection.all_asset_checks(), key, instance, resources)  # the requested run
    settled = evaluate_automation_conditions(  # the daemon's next tick
        defs=defs, instance=instance, asset_selection=selection, cursor=second.cursor
    )
    assert settled.total_requested == 0
    # a rerun that changes nothing keeps the data versions: no new check run (plain eager()
    # would request every check again here: its assets were materialized since the last tick)
    materialize(
        ALL,
        selection=AssetSelection.assets("embeddings", "serving_index").without_checks(),
        partition_key=key,
        instance=instance,
        resources=resources,
    )
    third = evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=settled.cursor
    )
    assert third.total_requested == 0
    # a real change (a new document) changes the data versions: the checks run again
    (corpus / "owls.md").write_text("Owls are nocturnal birds of prey with silent flight.")
    materialize(
        ALL,
        selection=SNAPSHOT_AND_CHUNKS,
        partition_key="notes",
        instance=instance,
        resources=resources,
    )
    materialize(
        ALL,
        selection=AssetSelection.assets("embeddings", "serving_index").without_checks(),
        partition_key=key,
        instance=instance,
        resources=resources,
    )
    fourth = evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=third.cursor
    )
    assert set(requested_checks(fourth)) == (
        EMBEDDINGS_CHECKS | SERVING_CHECKS | {"migration_gate"}
    )


def test_schedule_requests_the_staleness_check_of_every_served_partition(
    tmp_path, corpus, embedder
):
    config, resources = _setup(tmp_path, corpus)
    from embeddings_platform.defs.partitions import sync_partitions

    with instance_for_test() as instance:  # schedules need an instance ref, not an ephemeral one
        sync_partitions(instance, config)
        tick = datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc)

        def evaluate():
            # as a context manager: the context opens its own instance from the ref and must
            # close it
            with build_schedule_context(
                instance=instance, resources=resources, scheduled_execution_time=tick
            ) as context:
                return served_staleness_schedule(context)

        assert isinstance(evaluate(), SkipReason)  # nothing is served yet
        materialize_graph(instance, config, resources=resources)
        requests = evaluate()
        key = grid_key("notes", model_version(config.models[0]).version_id)
        assert [r.tags["dagster/partition"] for r in requests] == [str(key)]
        assert requests[0].run_key == f"{key}:{tick.isoformat()}"  # one run per partition per tick
        job = defs.resolve_job_def("served_staleness_job")
        run = job.execute_in_process(instance=instance, resources=resources, tags=requests[0].tags)
        evaluations = _evaluations([run])
        assert set(evaluations) == {("serving_index", "served_staleness")}
        evaluation = evaluations[("serving_index", "served_staleness")]
        assert evaluation.passed and evaluation.partition == str(key)
        assert evaluation.metadata["lag_hours"].value == 0.0
