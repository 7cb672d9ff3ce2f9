"""The CLI: one broken source or table affects only itself, and every failure is one clear line.

Each test drives `cli.main([...])` as an operator would and checks the exit code and the words
printed; none of them prints a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
import yaml

from embeddings_platform import cli
from embeddings_platform.core.config import load_config
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.store import Store, vectors_table_name
from embeddings_platform.defs import resources
from embeddings_platform.testing import DOCS, write_config, write_corpus

ROOT = Path(__file__).resolve().parents[2]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # anything a terminal acts on, but "\n"


def run(capsys, config_path: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config_path), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def build(config_path: Path) -> None:
    """The core chain without Dagster (about 0.3 s instead of 5 s per source)."""
    config = load_config(config_path)
    store, model = Store(config.storage_uri), config.models[0]
    for source in config.sources:
        refresh(
            store,
            source,
            model,
            config.serving,
            lambda: resources.cached_embedder(model),
            run_id=f"test-{source.name}",
        )


@pytest.fixture
def built(config_path):
    build(config_path)
    return config_path


@pytest.mark.parametrize("k", ["0", "-1", "1001", "1000000000"])
def test_search_rejects_k_out_of_range(built, capsys, k):
    code, out, err = run(capsys, built, "search", "cats", "--source", "notes", "-k", k)
    assert code == 2 and not out
    assert err == f"error: search -k: {k} is out of range; ask for 1 to 1000 hits\n"


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_search_rejects_an_empty_query(built, capsys, query):
    code, out, err = run(capsys, built, "search", query, "--source", "notes")
    assert code == 2 and not out
    assert err == "error: search: the query is empty; give the words to search for\n"


@pytest.mark.parametrize(
    "source, reason",
    [
        ("nosuch", "no source named 'nosuch' is registered"),
        ("notes.shard-5-of-2", "shard index 5 out of range in partition key 'notes.shard-5-of-2'"),
        ("notes.shard-0-of-2", "no source named 'notes.shard-0-of-2' is registered"),  # not sharded
    ],
)
def test_search_on_an_unregistered_source_says_so_and_lists_the_registered(
    built, capsys, source, reason
):
    code, out, err = run(capsys, built, "search", "cats", "--source", source)
    assert code == 2 and not out
    assert err == f"error: sources: {reason}; registered sources: notes\n"


def test_search_works(built, capsys):
    code, out, _ = run(capsys, built, "search", "cats purr", "--source", "notes", "-k", "1000")
    assert code == 0 and "cats.md" in out


@pytest.mark.parametrize(
    "option, name, registered",
    [("--source", "nosuch", "sources: notes"), ("--model", "nosuch", "models: hash")],
)
def test_materialize_with_an_unknown_name_builds_nothing_and_fails(
    config_path, capsys, option, name, registered
):
    code, out, err = run(capsys, config_path, "materialize", option, name, "--no-sample")
    assert code == 2 and not out
    what = option.removeprefix("--")
    assert err == (
        f"error: materialize {option}: no {what} named 'nosuch' is registered; "
        f"registered {registered}\n"
    )


def test_no_sources_registered_is_said_plainly(tmp_path, capsys):
    path = write_config(tmp_path / "empty.yaml", [])
    code, out, err = run(capsys, path, "materialize")
    assert code == 2 and not out
    assert err == f"error: no sources registered in {path}; add one under sources:\n"
    code, out, err = run(capsys, path, "status")
    assert code == 0 and not err
    assert out.splitlines()[1].split()[0] == "source" and "health" in out.splitlines()[1]
    assert out.splitlines()[2] == f"(no sources registered in {path}; add one under sources:)"
    code, out, _ = run(capsys, path, "status", "--json")
    assert code == 0 and json.loads(out) == []


def test_a_broken_source_affects_only_itself(tmp_path, corpus, capsys, monkeypatch):
    """A missing path (noticed before any run) and a source failing inside its Dagster run."""
    from embeddings_platform.core.stages import snapshot

    write_corpus(tmp_path / "flaky", {"a.md": "Flaky source text about kites."})
    sources = [
        {"name": "notes", "kind": "folder", "path": str(corpus)},
        {"name": "gone", "kind": "folder", "path": str(tmp_path / "nowhere")},
        {"name": "flaky", "kind": "folder", "path": str(tmp_path / "flaky")},
    ]
    path = write_config(tmp_path / "platform.yaml", sources)
    plan = snapshot.plan_snapshot

    def failing_read(store, source, *args):
        if source.name == "flaky":
            raise PermissionError("flaky: permission denied\nsecond line")
        return plan(store, source, *args)

    monkeypatch.setattr(snapshot, "plan_snapshot", failing_read)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    code, out, err = run(capsys, path, "materialize", "--sample-query", "cat purrs")
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert failed == [
        f"failed: source gone: sources[gone].path: {tmp_path / 'nowhere'} does not exist; "
        "fix the path or create it",
        "failed: source flaky: flaky: permission denied",
    ]
    assert "Sample search on 'notes'" in out and "cats.md" in out

    code, out, err = run(capsys, path, "status")
    assert code == 0 and not err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["notes"].endswith("  ok") and "yes (v" in rows["notes"]
    assert rows["gone"].split()[-2:] == ["no", "-"]
    assert rows["source"] == (
        f"source gone cannot be read: sources[gone].path: "
        f"{tmp_path / 'nowhere'} does not exist; fix the path or create it"
    )
    code, out, _ = run(capsys, path, "status", "--json")
    by_source = {r["source"]: r for r in json.loads(out)}
    assert by_source["gone"]["source_error"].startswith("sources[gone].path: ")
    assert by_source["notes"]["source_error"] is None and by_source["notes"]["health"] == "ok"
    code, out, _ = run(capsys, path, "search", "cat purrs", "--source", "notes")
    assert code == 0 and "cats.md" in out
    code, out, err = run(capsys, path, "rollback", "--source", "notes")  # nothing to roll back to
    assert code == 1 and err.startswith("error: ") and "gone" not in err


def _escape_corpus(folder: Path) -> None:
    write_corpus(
        folder,
        {
            "cats.md": DOCS["cats.md"],
            "evil\x1b[2J.md": "Kites \x1b[31mred\x1b[0m title \x1b]0;pwned\x07 bell \x07 c1 \x9b2J "
            "del \x7f kites fly high above the hills",
        },
    )


def test_terminal_escapes_from_documents_never_reach_the_terminal(tmp_path, capsys):
    _escape_corpus(tmp_path / "corpus")
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(tmp_path / "corpus")}],
    )
    build(path)
    code, out, _ = run(capsys, path, "search", "kites", "--source", "notes", "--mode", "fts")
    assert code == 0 and "evil.md" in out and "Kites red title" in out
    assert not CONTROL.search(out), repr(out)
    code, out, _ = run(
        capsys, path, "search", "kites", "--source", "notes", "--mode", "fts", "--json"
    )
    assert code == 0 and not CONTROL.search(out), repr(out)  # escaped as \u001b, \u009b ...
    hits = json.loads(out)  # ... and still the document's exact text
    assert hits[0]["doc_id"] == "evil\x1b[2J.md" and "\x1b[31mred\x1b[0m" in hits[0]["text"]
    code, out, _ = run(capsys, path, "lineage", "evil\x1b[2J.md")
    assert code == 0 and not CONTROL.search(out)
    assert json.loads(out)["vectors"][0]["doc_id"] == "evil\x1b[2J.md"


def test_error_messages_do_not_echo_terminal_escapes(tmp_path, capsys):
    path = write_config(
        tmp_path / "platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(tmp_path / "x\x1b[2Jy")}],
    )
    code, out, err = run(capsys, path, "status")
    assert code == 0 and not CONTROL.search(out + err)
    assert f"source notes cannot be read: sources[notes].path: {tmp_path}/x" in out
    assert "y does not exist" in out


def _damage(config_path: Path) -> str:
    """Truncate every data file of the served vectors table; its manifest still counts rows."""
    config = load_config(config_path)
    name = Store(config.storage_uri).pointer("notes")["table_name"]
    files = list((Path(config.storage_uri) / f"{name}.lance" / "data").glob("*.lance"))
    assert files
    for data in files:
        with data.open("r+b") as handle:
            handle.truncate(100)
    return name


def test_a_damaged_table_is_reported_by_status_and_one_line_by_search(built, capsys):
    code, out, _ = run(capsys, built, "status", "--json")
    assert code == 0 and json.loads(out)[0]["health"] == "ok"
    name = _damage(built)
    code, out, err = run(capsys, built, "status", "--json")
    row = json.loads(out)[0]
    assert code == 0 and row["serving"] and row["vectors"] > 0  # counts still look fine ...
    assert row["health"].startswith(f"table {name}@v{row['served_table_version']} cannot be read: ")
    code, out, err = run(capsys, built, "status")
    assert code == 0 and "cannot be read" in out.splitlines()[2]
    for mode in ("vector", "fts"):
        code, out, err = run(capsys, built, "search", "cats", "--source", "notes", "--mode", mode)
        assert code == 1 and not out and len(err.splitlines()) == 1
        assert err.startswith(f"error: table {name}@v")
        assert err.rstrip().endswith(
            f"{name}.lance aside and run `embeddings-platform materialize --source notes`"
        )
    code, out, err = run(capsys, built, "lineage", "cats.md")
    assert code == 1 and not out and len(err.splitlines()) == 1
    assert err.startswith(f"error: table {name} cannot be read: ") and "materialize" in err
    # the advice works: moved aside and rebuilt, the table serves again with no other step
    storage = Path(load_config(built).storage_uri)
    (storage / f"{name}.lance").rename(storage.parent / "damaged.lance")
    build(built)
    code, out, err = run(capsys, built, "search", "cat purrs", "--source", "notes", "-k", "1")
    assert code == 0 and "cats.md" in out


def test_lineage_lists_each_vector_once_when_one_source_name_prefixes_another(
    tmp_path, corpus, capsys
):
    """`vectors__a__...` also prefixes the tables of source `a__b`; both are legal names."""
    sources = [
        {"name": "a", "kind": "folder", "path": str(corpus)},
        {"name": "a__b", "kind": "folder", "path": str(corpus)},
    ]
    path = write_config(tmp_path / "platform.yaml", sources)
    build(path)
    code, out, _ = run(capsys, path, "lineage", "cats.md")
    assert code == 0
    rows = json.loads(out)["vectors"]
    keys = [(r["table"], r["chunk_id"]) for r in rows]
    assert len(keys) == len(set(keys))
    per_source = {s: [r for r in rows if r["source"] == s] for s in ("a", "a__b")}
    assert len(per_source["a"]) == len(per_source["a__b"]) > 0
    version = per_source["a"][0]["model_version"]
    assert {r["table"] for r in per_source["a"]} == {vectors_table_name("a", version)}
    assert {r["table"] for r in per_source["a__b"]} == {vectors_table_name("a__b", version)}


def test_the_local_instance_fails_a_run_whose_process_was_killed():
    """deploy/dagster.local.yaml turns run monitoring on: a STARTED run does not stay so forever.

    Dagster's local run launcher cannot see whether a run's process lives, so the bound is
    max_runtime_seconds; the daemon's check is called here with the clock moved past it.
    """
    from dagster import DagsterEvent, DagsterEventType, DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test, instance_for_test
    from dagster._daemon.monitoring import run_monitoring

    settings = yaml.safe_load((ROOT / "deploy" / "dagster.local.yaml").read_text())
    with instance_for_test(overrides=settings) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        limit = instance.run_monitoring_max_runtime_seconds
        assert 0 < limit <= 24 * 3600
        run = create_run_for_test(instance, job_name="embed_job", status=DagsterRunStatus.STARTING)
        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.RUN_START.value, job_name="embed_job"), run_id=run.run_id
        )
        record = instance.get_run_record_by_id(run.run_id)
        assert record.dagster_run.status == DagsterRunStatus.STARTED
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(run_monitoring, "get_current_timestamp", lambda: time.time() + limit + 60)
            run_monitoring.monitor_started_run(instance, None, record, logging.getLogger("test"))
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


def test_the_cli_reads_the_registry_of_the_folder_it_runs_in_and_says_which(
    tmp_path, corpus, capsys, monkeypatch
):
    project = tmp_path / "project"
    (project / "deep" / "er").mkdir(parents=True)
    path = write_config(
        project / "embeddings_platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus)}],
    )
    monkeypatch.delenv("EMBEDDINGS_PLATFORM_CONFIG", raising=False)
    monkeypatch.chdir(project / "deep" / "er")  # found in a parent, as git finds its repository
    assert cli.main(["status"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"config {path}, storage {load_config(path).storage_uri}"
    monkeypatch.chdir(tmp_path)  # none here or above, and no variable: an error, not a guess
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: config: no embeddings_platform.yaml in {tmp_path} or its parents"
    )
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(path))
    assert cli.main(["status"]) == 0
