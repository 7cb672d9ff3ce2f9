"""Index maintenance of a vectors table: a refresh costs what changed, not the table's size.

New and changed rows join the existing vector and full-text indexes (indexing.add_unindexed).
The vector index is trained again from scratch only when
- the rows written (embedded) since its training pass `serving.retrain_fraction` of the table:
  its partitions were learnt from data that no longer describes the table well enough;
- the `ann_recall` check found recall below its floor on an index that took rows in since its
  training (checks/ann_recall.py records the request here; a fresh index that misses the floor
  would miss it again, so that asks for other query settings, not a retrain);
- the plan's index type changed (a new default in indexing.ann_plan);
- the table holds more than MAX_FRAGMENTS data fragments (many small refreshes).

A run asked to (`merge_deltas`; the index-merge sensor's runs) merges the delta indexes that
refreshes left next to the trained ones, off the refreshes' path (indexing.py says why).

The shards of a source share one table. A shard whose siblings are still refreshing (a
snapshot of theirs newer than what they last brought to serving_index) leaves maintenance to
the last of them: its own rows are served meanwhile by LanceDB's flat scan of unindexed rows,
so nothing is missing from search, and the indexes are maintained once per refresh.

Nothing here deletes a table version: compaction writes new files, the old versions stay
readable, and only retention cleanup (retention.cleanup, which keeps every retained target)
removes them. LanceDB's `table.optimize()` is not used for that reason: it also prunes.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from .filters import equal
from .indexing import (
    AnnPlan,
    add_unindexed,
    build_fts_index,
    build_vector_index,
    compact,
    deltas,
    fragments,
    fts_index,
    index_kind,
    merge_delta_indexes,
    merge_segments,
    unindexed_rows,
    vector_index,
)
from .sharding import parse_key, shard_keys
from .store import INDEX_STATE, Store, retry_on_conflict, utcnow

# LanceDB compacts only fragments of one index segment: each incremental refresh leaves one
# fragment under its own delta, and a retrain (vector index dropped first) compacts them all.
MAX_FRAGMENTS = 256
SIBLING_HORIZON = timedelta(hours=1)  # a sibling shard's refresh older than this: not waited for
_RANK = {"none": 0, "incremental": 1, "merged": 2, "built": 3, "retrained": 4}


@dataclass
class Maintenance:
    """What one serving_index run did to the table's indexes (its materialization metadata)."""

    action: str = "none"  # built | retrained | merged | incremental | none
    reason: str = ""
    unindexed_before: int = 0  # rows the indexes did not cover when the step began
    unindexed_after: int = 0
    rows_since_training: int = 0  # rows embedded since the vector index was last trained
    waiting_for: list[str] = field(default_factory=list)  # sibling shards still refreshing
    fragments_compacted: int = 0
    deltas_after: int = 0  # delta indexes left next to the trained ones (the most of the two)
    train_seconds: float = 0.0  # training the vector index from scratch (part of `seconds`)
    seconds: float = 0.0  # the whole maintenance

    def did(self, action: str, reason: str = "") -> None:
        if _RANK[action] > _RANK[self.action]:
            self.action, self.reason = action, reason or self.reason


def maintain(
    store: Store,
    table,
    source: str,
    plan: AnnPlan,
    retrain_fraction: float,
    merge_deltas: bool = False,
):
    """Bring the table's indexes up to date with its rows, as cheaply as the change allows;
    `merge_deltas`: also merge the delta indexes refreshes left (a merge run)."""
    started = time.perf_counter()
    report = _maintain(store, table, source, plan, retrain_fraction)
    if merge_deltas and not report.waiting_for:
        _merge(table, report)
    report.deltas_after = max(
        (deltas(table, i) for i in (vector_index(table), fts_index(table)) if i is not None),
        default=0,
    )
    report.seconds = time.perf_counter() - started
    return report


def _maintain(store: Store, table, source: str, plan: AnnPlan, retrain_fraction: float):
    report = Maintenance()
    vector, fts = vector_index(table), fts_index(table)
    report.unindexed_before = _unindexed(table, vector, fts)
    trained_at, trained_version = _training(store, table.name, vector)
    report.rows_since_training = _rows_since(table, trained_at) if vector is not None else 0
    report.waiting_for = siblings_refreshing(store, table.name, source)
    if report.waiting_for:
        report.reason = (
            f"left to the last shard to finish: {', '.join(report.waiting_for)} still refreshing"
        )
        report.unindexed_after = report.unindexed_before
        return report
    rows, trained_now, joins = table.count_rows(), None, []
    if report.unindexed_before:  # this refresh's writes first become one fragment (no remap)
        report.fragments_compacted = retry_on_conflict(lambda: compact(table, True))
    if plan.exact and vector is not None:  # the table shrank below serving.ann_min_rows
        retry_on_conflict(lambda: table.drop_index(vector.name))
        report.did("retrained", "exact search below serving.ann_min_rows: vector index dropped")
    elif not plan.exact:
        why = "no vector index yet" if vector is None else ""
        why = why or _retrain_reason(
            table, vector, plan, report.rows_since_training, rows, retrain_fraction
        )
        why = why or _recall_request(store, table.name, trained_at, trained_version)
        if why:
            trained_now = _train(table, plan, vector, report)
            report.did("built" if vector is None else "retrained", why)
        elif unindexed_rows(table, vector):
            joins.append((vector_index, "new rows joined the trained vector index"))
    if fts is None and rows:
        retry_on_conflict(lambda: build_fts_index(table))
        report.did("built", "no full-text index yet")
    elif fts is not None and unindexed_rows(table, fts_index(table)):
        joins.append((fts_index, "new rows joined the full-text index"))
    _join(table, joins, report)
    report.unindexed_after = _unindexed(table, vector_index(table), fts_index(table))
    if trained_now is not None:  # the version the step ends at is what ann_recall will measure
        _put(
            store,
            f"trained:{table.name}",
            table.name,
            trained_now,
            version=table.version,
            rows=rows,
            detail=plan.index_type,
        )
    return report


def _join(table, joins: list[tuple[Callable, str]], report: Maintenance) -> None:
    """Add the new rows to each index as a delta, both indexes at once: each delta is mostly
    one core's work (at 1M rows, 10k new rows took 0.19 s for the vector index and 0.33 s for
    the full-text one, 0.4 s side by side), and LanceDB rebases two index commits onto each
    other (a conflict is retried)."""

    def join(find: Callable) -> None:
        retry_on_conflict(lambda: add_unindexed(table, find(table)))

    if joins:
        with ThreadPoolExecutor(max_workers=len(joins)) as pool:  # conflicts counted in each
            done = [pool.submit(contextvars.copy_context().run, join, f) for f, _ in joins]
            for future in done:
                future.result()
    for _, reason in joins:
        report.did("incremental", reason)


def _merge(table, report: Maintenance) -> None:
    for find in (vector_index, fts_index):  # looked up again after each commit
        if retry_on_conflict(lambda find=find: merge_delta_indexes(table, find(table))):
            report.did("merged", "delta indexes merged with each other (a merge run)")


def _train(table, plan: AnnPlan, vector, report: Maintenance) -> datetime:
    """Train the vector index from scratch on the current rows; returns when training began."""
    started = utcnow()  # rows embedded from now on count as written since this training
    if vector is not None:  # else compaction would first remap the index it replaces
        retry_on_conflict(lambda: table.drop_index(vector.name))
    fts = fts_index(table)
    if fts is not None:  # one full-text segment over every row: then every fragment compacts
        retry_on_conflict(lambda: merge_segments(table, fts))
    report.fragments_compacted += retry_on_conflict(lambda: compact(table, False))
    training = time.perf_counter()
    retry_on_conflict(lambda: build_vector_index(table, plan))
    report.train_seconds = time.perf_counter() - training
    report.rows_since_training = 0
    return started


def _unindexed(table, *indexes) -> int:
    return max((unindexed_rows(table, i) for i in indexes if i is not None), default=0)


def _training(store: Store, name: str, vector) -> tuple[datetime | None, int]:
    """When, and at which table version, the vector index was last trained (an index built
    before this was recorded: its creation time, version 0)."""
    row = _row(store, f"trained:{name}")
    if row is not None:
        return row["at"], int(row["table_version"])
    return (vector.created_at if vector is not None else None), 0


def _rows_since(table, trained_at: datetime | None) -> int:
    """Rows embedded (created_at) after the vector index was trained; lineage-only updates keep
    their vector and do not count. Counted by the dataset, not read (half the time at 1M)."""
    if trained_at is None:
        return 0
    dataset = table.to_lance()
    moment = pa.scalar(_aware(trained_at), dataset.schema.field("created_at").type)
    return dataset.count_rows(pc.field("created_at") > moment)


def _retrain_reason(table, vector, plan: AnnPlan, since: int, rows: int, fraction: float) -> str:
    if index_kind(vector) != plan.index_type:
        return f"index type {index_kind(vector)} -> {plan.index_type} (indexing.ann_plan)"
    if rows and since / rows > fraction:
        return (
            f"{since} of {rows} rows ({since / rows:.0%}) written since the index was trained "
            f"> serving.retrain_fraction {fraction}"
        )
    if fragments(table) > MAX_FRAGMENTS:  # many small refreshes: only a retrain compacts them
        return f"{fragments(table)} data fragments > {MAX_FRAGMENTS}: compacted and retrained"
    return ""


def _recall_request(store: Store, name: str, trained_at, trained_version: int) -> str:
    """The ann_recall check's request, if it measured this training after rows joined it."""
    request = _row(store, f"retrain_request:{name}")
    if request is None or request["table_version"] <= trained_version:
        return ""
    if trained_at is not None and _aware(request["at"]) <= _aware(trained_at):
        return ""
    return request["detail"]


def request_retrain(store: Store, table_name: str, table_version: int, reason: str) -> None:
    """Ask the next serving_index run of this table to retrain its vector index (ann_recall)."""
    _put(
        store,
        f"retrain_request:{table_name}",
        table_name,
        utcnow(),
        version=table_version,
        detail=reason,
    )


def siblings_refreshing(store: Store, table_name: str, source: str) -> list[str]:
    """The other shards of `source` that took a snapshot serving_index has not seen yet (within
    SIBLING_HORIZON): one of them indexes last. Records this shard's own snapshot first, so two
    shards finishing together cannot both wait for each other."""
    shard = parse_key(source)
    if shard.count == 1:
        return []
    own = store.latest_snapshot(source)
    _put(
        store,
        f"shard:{table_name}:{source}",
        table_name,
        utcnow(),
        detail=own["snapshot_id"] if own else None,
    )
    seen = {
        r["key"].rsplit(":", 1)[-1]: r["detail"]
        for r in _rows(store, kind="shard", table_name=table_name)
    }
    now, waiting = utcnow(), []
    for key in shard_keys(shard.source, shard.count):
        latest = store.latest_snapshot(key) if key != source else None
        if latest is None or seen.get(key) == latest["snapshot_id"]:
            continue
        if now - _aware(latest["created_at"]) <= SIBLING_HORIZON:
            waiting.append(key)
    return waiting


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def _put(store, key, table_name, at, *, version=None, rows=None, detail=None) -> None:
    row = {
        "key": key,
        "kind": key.split(":", 1)[0],
        "table_name": table_name,
        "at": at,
        "table_version": version,
        "rows": rows,
        "detail": detail,
    }
    table = store.table("index_state", INDEX_STATE, "key")
    store.upsert(table, pa.Table.from_pylist([row], schema=INDEX_STATE), "key")


def _rows(store: Store, **where) -> list[dict]:
    if not store.has_table("index_state"):
        return []
    return Store.read(store.table("index_state"), where=equal(**where)).to_pylist()


def _row(store: Store, key: str) -> dict | None:
    rows = _rows(store, key=key)
    return rows[0] if rows else None
