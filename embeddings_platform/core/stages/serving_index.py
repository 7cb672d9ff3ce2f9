"""Stage 4, serving index: index a model version's table and move the serving pointer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..checks import ConsistencyError, consistency
from ..config import ServingConfig
from ..index_maintenance import Maintenance, maintain
from ..indexing import ann_plan, vector_index
from ..sharding import owner
from ..store import (
    Store,
    col,
    counting_conflicts,
    lit,
    serve_tag,
    utcnow,
    vectors_table_name,
)


class MixedModelVersionsError(RuntimeError):
    """Raised rather than serve an index whose rows come from more than one model version."""


@dataclass
class IndexReport:
    source: str
    model_version: str
    table_name: str
    table_version: int
    rows: int
    index_type: str
    pointer_moved: bool
    serving_model_version: str | None
    seconds: float
    maintenance: Maintenance  # what was done to the indexes, and why
    refused_empty: bool = False  # serving.serve_empty is false and the table is empty: not pinned
    conflicts: int = 0  # commit conflicts with concurrent writers (shards), retried
    check_seconds: float = 0.0  # the blocking consistency check before the pointer moves

    @property
    def data_version(self) -> str:
        return f"{self.model_version}@{self.table_version}"

    @property
    def rebuilt(self) -> bool:
        """Did this run change the indexes at all (else the table version is unchanged)?"""
        return self.maintenance.action != "none"


def model_versions_in(table) -> set[str]:
    return set(Store.read(table, ["model_version"]).column("model_version").unique().to_pylist())


def foreign_versions(table, version_id: str) -> set[str]:
    """Model versions other than `version_id` in a table: the filter returns only their rows,
    not a million ids of the right one."""
    rows = Store.read(table, ["model_version"], where=col("model_version") != lit(version_id))
    return set(rows.column("model_version").unique().to_pylist())


def build_serving_index(
    store: Store,
    source: str,
    version_id: str,
    serving: ServingConfig,
    run_id: str,
    is_default_model: bool,
    expected_dimension: int | None = None,
    merge_deltas: bool = False,
) -> IndexReport:
    """Index a model version's table and, if it is what serves this source, move the pointer.

    A table of a version that does not serve yet is indexed as a shadow candidate; only a
    migration (after its gate) moves the pointer to it. The pointer moves only to a table
    that passes `checks.consistency` (else ConsistencyError, and the old target keeps serving).
    The indexes are maintained incrementally (core/index_maintenance.py); `merge_deltas` also
    merges the delta indexes refreshes left (the index-merge sensor's runs).
    """
    started = time.perf_counter()
    with counting_conflicts() as conflicts:
        report = _build(
            store,
            source,
            version_id,
            serving,
            run_id,
            is_default_model,
            expected_dimension,
            merge_deltas,
        )
    report.conflicts = conflicts.retried
    report.seconds = time.perf_counter() - started
    return report


def _build(
    store: Store,
    source: str,
    version_id: str,
    serving: ServingConfig,
    run_id: str,
    is_default_model: bool,
    expected_dimension: int | None,
    merge_deltas: bool,
) -> IndexReport:
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        raise LookupError(
            f"no vectors for source {source!r} and model {version_id!r}; materialize embeddings "
            "first"
        )
    table = store.table(name)
    foreign = foreign_versions(table, version_id)
    if foreign:
        raise MixedModelVersionsError(
            f"table {name} holds vectors of model versions {sorted(foreign | {version_id})}; "
            "refusing to serve it"
        )
    pointer = store.pointer(source)
    serves_this = pointer is not None and pointer["model_version"] == version_id
    rows = table.count_rows()
    plan = ann_plan(rows, serving.ann_min_rows)
    maintenance = maintain(store, table, source, plan, serving.retrain_fraction, merge_deltas)
    table_version = table.version  # read once: a concurrent writer may commit the next one
    _tag(table, table_version)  # a no-op when nothing changed since the last run tagged it
    tag = serve_tag(table_version)
    already_pinned = (
        serves_this and pointer["table_name"] == name and pointer["table_version"] == table_version
    )
    moved = not already_pinned and (serves_this or (pointer is None and is_default_model))
    # A table that was dropped and rebuilt restarts its version numbers: the pinned version is
    # gone, so the rebuild must be pinned even though its number is lower.
    target_lost = serves_this and not store.target_exists(
        pointer["table_name"], pointer["table_version"], pointer["tag"]
    )
    refused_empty = moved and rows == 0 and not serving.serve_empty and pointer is not None
    if refused_empty:  # the operator's choice: keep the last good target; the checks report ERROR
        moved = False
    check_seconds = 0.0
    if moved:  # blocking check: never point serving at an inconsistent table
        passed = pointer["table_version"] if serves_this and not target_lost else None
        check = consistency(
            store,
            source,
            version_id,
            expected_dimension,
            check_pointer=False,
            # what serves passed this check: the vectors it already held are not read again
            checked_version=passed if passed and pointer["table_name"] == name else None,
        )
        check_seconds = check.seconds
        if not check.ok:
            raise ConsistencyError(check)
    if moved:  # a refresh only ever moves forward: a slower shard cannot pin an older version
        moved = store.set_pointer(
            {
                "source": owner(source),
                "model_version": version_id,
                "table_name": name,
                "table_version": table_version,
                "tag": tag,
                "swapped_at": utcnow(),
                "run_id": run_id,
                "reason": "refresh" if serves_this else "initial",
                # a refresh keeps how the source is answered; a first target starts with the default
                "profile": pointer.get("profile") if serves_this else serving.retrieval.to_json(),
            },
            only_forward=not target_lost,
        )
    return IndexReport(
        source,
        version_id,
        name,
        table_version,
        rows,
        _index_type(table),
        moved,
        version_id if (moved or serves_this) else (pointer["model_version"] if pointer else None),
        0.0,
        maintenance,
        refused_empty=refused_empty,
        check_seconds=check_seconds,
    )


def _tag(table, version: int) -> None:
    """Tag a version for serving (keeps cleanup from deleting it); another shard may have."""
    if serve_tag(version) in table.tags.list():
        return
    try:
        table.tags.create(serve_tag(version), version)
    except (ValueError, OSError, RuntimeError) as exc:
        if "exist" not in str(exc).lower():
            raise


def _index_type(table) -> str:
    index = vector_index(table)
    return str(index.index_type) if index is not None else "exact"
