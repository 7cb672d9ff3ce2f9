"""core/store.py and core/conflicts.py: races between real processes, the pointer's rules."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pytest
from lance.commit import CommitConflictError

from embeddings_platform.core.conflicts import (
    counting_conflicts,
    is_commit_conflict,
    primary_key,
    retry_on_conflict,
)
from embeddings_platform.core.store import POINTERS, Store, utcnow

RACES = 100  # one race hits the window rarely (a few in 100 here): many fresh tables, one spawn


def _pointer_row(source: str) -> dict:
    return {
        "source": source,
        "model_version": "m",
        "table_name": f"vectors__{source}__m",
        "table_version": 1,
        "tag": "serve-v1",
        "swapped_at": utcnow(),
        "run_id": source,
        "reason": "initial",
    }


def _create_and_write(uris: list[str], barrier, out: str, source: str) -> None:
    """In a spawned process: for each database, meet the other process, then create and write."""
    outcomes = []
    for uri in uris:
        store = Store(uri)
        barrier.wait(timeout=60)
        try:
            table = store.table("serving_pointers", POINTERS, "source")
            row = pa.Table.from_pylist([_pointer_row(source)], schema=POINTERS)
            store.upsert(table, row, "source")
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
            outcomes.append(f"{uri}: {type(exc).__name__}: {exc}")
    Path(out).write_text(json.dumps(outcomes))  # a file, not a queue: no lock shared at exit


def _creations(table) -> list[int]:
    """The versions of a table that (re)created it: an Overwrite commit."""
    dataset = table.to_lance()
    return [
        v
        for v in range(1, dataset.version + 1)
        if type(dataset.read_transaction(v).operation).__name__ == "Overwrite"
    ]


def test_two_processes_creating_the_same_table_at_once_both_succeed(tmp_path: Path):
    uris = [str(tmp_path / f"db{i}") for i in range(RACES)]
    context = get_context("spawn")  # fork after lancedb was imported hangs
    barrier = context.Barrier(2)
    workers = {
        s: context.Process(
            target=_create_and_write, args=(uris, barrier, str(tmp_path / f"{s}.json"), s)
        )
        for s in ("a", "b")
    }
    for worker in workers.values():
        worker.start()
    deadline = time.monotonic() + 240
    for worker in workers.values():
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()  # never hang the suite; the exit code below names the failure
            worker.join()
    assert {s: w.exitcode for s, w in workers.items()} == {"a": 0, "b": 0}
    outcomes = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in workers}
    assert [o for s in workers for o in outcomes[s] if o != "ok"] == []  # the errors, if any
    assert {s: len(o) for s, o in outcomes.items()} == {"a": RACES, "b": RACES}
    for uri in uris:
        table = Store(uri).table("serving_pointers")
        assert _creations(table) == [1]  # created once: no creator overwrote the other's table
        assert primary_key(table) == ["source"]
        rows = table.to_arrow().select(["source", "run_id"]).to_pylist()
        assert sorted(rows, key=lambda r: r["source"]) == [
            {"source": "a", "run_id": "a"},
            {"source": "b", "run_id": "b"},
        ]


def test_a_refresh_moves_the_pointer_only_forward_and_records_each_move(tmp_path: Path):
    store = Store(str(tmp_path / "db"))
    start = utcnow()

    def move(table: str, version: int, second: int, only_forward: bool = True) -> bool:
        row = dict(
            _pointer_row("notes"),
            table_name=table,
            table_version=version,
            swapped_at=start + timedelta(seconds=second),
        )
        return store.set_pointer(row, only_forward=only_forward)

    assert move("vectors__notes__m", 5, 0)  # the first pointer of a source
    assert not move("vectors__notes__m", 4, 1)  # a slower shard's older version: refused
    assert not move("vectors__notes__m", 5, 2)  # the version it already pins: no move, no event
    pinned = store.pointer("notes")
    assert (pinned["table_version"], pinned["swapped_at"]) == (5, start)
    assert move("vectors__notes__m", 6, 3)
    assert move("vectors__notes__x", 2, 4)  # another table (a migration's target): any version
    assert not move("vectors__notes__x", 1, 5)
    assert move("vectors__notes__m", 6, 6, only_forward=False)  # a rollback moves back
    history = [(h["table_name"], h["table_version"]) for h in store.pointer_history("notes")]
    assert history == [
        ("vectors__notes__m", 5),
        ("vectors__notes__m", 6),
        ("vectors__notes__x", 2),
        ("vectors__notes__m", 6),
    ]
    assert store.pointer("notes")["table_name"] == "vectors__notes__m"


PREEMPTED = (
    "lance error: Retryable commit conflict for version 11: This CreateIndex transaction "
    "was preempted by concurrent transaction CreateIndex at version 11. Please retry."
)


def test_only_a_commit_that_lost_a_race_is_retried():
    assert is_commit_conflict(RuntimeError(PREEMPTED))  # what lancedb 0.40 raises, measured
    assert is_commit_conflict(
        RuntimeError(
            "lance error: Incompatible transaction: This UpdateConfig transaction is incompatible "
            "with concurrent transaction UpdateConfig at version 2."
        )
    )
    assert is_commit_conflict(CommitConflictError("preempted", retryable=True))  # pylance's type
    assert not is_commit_conflict(CommitConflictError("never compatible", retryable=False))
    assert not is_commit_conflict(ValueError("Invalid input, a primary key is already set"))
    assert not is_commit_conflict(RuntimeError("lance error: Invalid user input: no column 'x'"))
    calls: list[str] = []

    def lost_twice() -> str:
        calls.append("lost_twice")
        if calls.count("lost_twice") < 3:
            raise RuntimeError(PREEMPTED)
        return "committed"

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("lance error: Invalid user input: no column 'x'")

    def always_lost() -> None:
        calls.append("always_lost")
        raise RuntimeError(PREEMPTED)

    assert retry_on_conflict(lost_twice, base_delay=0.001) == "committed"
    with pytest.raises(RuntimeError, match="no column"):
        retry_on_conflict(broken, base_delay=0.001)  # not a race: raised at once
    with pytest.raises(RuntimeError, match="Retryable commit conflict"):
        retry_on_conflict(always_lost, attempts=3, base_delay=0.001)  # given up after `attempts`
    assert calls == ["lost_twice"] * 3 + ["broken"] + ["always_lost"] * 3


def test_retried_conflicts_are_counted_for_the_step_that_retried_them():
    lost = iter([True, True, False, True, False])

    def commit() -> str:
        if next(lost):
            raise RuntimeError(PREEMPTED)
        return "committed"

    with counting_conflicts() as step:
        retry_on_conflict(commit, base_delay=0.001)
        with counting_conflicts() as inner:  # a nested count sees only its own block
            retry_on_conflict(commit, base_delay=0.001)
    assert (step.retried, inner.retried) == (3, 1)
    retry_on_conflict(lambda: "committed")  # outside any count: nothing to add to
    assert step.retried == 3


def test_read_in_matches_values_as_data_and_every_equality(tmp_path: Path):
    store = Store(str(tmp_path / "db"))
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("src", pa.string())])
    keys = ["a", "b", "o'brien", "x' OR '1'='1", *[f"k{i}" for i in range(3000)]]
    table = store.table("t", schema, "k")
    rows = [{"k": k, "src": "one" if i % 2 else "two"} for i, k in enumerate(keys)]
    store.append(table, pa.Table.from_pylist(rows, schema))
    wanted = ["o'brien", "x' OR '1'='1", "missing", *[f"k{i}" for i in range(0, 3000, 3)]]
    read = Store.read_in(table, ["k", "src"], {"k": wanted})
    assert sorted(read.column("k").to_pylist()) == sorted(set(wanted) & set(keys))
    one = Store.read_in(table, ["k"], {"k": wanted}, src="one").column("k").to_pylist()
    assert sorted(one) == sorted(r["k"] for r in rows if r["k"] in wanted and r["src"] == "one")
    assert Store.read_in(table, ["k"], {"k": []}).num_rows == 0


def test_insert_missing_keeps_stored_rows_and_adds_the_new_ones_once(tmp_path: Path):
    store = Store(str(tmp_path / "db"))
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("v", pa.string())])
    table = store.table("t", schema, "k")
    store.insert_missing(table, pa.Table.from_pylist([{"k": "a", "v": "first"}], schema), "k")
    again = [{"k": "a", "v": "other"}, {"k": "b", "v": "new"}]
    for _ in range(2):  # a rerun adds nothing
        store.insert_missing(table, pa.Table.from_pylist(again, schema), "k")
    assert sorted(map(tuple, (r.values() for r in table.to_arrow().to_pylist()))) == [
        ("a", "first"),
        ("b", "new"),
    ]


def test_a_reader_waits_for_a_table_another_process_has_listed_but_not_committed(tmp_path):
    """What a shard's reader met in CI: the table's folder exists, its first version does not
    yet. Opening it must wait for the commit, not report the table missing."""
    store = Store(str(tmp_path / "db"))
    (tmp_path / "db" / "serving_pointers.lance").mkdir(parents=True)  # listed, not committed
    assert store.has_table("serving_pointers")
    creator = threading.Timer(0.5, lambda: Store(store.uri).table("serving_pointers", POINTERS))
    creator.start()
    try:
        table = store.table("serving_pointers")  # no schema: a reader's open
    finally:
        creator.join()
    assert table.schema.names == POINTERS.names
    with pytest.raises(KeyError, match="does not exist"):  # a table nobody creates: at once
        store.table("never_created")
