"""Labelled queries in the Dagster layer (defs/migration_gate.py): a malformed canary file is
a clear finding of the checks that use it, and never stops the index from being built."""

import json

from dagster import AssetCheckSeverity, DagsterInstance

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import write_config


def test_a_malformed_canary_file_fails_its_checks_by_line_and_the_index_still_serves(
    tmp_path, corpus
):
    canary = tmp_path / "canary.jsonl"
    canary.write_text(
        json.dumps({"query": "cats purr", "relevant": ["cats.md"]}) + '\n{"query": "dogs"}\n'
    )
    shadow_model = {"name": "other", "kind": "hashing", "dimension": 64}
    path = write_config(
        tmp_path / "c.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
        [{"name": "hash", "kind": "hashing", "dimension": 256}, shadow_model],
    )
    config = load_config(path)
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    results = materialize_graph(instance, config, resources=resources)
    assert all(r.success for r in results)
    assert Store(config.storage_uri).pointer("notes") is not None  # served all the same
    problem = f"canary file {canary}, line 2: 'relevant' must be a non-empty list of doc ids"
    serving, shadow = (str(grid_key("notes", model_version(m).version_id)) for m in config.models)
    found = {
        (e.partition, e.check_name): e for r in results for e in r.get_asset_check_evaluations()
    }
    recall = found[(serving, "retrieval_recall")]
    assert not recall.passed and recall.severity == AssetCheckSeverity.ERROR
    assert recall.description == f"retrieval recall: nothing to evaluate: {problem}"
    assert not [k for k, v in recall.metadata.items() if k == "recall"]
    gate = found[(shadow, "migration_gate")]
    assert not gate.passed and gate.severity == AssetCheckSeverity.WARN
    assert gate.description == f"nothing to evaluate: {problem}"
    index_runs = [r for r in results if r.asset_materializations_for_node("serving_index")]
    for run in index_runs:
        meta = run.asset_materializations_for_node("serving_index")[0].metadata
        assert "sample_search" not in meta  # no labelled query to show, said in the log
        logs = [e.message for e in instance.all_logs(run.run_id) if e.step_key == "serving_index"]
        assert f"no sample search: {problem}" in logs
