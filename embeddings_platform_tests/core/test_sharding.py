"""Shards: one large source as independent partitions that share the source's tables and pointer."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from dagster import DagsterInstance, build_sensor_context

from embeddings_platform.core.config import ConfigError, load_config
from embeddings_platform.core.documents import read_source
from embeddings_platform.core.models import HashingEmbedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import search
from embeddings_platform.core.sharding import Shard, parse_key, shard_keys, shard_of
from embeddings_platform.core.sources import folder
from embeddings_platform.core.store import Store, chunks_table_name, vectors_table_name
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import materialize_graph
from embeddings_platform.defs.sensors import source_change_sensor
from embeddings_platform.testing import write_config, write_corpus

DOCS = {
    f"doc{i:02d}.md": f"Document {i} talks about topic{i % 7} and item{i} with several words."
    for i in range(30)
}


def _vectors(config, source="big") -> dict[str, list[float]]:
    table = Store(config.storage_uri).table(
        vectors_table_name(source, model_version(config.models[0]).version_id)
    )
    rows = table.to_arrow().select(["chunk_id", "vector"]).to_pylist()
    assert len(rows) == len({r["chunk_id"] for r in rows}), "duplicate chunk ids"
    return {r["chunk_id"]: r["vector"] for r in rows}


def _chunks(config, source="big") -> dict[str, str]:
    strategy = model_version(config.models[0]).chunking_strategy
    rows = Store(config.storage_uri).table(chunks_table_name(source, strategy)).to_arrow()
    return dict(zip(rows.column("chunk_id").to_pylist(), rows.column("text").to_pylist()))


def _config(tmp_path, name: str, shards: int | None, **extra):
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        write_corpus(corpus, DOCS)
    source = {"name": "big", "kind": "folder", "path": str(corpus)}
    if shards:
        source["shards"] = shards
    (tmp_path / name).mkdir(exist_ok=True)
    path = write_config(tmp_path / name / "platform.yaml", [source], **extra)
    return load_config(path), path


def test_shard_keys_are_stable_and_cover_every_document():
    assert shard_keys("big", 1) == ["big"]
    keys = shard_keys("big", 3)
    assert keys == ["big.shard-0-of-3", "big.shard-1-of-3", "big.shard-2-of-3"]
    assert [parse_key(k) for k in keys] == [Shard("big", i, 3) for i in range(3)]
    assert parse_key("big") == Shard("big", 0, 1)
    with pytest.raises(ValueError, match="shard index 3 out of range"):
        parse_key("big.shard-3-of-3")  # shards count from 0
    assert shard_of("doc01.md", 3) == shard_of("doc01.md", 3)  # not Python's salted hash()
    owners = [sum(parse_key(k).holds(d) for k in keys) for d in DOCS]
    assert owners == [1] * len(DOCS)  # every document in exactly one shard
    assert len({shard_of(d, 3) for d in DOCS}) == 3


def test_config_registers_one_partition_per_shard(tmp_path):
    config, _ = _config(tmp_path, "a", 3)
    assert config.sources[0].partition_keys == shard_keys("big", 3)
    assert config.source("big.shard-2-of-3").path == config.sources[0].path
    with pytest.raises(ConfigError, match="no source named"):
        config.source("big.shard-1-of-4")  # not this source's shard count
    with pytest.raises(ConfigError, match=r"sources\[0\].shards"):
        write_config(
            tmp_path / "bad.yaml",
            [{"name": "x", "kind": "folder", "path": str(tmp_path), "shards": 0}],
        )
        load_config(tmp_path / "bad.yaml")


def test_sharded_materialization_equals_the_single_partition_one(tmp_path):
    plain, plain_path = _config(tmp_path, "plain", None)
    sharded, sharded_path = _config(tmp_path, "sharded", 3)
    for config, path in ((plain, plain_path), (sharded, sharded_path)):
        results = materialize_graph(
            DagsterInstance.ephemeral(),
            config,
            resources={"platform": PlatformResource(config_path=str(path))},
        )
        assert all(r.success for r in results)
    assert len(results) == 6  # snapshot+chunks and embeddings+index per shard
    expected, got = _vectors(plain), _vectors(sharded)
    assert got.keys() == expected.keys()
    assert all(np.allclose(got[k], expected[k]) for k in expected)
    assert _chunks(sharded) == _chunks(plain)  # no shard touched another shard's rows
    store = Store(sharded.storage_uri)
    pointer = store.pointer("big")
    assert (
        pointer is not None and store.pointer("big.shard-1-of-3") == pointer
    )  # one pointer per source
    embedder = HashingEmbedder(256)
    hits = search(store, "big", "topic3 item10", 3, lambda _v: embedder.embed(["topic3 item10"])[0])
    assert hits[0].doc_id == "doc10.md"


def test_a_change_requests_only_its_documents_shard(tmp_path, monkeypatch):
    config, path = _config(tmp_path, "sharded", 3)
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    instance = DagsterInstance.ephemeral()
    materialize_graph(
        instance, config, resources={"platform": PlatformResource(config_path=str(path))}
    )
    (config.sources[0].path / "doc05.md").write_text("Document five was rewritten entirely.")
    context = build_sensor_context(instance=instance, resources={"platform": PlatformResource()})
    result = source_change_sensor(context)
    assert [r.partition_key for r in result.run_requests] == [
        Shard("big", shard_of("doc05.md", 3), 3).key
    ]


def _refresh_shard(path: str, key: str) -> int:
    config = load_config(path)
    report = refresh(
        Store(config.storage_uri),
        config.source(key),
        config.models[0],
        config.serving,
        lambda: HashingEmbedder(256),
        run_id=f"proc-{key}",
    )
    return report.embeddings.embedded


def test_shards_written_by_concurrent_processes_lose_and_duplicate_nothing(tmp_path):
    plain, plain_path = _config(tmp_path, "plain", None)
    sharded, sharded_path = _config(tmp_path, "sharded", 4)
    _refresh_shard(str(plain_path), "big")
    keys = sharded.sources[0].partition_keys
    with multiprocessing.get_context("spawn").Pool(len(keys)) as pool:  # fork after lancedb hangs
        embedded = pool.starmap(_refresh_shard, [(str(sharded_path), k) for k in keys])
    expected, got = _vectors(plain), _vectors(sharded)
    assert sum(embedded) == len(expected)
    assert got.keys() == expected.keys()
    pointer = Store(sharded.storage_uri).pointer("big")
    served = Store(sharded.storage_uri).table(pointer["table_name"])
    served.checkout(pointer["table_version"])
    # every shard writes its rows before it indexes, and the pointer only moves forward: the
    # version the last shard indexed, which holds every shard's rows, is what serves
    assert sorted(served.to_arrow().column("chunk_id").to_pylist()) == sorted(expected)


def test_a_shard_reads_only_its_own_files_and_lists_only_them(tmp_path, monkeypatch):
    config, _ = _config(tmp_path, "sharded", 3)
    shard = config.source("big.shard-1-of-3")
    read: list[str] = []
    original = folder.read_bounded

    def counting(path, limit):
        read.append(path.name)
        return original(path, limit)

    monkeypatch.setattr(folder, "read_bounded", counting)
    docs, _ = read_source(shard)
    mine = sorted(d for d in DOCS if shard_of(d, 3) == 1)
    assert sorted(read) == sorted(d.doc_id for d in docs) == mine  # its bytes only
    before = shard.signature()
    other = next(d for d in DOCS if shard_of(d, 3) == 2)
    (shard.path / other).write_text("another shard's document changed")
    assert shard.signature() == before  # no re-read of this shard for another's change
    (shard.path / mine[0]).write_text("this shard's document changed")
    assert shard.signature() != before


def _index_actions(results) -> dict[str, str]:
    return {
        e.partition: e.materialization.metadata["index_action"].value
        for r in results
        for e in r.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "serving_index"
    }


def test_a_sharded_sources_indexes_are_maintained_once_per_refresh(tmp_path):
    config, path = _config(tmp_path, "sharded", 3, serving={"ann_min_rows": 20})
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    first = _index_actions(materialize_graph(instance, config, resources=resources))
    assert len(first) == 3 and sorted(first.values()) == ["built", "none", "none"], first
    assert list(first.values())[-1] == "built"  # the last shard to finish indexes
    changed = [next(d for d in DOCS if shard_of(d, 3) == i) for i in (0, 2)]
    for doc in changed:
        (config.sources[0].path / doc).write_text(f"{doc} now describes walrus migration.")
    second = _index_actions(materialize_graph(instance, config, resources=resources))
    assert sorted(second.values()) == ["incremental", "none", "none"], second
    store = Store(config.storage_uri)
    table = store.open_table(
        store.pointer("big")["table_name"], store.pointer("big")["table_version"]
    )
    assert all(table.index_stats(i.name).num_unindexed_rows == 0 for i in table.list_indices())
    embedder = HashingEmbedder(256)
    hits = search(store, "big", "walrus migration", 2, lambda _v: embedder.embed(["walrus"])[0])
    assert sorted(h.doc_id for h in hits) == sorted(changed)
