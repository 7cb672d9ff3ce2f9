"""Refresh without anyone pressing a button: the change sensor, automation, freshness re-checks."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
)

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import model_version
from embeddings_platform.core.refresh import RefreshCursor, changed, recheck_due
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.definitions import defs
from embeddings_platform.defs import sensors
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import (
    materialize_graph,
    run_automation_until_quiet,
    run_sensor_requests,
)
from embeddings_platform.defs.sensors import last_materialized, source_change_sensor
from embeddings_platform.testing import DOCS, write_config, write_corpus


def _query(embedder, text):
    return lambda _version_id: embedder.embed([text])[0]


def _requested(ticks: list[dict]) -> dict[str, list[str]]:
    """Every partition requested over several automation ticks, per asset."""
    merged: dict[str, set[str]] = {}
    for tick in ticks:
        for asset, keys in tick.items():
            merged.setdefault(asset, set()).update(keys)
    return {asset: sorted(keys) for asset, keys in merged.items()}


# --- pure decisions ---------------------------------------------------------------------


def test_change_is_judged_against_the_store_and_what_was_already_requested():
    cursor = RefreshCursor()
    assert not changed("a", "fp1", cursor, recorded_snapshot="fp1")  # current: nothing to do
    assert changed("a", "fp2", cursor, recorded_snapshot="fp1")  # content differs from the store
    assert changed("a", "fp1", cursor, recorded_snapshot=None)  # never snapshotted
    cursor.fingerprints["a"] = "fp2"
    assert not changed(
        "a", "fp2", cursor, recorded_snapshot="fp1"
    )  # already requested, run pending
    restored = RefreshCursor.parse(cursor.serialize())
    assert restored.fingerprints == {"a": "fp2"}
    assert RefreshCursor.parse("not json").fingerprints == {}


def test_recheck_is_due_only_past_the_window():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    window = timedelta(hours=12)
    assert not recheck_due(None, now, window)  # never built: a first build, not a re-check
    assert not recheck_due(now - timedelta(hours=11), now, window)
    assert recheck_due(now - timedelta(hours=12), now, window)


# --- Dagster: sensor and automation -------------------------------------------------------


@pytest.fixture
def built(env_config, config):
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(env_config))}
    assert all(r.success for r in materialize_graph(instance, config, resources=resources))
    return instance, resources


def _tick(instance, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
    )
    result = source_change_sensor(context)
    return result, context.cursor


def _requests(result):
    return result.run_requests if isinstance(result, SensorResult) else []


def test_sensor_requests_nothing_when_nothing_changed_even_if_files_were_touched(built, corpus):
    instance, _ = built
    result, cursor = _tick(instance)
    assert isinstance(result, SkipReason)
    (corpus / "cats.md").write_text((corpus / "cats.md").read_text())  # new mtime, same bytes
    os.utime(corpus / "dogs.txt")
    result, _ = _tick(instance, cursor)
    assert isinstance(result, SkipReason)


def test_one_changed_file_requests_one_snapshot_run_for_its_source_and_cursor_survives(
    built, corpus
):
    instance, _ = built
    (corpus / "cats.md").write_text("Cats sleep sixteen hours a day.")
    result, cursor = _tick(instance)
    requests = _requests(result)
    assert [(r.job_name, r.partition_key) for r in requests] == [("snapshot_job", "notes")]
    assert requests[0].tags["embeddings_platform/trigger"] == "content-change"
    # a restarted daemon resumes from the stored cursor: the pending change is not requested twice
    again, _ = _tick(instance, cursor)
    assert isinstance(again, SkipReason)


def test_a_newly_registered_source_becomes_a_partition_and_is_filled(
    built, tmp_path, env_config, corpus, embedder
):
    instance, resources = built
    _, automation_cursor = run_automation_until_quiet(
        instance, resources
    )  # the daemon was already ticking
    extra = tmp_path / "extra"
    write_corpus(extra, {"owls.md": "Owls hunt at night and turn their heads far around."})
    write_config(
        env_config,
        [
            {"name": "notes", "kind": "folder", "path": str(corpus)},
            {"name": "birds", "kind": "folder", "path": str(extra)},
        ],
    )
    result, _ = _tick(instance)
    assert [r.partitions_def_name for r in result.dynamic_partitions_requests] == ["source"]
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["birds"]
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [
        ("snapshot_job", "birds")
    ]
    run_sensor_requests(instance, result, resources)  # snapshot and chunks of birds, in one run
    ticks, _ = run_automation_until_quiet(instance, resources, automation_cursor)
    config = load_config(env_config)
    version_id = model_version(config.models[0]).version_id
    bird_cell = str(grid_key("birds", version_id))
    assert ticks == [
        {"embeddings": [bird_cell], "serving_index": [bird_cell]},
        {},
    ]  # the first build: one run
    hits = search(
        Store(config.storage_uri), "birds", "owls at night", 1, _query(embedder, "owls at night")
    )
    assert hits[0].doc_id == "owls.md"


class _FrozenClock(datetime):
    """The sensor's clock, stopped at `at`: which partition is due no longer depends on timing."""

    at: datetime

    @classmethod
    def now(cls, tz=None):
        return cls.at


def test_freshness_recheck_requests_only_the_partitions_past_their_window(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    write_corpus(a, {"one.md": "alpha beta gamma"})
    write_corpus(b, {"two.md": "delta epsilon zeta"})
    sources = [{"name": n, "kind": "folder", "path": str(f)} for n, f in (("a", a), ("b", b))]
    path = write_config(tmp_path / "platform.yaml", sources)
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    config = load_config(path)
    instance = DagsterInstance.ephemeral()
    assert all(
        r.success
        for r in materialize_graph(  # a's runs, then b's
            instance, config, resources={"platform": PlatformResource(config_path=str(path))}
        )
    )
    cell = {s: str(grid_key(s, model_version(config.models[0]).version_id)) for s in ("a", "b")}
    partition = {"source_snapshot": lambda s: s, "serving_index": lambda s: cell[s]}
    ran = {
        (s, asset): last_materialized(instance, asset, key(s))
        for s in ("a", "b")
        for asset, key in partition.items()
    }
    assert sorted(ran, key=ran.get) == [
        ("a", "source_snapshot"),
        ("a", "serving_index"),
        ("b", "source_snapshot"),
        ("b", "serving_index"),
    ]
    _FrozenClock.at = ran["b", "serving_index"] + timedelta(hours=1)
    monkeypatch.setattr(sensors, "datetime", _FrozenClock)

    def due(newest_stale: datetime, oldest_fresh: datetime) -> list[tuple[str, str]]:
        """Requests of a tick whose window ends halfway between two recorded runs."""
        window = _FrozenClock.at - (newest_stale + (oldest_fresh - newest_stale) / 2)
        hours = window / timedelta(hours=1)
        write_config(path, sources, refresh={"freshness": {"warn_hours": hours, "fail_hours": 48}})
        requests = _requests(_tick(instance)[0])
        assert {r.tags["embeddings_platform/trigger"] for r in requests} == {"freshness-recheck"}
        return sorted((r.job_name, r.partition_key) for r in requests)

    # a's runs are past the window, b's are not
    assert due(ran["a", "serving_index"], ran["b", "source_snapshot"]) == [
        ("recheck_grid_job", cell["a"]),
        ("recheck_source_job", "a"),
    ]
    # b's snapshot is past it too, b's index (built later) is not
    assert due(ran["b", "source_snapshot"], ran["b", "serving_index"]) == [
        ("recheck_grid_job", cell["a"]),
        ("recheck_source_job", "a"),
        ("recheck_source_job", "b"),
    ]


def test_an_idle_tick_asks_neither_the_event_log_nor_the_store_until_a_recheck_is_due(
    built, corpus, monkeypatch
):
    instance, _ = built
    asked, stored = [], []
    real = sensors.last_materialized
    monkeypatch.setattr(sensors, "last_materialized", lambda *a: asked.append(a[1:]) or real(*a))
    latest = Store.latest_snapshot_id
    monkeypatch.setattr(
        Store, "latest_snapshot_id", lambda self, key: stored.append(key) or latest(self, key)
    )
    first, cursor = _tick(instance)
    assert isinstance(first, SkipReason) and asked and stored == ["notes"]  # learnt both
    asked.clear(), stored.clear()
    idle, cursor = _tick(instance, cursor)
    assert isinstance(idle, SkipReason) and asked == [] and stored == []
    (corpus / "cats.md").write_text("Cats sleep sixteen hours a day.")  # a change is still seen
    changed, _ = _tick(instance, cursor)
    assert [r.partition_key for r in _requests(changed)] == ["notes"] and stored == ["notes"]
    # past the window, the remembered times make it ask again, and the re-checks come
    remembered = json.loads(cursor)["materialized"].values()
    config = load_config(os.environ["EMBEDDINGS_PLATFORM_CONFIG"])
    window = timedelta(hours=config.refresh.freshness_warn_hours)
    _FrozenClock.at = datetime.fromtimestamp(max(remembered), timezone.utc) + window
    monkeypatch.setattr(sensors, "datetime", _FrozenClock)
    (corpus / "cats.md").write_text(DOCS["cats.md"])  # back as it was: unchanged again
    due, _ = _tick(instance, cursor)
    assert {r.job_name for r in _requests(due)} == {"recheck_source_job", "recheck_grid_job"}
    assert ("source_snapshot", "notes") in asked


def _data_version(instance, asset: str, partition: str) -> str:
    latest = AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition])
    records = instance.fetch_materializations(latest, limit=1).records
    return records[0].asset_materialization.tags["dagster/data_version"]


def test_a_freshness_recheck_that_finds_nothing_changed_triggers_nothing_downstream(built):
    instance, resources = built
    _, cursor = run_automation_until_quiet(instance, resources)  # settled: everything is current
    before = {a: _data_version(instance, a, "notes") for a in ("source_snapshot", "chunks")}
    recheck = RunRequest(job_name="recheck_source_job", partition_key="notes")
    [run] = run_sensor_requests(instance, SensorResult(run_requests=[recheck]), resources)
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert materialized == set(before)
    # no asset (embeddings, serving_index) and no check is requested below the re-check
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.total_requested == 0
    assert {asset: _data_version(instance, asset, "notes") for asset in before} == before


def test_automation_carries_a_change_down_only_its_own_partitions(tmp_path, monkeypatch, embedder):
    a, b = tmp_path / "a", tmp_path / "b"
    write_corpus(a, {"one.md": "alpha beta gamma", "two.md": "delta epsilon"})
    write_corpus(b, {"three.md": "zeta eta theta"})
    path = write_config(
        tmp_path / "platform.yaml",
        [
            {"name": "a", "kind": "folder", "path": str(a)},
            {"name": "b", "kind": "folder", "path": str(b)},
        ],
    )
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    config = load_config(path)
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    materialize_graph(instance, config, resources=resources)
    _, cursor = run_automation_until_quiet(instance, resources)  # settle: everything is current

    # an unchanged rematerialization of b's snapshot requests nothing downstream
    result, sensor_cursor = _tick(instance)
    assert isinstance(result, SkipReason)
    from dagster import materialize

    materialize(
        defs.assets,
        selection=["source_snapshot"],
        partition_key="b",
        instance=instance,
        resources=resources,
    )
    ticks, cursor = run_automation_until_quiet(instance, resources, cursor)
    assert ticks == [{}]

    # a change in a requests a's chunks, then a's embeddings and index, never b's
    (a / "two.md").write_text("delta epsilon and a brand new sentence")
    result, _ = _tick(instance, sensor_cursor)
    run_sensor_requests(instance, result, resources)
    ticks, _ = run_automation_until_quiet(instance, resources, cursor)
    cell = str(grid_key("a", model_version(config.models[0]).version_id))
    assert ticks == [
        {"embeddings": [cell], "serving_index": [cell]},
        {},
    ]  # chunks ran in the sensor's run


def test_edit_delete_add_reach_search_embedding_only_what_changed(built, corpus, config, embedder):
    instance, resources = built
    _, automation_cursor = run_automation_until_quiet(instance, resources)
    version = model_version(config.models[0])
    table = Store(config.storage_uri).table(vectors_table_name("notes", version.version_id))
    before = {r["chunk_id"] for r in table.to_arrow().select(["chunk_id"]).to_pylist()}
    texts_before = embedder.texts_embedded

    (corpus / "cats.md").write_text(
        "Cats are small domesticated carnivorous mammals. Cats adore cardboard boxes."
    )
    (corpus / "dogs.txt").unlink()
    (corpus / "ferns.md").write_text("Ferns reproduce with spores instead of seeds.")
    result, _ = _tick(instance)
    run_sensor_requests(instance, result, resources)
    run_automation_until_quiet(instance, resources, automation_cursor)

    table.checkout_latest()
    after = table.to_arrow().select(["chunk_id", "doc_id", "text"]).to_pylist()
    new_chunks = [r for r in after if r["chunk_id"] not in before]
    assert {r["doc_id"] for r in new_chunks} == {"cats.md", "ferns.md"}
    assert embedder.texts_embedded - texts_before == len(new_chunks)  # only the changed chunks
    assert "dogs.txt" not in {r["doc_id"] for r in after}

    store = Store(config.storage_uri)

    def top(text, k):
        return search(store, "notes", text, k, _query(embedder, text))

    assert top("spores instead of seeds", 1)[0].doc_id == "ferns.md"
    assert any("cardboard" in hit.text for hit in top("cardboard boxes", 3))
    assert "dogs.txt" not in {hit.doc_id for hit in top("dog barks fetches sticks", 10)}


def test_a_newly_registered_model_fills_a_shadow_index_without_moving_the_pointer(
    built, env_config, corpus, config
):
    instance, resources = built
    _, automation_cursor = run_automation_until_quiet(instance, resources)
    first = model_version(config.models[0]).version_id
    models = [
        {
            "name": "hash",
            "kind": "hashing",
            "dimension": 256,
            "max_seq_length": 16,
            "chunking": {"max_tokens": 12, "overlap": 3},
        },
        {
            "name": "hash-wide",
            "kind": "hashing",
            "dimension": 128,
            "max_seq_length": 24,
            "chunking": {"max_tokens": 20, "overlap": 4},
        },
    ]
    write_config(
        env_config, [{"name": "notes", "kind": "folder", "path": str(corpus)}], models=models
    )
    second = model_version(load_config(env_config).models[1]).version_id
    result, _ = _tick(instance)
    assert [
        (r.partitions_def_name, list(r.partition_keys)) for r in result.dynamic_partitions_requests
    ] == [("model", [second])]
    run_sensor_requests(instance, result, resources)
    ticks, _ = run_automation_until_quiet(instance, resources, automation_cursor)
    cell = str(grid_key("notes", second))
    assert _requested(ticks) == {"embeddings": [cell], "serving_index": [cell]}
    store = Store(config.storage_uri)
    assert (
        store.table(vectors_table_name("notes", second)).count_rows() > 0
    )  # its own chunks, its own table
    assert (
        store.pointer("notes")["model_version"] == first
    )  # a shadow: only a migration swaps it in


def test_new_metadata_field_is_backfilled_without_reembedding(tmp_path, monkeypatch, embedder):
    docs = tmp_path / "docs.jsonl"
    rows = [
        {"id": "d1", "text": "solar panels convert light"},
        {"id": "d2", "text": "wind turbines spin"},
    ]
    docs.write_text("\n".join(json.dumps(r) for r in rows))
    path = write_config(
        tmp_path / "platform.yaml", [{"name": "energy", "kind": "jsonl", "path": str(docs)}]
    )
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    config = load_config(path)
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(path))}
    materialize_graph(instance, config, resources=resources)
    _, cursor = run_automation_until_quiet(instance, resources)
    calls = embedder.calls

    docs.write_text("\n".join(json.dumps({**r, "team": "renewables"}) for r in rows))
    result, _ = _tick(instance)
    run_sensor_requests(instance, result, resources)
    run_automation_until_quiet(instance, resources, cursor)

    assert embedder.calls == calls
    table = Store(config.storage_uri).table(
        vectors_table_name("energy", model_version(config.models[0]).version_id)
    )
    metadata = [json.loads(m) for m in table.to_arrow().column("metadata_json").to_pylist()]
    assert metadata and all(m["team"] == "renewables" for m in metadata)
