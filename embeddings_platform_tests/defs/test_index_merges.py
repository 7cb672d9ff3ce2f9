"""Delta indexes are merged by a run of their own, requested by index_merge_sensor, not by the
refreshes that leave them."""

from dagster import DagsterInstance, build_sensor_context

from embeddings_platform.core.config import load_config
from embeddings_platform.core.indexing import deltas, fts_index
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store
from embeddings_platform.definitions import defs
from embeddings_platform.defs import index_merges
from embeddings_platform.defs.index_merges import index_merge_job, index_merge_sensor
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.testing import write_config


def _tick(instance, cursor):
    result = index_merge_sensor(build_sensor_context(instance=instance, cursor=cursor))
    return result.run_requests or [], result.cursor


def test_a_merge_run_is_requested_past_the_bound_once_and_pins_the_merged_version(
    tmp_path, corpus, monkeypatch
):
    monkeypatch.setattr(index_merges, "MAX_DELTAS", 2)
    path = write_config(
        tmp_path / "platform.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}]
    )
    config = load_config(path)
    resources = {"platform": PlatformResource(config_path=str(path))}
    instance = DagsterInstance.ephemeral()
    materialize_graph(instance, config, resources=resources)
    store = Store(config.storage_uri)
    key = str(grid_key("notes", model_version(config.models[0]).version_id))
    requests, cursor = _tick(instance, None)
    assert requests == []  # a fresh build leaves no deltas
    for i in range(3):
        (corpus / f"owls{i}.md").write_text(f"A poem about {i + 2} owls in the barn.")
        materialize_graph(instance, config, resources=resources)
        requests, cursor = _tick(instance, cursor)
        if i < 2:
            assert requests == [], f"requested at {i + 1} deltas"
    # three refreshes, three deltas: past the bound of 2, one run of this partition
    assert [r.partition_key for r in requests] == [key]
    table = store.table(store.pointer("notes")["table_name"])
    assert deltas(table, fts_index(table)) == 3
    assert _tick(instance, None)[0][0].run_key == requests[0].run_key  # same key: run once
    version = model_version(config.models[0]).version_id
    instance.delete_dynamic_partition("model", version)  # a retired model gets no run
    assert _tick(instance, None)[0] == []
    instance.add_dynamic_partitions("model", [version])

    result = defs.resolve_job_def(index_merge_job.name).execute_in_process(
        instance=instance, partition_key=requests[0].partition_key, resources=resources
    )
    assert result.success
    metadata = result.asset_materializations_for_node("serving_index")[0].metadata
    assert metadata["index_action"].value == "merged" and metadata["index_deltas"].value == 1
    pointer = store.pointer("notes")
    assert pointer["table_version"] == int(metadata["table_version"].value)
    assert deltas(store.table(pointer["table_name"]), fts_index(table)) == 1
    assert _tick(instance, cursor)[0] == []  # the merged version has one delta: quiet again
