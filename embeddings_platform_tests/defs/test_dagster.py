"""The Dagster layer: definitions load, the graph materializes per partition, CLI answers."""

import json

from dagster import (
    AssetKey,
    DagsterInstance,
    FloatMetadataValue,
    IntMetadataValue,
    TextMetadataValue,
    materialize,
)

from embeddings_platform import cli
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store, chunks_table_name
from embeddings_platform.definitions import ASSETS, defs
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import write_config

CHUNKS_OF_DOCS = 8  # the test corpus in 12-token windows, 3 overlapping: a first run embeds all


def test_definitions_load_and_describe_themselves():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"source_snapshot", "chunks", "embeddings", "serving_index"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.description and node.owners and node.kinds, key


def test_full_materialization_with_ephemeral_instance(config_path, config, embedder):
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(config_path))}
    results = materialize_graph(instance, config, resources=resources)
    assert all(r.success for r in results)
    version_id = model_version(config.models[0]).version_id
    key = grid_key("notes", version_id)
    events = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization
    assert events.partition == key
    assert events.metadata["embedded"].value == CHUNKS_OF_DOCS
    assert events.metadata["model_version"].value == version_id
    # what changes over time plots (ints, floats); identities are text, not a flat line
    plotted = {
        k
        for k, v in events.metadata.items()
        if isinstance(v, (IntMetadataValue, FloatMetadataValue))
    }
    assert {"embedded", "vectors", "embed_seconds", "chunks_per_second"} <= plotted
    assert not plotted & {"dimension", "table_version", "model_version"}
    assert events.metadata["dimension"] == TextMetadataValue("256")
    served = instance.get_latest_materialization_event(AssetKey("serving_index"))
    assert isinstance(served.asset_materialization.metadata["table_version"], TextMetadataValue)
    calls = embedder.calls
    # second run of the embeddings cell: nothing to embed, no model call
    again = materialize(
        ASSETS,
        selection=["embeddings", "serving_index"],
        partition_key=key,
        instance=instance,
        resources=resources,
    )
    meta = again.asset_materializations_for_node("embeddings")[0].metadata
    assert meta["embedded"].value == 0 and meta["model_calls"].value == 0
    assert embedder.calls == calls


def test_cli_status_search_and_lineage(
    config_path, config, embedder, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert (
        cli.main(["--config", str(config_path), "materialize", "--sample-query", "dog barks"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    version_id = model_version(config.models[0]).version_id
    [row] = [line.split() for line in out if line.startswith("notes ")]
    assert row[:7] == ["notes", version_id, "5", "0", str(CHUNKS_OF_DOCS), str(CHUNKS_OF_DOCS), "4"]
    sample = out.index("Sample search on 'notes': \"dog barks\"")
    assert out[sample + 1].split()[2] == "dogs.txt"  # " 1. <score>  dogs.txt  [chunk id]"
    assert (
        cli.main(
            [
                "--config",
                str(config_path),
                "search",
                "memory safety systems language",
                "--source",
                "notes",
                "-k",
                "2",
                "--json",
            ]
        )
        == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["doc_id"] == "rust.rst" and hits[0]["lineage"]["model_name"] == "hash"
    assert cli.main(["--config", str(config_path), "status", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    expected = {
        "source": "notes",
        "model_version": version_id,
        "documents": 5,
        "quarantined": 0,
        "chunks": CHUNKS_OF_DOCS,
        "vectors": CHUNKS_OF_DOCS,
        "serving": True,
    }
    assert {k: row[k] for k in expected} == expected
    assert cli.main(["--config", str(config_path), "lineage", "cats.md"]) == 0
    traced = json.loads(capsys.readouterr().out)
    store = Store(config.storage_uri)
    pointer = store.pointer("notes")
    manifest = store.snapshot_manifest("notes", store.latest_snapshot("notes")["snapshot_id"])
    strategy = model_version(config.models[0]).chunking_strategy
    chunks = Store.read(store.table(chunks_table_name("notes", strategy)))
    cats = sorted(c["chunk_id"] for c in chunks.to_pylist() if c["doc_id"] == "cats.md")
    assert sorted(v["chunk_id"] for v in traced["vectors"]) == cats
    cats_sha = manifest["cats.md"][0]
    assert {(v["doc_id"], v["doc_sha256"]) for v in traced["vectors"]} == {("cats.md", cats_sha)}
    served = traced["serving"]["notes"]["table_version"]
    assert served == pointer["table_version"] == row["served_table_version"]


def test_cli_reports_missing_serving_index(config_path, capsys):
    assert cli.main(["--config", str(config_path), "search", "x", "--source", "notes"]) == 2
    assert "no serving index yet" in capsys.readouterr().err


def test_runs_show_progress_tables_and_a_sample_search(tmp_path, corpus, embedder):
    """What an operator sees: progress log lines, a Markdown summary,
    a preview of search results."""
    from embeddings_platform.core.config import load_config

    canary = tmp_path / "canary.jsonl"
    canary.write_text(json.dumps({"query": "cat purrs hunts mice", "relevant": ["cats.md"]}) + "\n")
    path = write_config(
        tmp_path / "ops.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus), "canary": str(canary)}],
    )
    config = load_config(path)
    instance = DagsterInstance.ephemeral()
    results = materialize_graph(
        instance, config, resources={"platform": PlatformResource(config_path=str(path))}
    )
    grid_run = next(r for r in results if r.asset_materializations_for_node("embeddings"))
    logs = [e.message for e in instance.all_logs(grid_run.run_id) if e.message]
    assert any(line.startswith("embedded 8 chunks in ") for line in logs)
    embedded = grid_run.asset_materializations_for_node("embeddings")[0].metadata
    assert (
        "| embedded | 8 |" in embedded["summary"].value
        and "| dead_lettered | 0 |" in embedded["summary"].value
    )
    served = grid_run.asset_materializations_for_node("serving_index")[0].metadata
    preview = served["sample_search"].value
    assert "**cat purrs hunts mice**" in preview and preview.index("`cats.md`") < preview.index(
        "| 2 |"
    )


def test_a_slow_step_logs_progress_on_its_timer_into_the_run_log(
    config_path, config, embedder, monkeypatch
):
    """The timer's thread logs through the step's context: lines land in the run's event log
    while a batch is still running, and a rerun says there was nothing to embed."""
    import functools
    import time

    from embeddings_platform.core.models import HashingEmbedder
    from embeddings_platform.core.progress import EmbedProgress
    from embeddings_platform.defs import embeddings as embeddings_defs
    from embeddings_platform.defs import resources

    class Slow(HashingEmbedder):
        def embed(self, texts):
            time.sleep(1.0)
            return super().embed(texts)

    version_id = model_version(config.models[0]).version_id
    monkeypatch.setitem(resources._EMBEDDERS, version_id, Slow(256))
    fast_timer = functools.partial(EmbedProgress, first_after=0.1, every=0.3)
    monkeypatch.setattr(embeddings_defs, "EmbedProgress", fast_timer)
    instance = DagsterInstance.ephemeral()
    platform = {"platform": PlatformResource(config_path=str(config_path))}
    results = materialize_graph(instance, config, resources=platform)
    run = results[-1]
    lines = [e.message for e in instance.all_logs(run.run_id) if e.step_key == "embeddings"]
    assert any(m.startswith("embedding 8 chunks: first batch running") for m in lines), lines
    assert any(m.startswith("embedded 8 chunks in ") and "chunks/s" in m for m in lines), lines
    again = materialize(
        ASSETS,
        selection=["embeddings"],
        partition_key=str(grid_key("notes", version_id)),
        instance=instance,
        resources=platform,
    )
    lines = [e.message for e in instance.all_logs(again.run_id) if e.step_key == "embeddings"]
    assert f"nothing to embed ({CHUNKS_OF_DOCS} unchanged)" in lines


def test_definitions_validate_with_the_config_read_through_an_env_var(config_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "embeddings_platform.definitions"],
        env={**os.environ, "EMBEDDINGS_PLATFORM_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All code locations passed validation" in done.stderr + done.stdout


def test_snapshot_metadata_counts_lossy_documents_and_reads_the_documents_setting(tmp_path):
    from embeddings_platform.core.config import load_config
    from embeddings_platform.defs.partitions import source_partitions
    from embeddings_platform.defs.snapshot import source_snapshot
    from embeddings_platform.testing import DOCS, write_config, write_corpus

    folder = tmp_path / "corpus"
    write_corpus(
        folder,
        {
            **DOCS,
            "lossy.md": "One stray caf\ufffd byte. " + "word " * 40,
            ".hidden.md": "hidden words",
        },
    )
    source = {"name": "notes", "kind": "folder", "path": str(folder)}
    path = write_config(tmp_path / "c.yaml", [source], documents={"include_hidden": True})
    assert load_config(path).documents.include_hidden
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(source_partitions.name, ["notes"])
    result = materialize(
        [source_snapshot],
        partition_key="notes",
        instance=instance,
        resources={"platform": PlatformResource(config_path=str(path))},
    )
    meta = result.asset_materializations_for_node("source_snapshot")[0].metadata
    assert meta["lossy_documents"].value == 1 and meta["quarantined"].value == 0
    assert meta["documents"].value == len(DOCS) + 2  # the hidden file is read: include_hidden


def test_the_resource_parses_the_registry_and_opens_the_store_once(config_path, monkeypatch):
    from embeddings_platform.defs import resources

    calls = []
    real = resources.load_config
    monkeypatch.setattr(
        resources, "load_config", lambda path=None: calls.append(path) or real(path)
    )
    platform = resources.PlatformResource(config_path=str(config_path))
    assert platform.load() is platform.load() and platform.store() is platform.store()
    assert calls == [str(config_path)]
