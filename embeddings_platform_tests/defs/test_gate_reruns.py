"""The migration gate re-runs when what serves changes (swap, rollback), not otherwise."""

import json

from dagster import DagsterInstance, Definitions, SkipReason, build_sensor_context
from dagster._core.event_api import PartitionKeyFilter

from embeddings_platform.core.config import load_config
from embeddings_platform.core.evaluation import labelled_queries
from embeddings_platform.core.migration import rollback, swap
from embeddings_platform.core.migration_gate import evaluate_gate, query_embedders
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store
from embeddings_platform.definitions import ASSETS
from embeddings_platform.defs.gate_reruns import GATE, gate_job, gate_rerun_sensor
from embeddings_platform.defs.migration_gate import migration_gate
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource, cached_embedder
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import hashing_model, write_config

from ..core.test_migration import CANARY


def _latest_gate(instance, key):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [GATE], partition_filter=PartitionKeyFilter(key=key)
    )[GATE]
    return record.event.dagster_event.event_specific_data


def _launch(requests, instance, resources):
    """What the daemon does with the sensor's requests: run the gate job per partition."""
    definitions = Definitions(
        assets=ASSETS, asset_checks=[migration_gate], jobs=[gate_job], resources=resources
    )
    for request in requests:
        result = definitions.resolve_job_def(gate_job.name).execute_in_process(
            instance=instance, tags=request.tags
        )
        assert result.success


def _tick(instance, resources):
    return gate_rerun_sensor(build_sensor_context(instance=instance, resources=resources))


def test_a_swap_and_a_rollback_re_run_the_gates_that_compared_with_the_old_target(tmp_path, corpus):
    (tmp_path / "canary.jsonl").write_text("\n".join(json.dumps(q) for q in CANARY))
    path = write_config(
        tmp_path / "platform.yaml",
        [
            {
                "name": "notes",
                "kind": "folder",
                "path": str(corpus),
                "canary": str(tmp_path / "canary.jsonl"),
            }
        ],
        [hashing_model("old", 256), hashing_model("new", 128)],
        migration={"max_recall_drop": 0.5, "max_ndcg_drop": 0.5, "min_queries": 3},
    )
    config = load_config(path)
    resources = {"platform": PlatformResource(config_path=str(path))}
    instance = DagsterInstance.ephemeral()
    materialize_graph(instance, config, resources=resources)
    old, new = (model_version(config.model(n)).version_id for n in ("old", "new"))
    old_key, new_key = str(grid_key("notes", old)), str(grid_key("notes", new))
    store = Store(config.storage_uri)
    gate = _latest_gate(instance, new_key)
    assert gate.metadata["serving_target"].value.startswith(f"{old} hybrid")
    # nothing moved since the gates ran: nothing to request
    assert isinstance(_tick(instance, resources), SkipReason)

    report = evaluate_gate(
        store,
        "notes",
        new,
        labelled_queries(config.source("notes")),
        query_embedders(store, config, cached_embedder),
        config.migration,
    )
    swap(store, report, "swap")
    requests = _tick(instance, resources)
    assert sorted(r.tags["dagster/partition"] for r in requests) == sorted([old_key, new_key])
    _launch(requests, instance, resources)
    # the old version is now the shadow: its gate compares it with what serves now
    again = _latest_gate(instance, old_key)
    assert again.metadata["serving_target"].value.startswith(f"{new} hybrid")
    assert again.metadata["serving"].value is False and again.passed
    assert _latest_gate(instance, new_key).metadata["serving"].value is True
    assert isinstance(_tick(instance, resources), SkipReason)  # each gate once per move

    rollback(store, "notes", "rollback", config.serving.retention_hours)
    requests = _tick(instance, resources)
    assert sorted(r.tags["dagster/partition"] for r in requests) == sorted([old_key, new_key])
    assert len({r.run_key for r in requests}) == 2
