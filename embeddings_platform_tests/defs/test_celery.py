"""Distributed: the same definitions on Dagster's Celery executor, Redis broker, two workers.

Starts Debian's redis-server and two `dagster-celery` workers on 127.0.0.1, runs the sharded
embed of a source (one `embed_job` run per shard partition, launched at once), and checks that
both workers executed steps and that the table holds exactly the vectors of a single-process run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import HashingEmbedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.testing import many_docs, write_config

pytestmark = pytest.mark.distributed

SHARDS = 4
BIN = Path(sys.executable).parent

LAUNCH = """
import sys
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository
from embeddings_platform.defs.common import partition_tags

job = ReconstructableRepository.for_module(
    "embeddings_platform.definitions", "defs"
).get_reconstructable_job("embed_job")
with execute_job(job, instance=DagsterInstance.get(), tags=partition_tags(sys.argv[1])) as result:
    print(sys.argv[1], result.success, result.run_id, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: install Debian's redis-server (make test does)"
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for_port(port)
    yield f"redis://127.0.0.1:{port}"
    _stop(proc)


def test_sharded_embed_on_two_celery_workers_matches_a_single_process_run(tmp_path, redis_url):
    folder = tmp_path / "corpus"
    many_docs(folder, 120)
    model = {
        "name": "hash",
        "kind": "hashing",
        "dimension": 256,
        "max_seq_length": 16,
        "chunking": {"max_tokens": 12, "overlap": 3},
    }
    (tmp_path / "celery").mkdir()
    sharded = write_config(
        tmp_path / "celery" / "c.yaml",
        [{"name": "bulk", "kind": "folder", "path": str(folder), "shards": SHARDS}],
        [model],
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    worker_config = tmp_path / "celery.yaml"
    worker_config.write_text(
        yaml.safe_dump(
            {"execution": {"config": {"broker": f"{redis_url}/0", "backend": f"{redis_url}/1"}}}
        )
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # dagster-celery runs `celery`
        "DAGSTER_HOME": str(home),
        "EMBEDDINGS_PLATFORM_CONFIG": str(sharded),
        "EMBEDDINGS_PLATFORM_CELERY_BROKER": f"{redis_url}/0",
        "EMBEDDINGS_PLATFORM_CELERY_BACKEND": f"{redis_url}/1",
    }

    # the snapshot and chunks of every shard first (in this process), then the embed on Celery
    config = load_config(sharded)
    store = Store(config.storage_uri)
    from embeddings_platform.core.models import load_tokenizer
    from embeddings_platform.core.pipeline import sync_chunks, take_snapshot

    version = model_version(config.models[0])
    for key in config.sources[0].partition_keys:
        snap = take_snapshot(store, config.source(key), "prep")
        sync_chunks(
            store,
            key,
            snap.snapshot_id,
            config.models[0],
            version.chunking_strategy,
            load_tokenizer(config.models[0]),
        )

    # create the instance's storage once, before several processes open it
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from embeddings_platform.defs.partitions import sync_partitions

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    sync_partitions(instance, config)
    workers = [
        subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(worker_config),
                "-n",
                name,
                "--",
                "--concurrency=1",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{name}.log").open("w"),  # a pipe nobody reads would block it
            start_new_session=True,
        )
        for name in ("worker-a", "worker-b")
    ]
    time.sleep(2)
    assert all(w.poll() is None for w in workers), [
        (tmp_path / f"{n}.log").read_text()[-2000:] for n in ("worker-a", "worker-b")
    ]
    keys = [str(grid_key(key, version.version_id)) for key in config.sources[0].partition_keys]
    try:  # one run per shard, all launched at once, as a backfill would
        launchers = [
            subprocess.Popen(
                [sys.executable, "-c", LAUNCH, key],
                env=env,
                cwd=tmp_path,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for key in keys
        ]
        outputs = [launcher.communicate(timeout=300) for launcher in launchers]
    finally:
        for worker in workers:
            _stop(worker)
    assert all(launcher.returncode == 0 for launcher in launchers), [
        err[-2000:] for _, err in outputs
    ]
    runs = [out.split() for out, _ in outputs]
    assert len(runs) == SHARDS and all(ok == "True" for _, ok, _ in runs), outputs

    # which worker ran which step: the Celery engine events of each run
    hosts = set()
    for _, _, run_id in runs:
        for record in instance.all_logs(run_id):
            entry = record.dagster_event
            metadata = entry.engine_event_data.metadata if entry and entry.is_engine_event else {}
            if "Celery worker" in metadata:
                hosts.add(str(metadata["Celery worker"].value).split("@")[0])
    assert hosts == {"worker-a", "worker-b"}

    # exactly the vectors one process makes
    rows = (
        store.table(vectors_table_name("bulk", version.version_id))
        .to_arrow()
        .select(["chunk_id", "vector"])
        .to_pylist()
    )
    (tmp_path / "single").mkdir()
    single = load_config(
        write_config(
            tmp_path / "single" / "c.yaml",
            [{"name": "bulk", "kind": "folder", "path": str(folder)}],
            [model],
        )
    )
    refresh(
        Store(single.storage_uri),
        single.sources[0],
        single.models[0],
        single.serving,
        lambda: HashingEmbedder(256),
        "single",
    )
    expected = {
        r["chunk_id"]: r["vector"]
        for r in Store(single.storage_uri)
        .table(vectors_table_name("bulk", version.version_id))
        .to_arrow()
        .select(["chunk_id", "vector"])
        .to_pylist()
    }
    ids = [r["chunk_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)
    assert all(r["vector"] == expected[r["chunk_id"]] for r in rows)
    assert store.pointer("bulk") is not None  # the shards' serving index serves the source
