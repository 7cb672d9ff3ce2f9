"""Consistency: is a vectors table fit to serve? Any problem is an ERROR; the pipeline runs it
before moving a serving pointer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..sharding import parse_key as parse_shard_key
from ..store import Store, dead_letter_id, vectors_table_name
from .common import (
    ERROR,
    OK,
    Report,
    chunks_table,
    pick_strategy,
    resolve_version,
    shard_rows,
    version_time,
)


@dataclass
class ConsistencyReport(Report):
    source: str
    version_id: str
    table_name: str
    table_version: int
    vectors: int = 0
    chunks: int = 0
    model_versions: int = 0
    foreign_rows: int = 0
    dimension: int = 0
    expected_dimension: int = 0  # 0 = unknown
    nan_or_inf: int = 0
    null_vectors: int = 0
    zero_norm: int = 0
    duplicate_ids: int = 0
    dead_lettered: int = 0  # chunks without a vector because the model kept failing (in quarantine)
    chunking_strategies: int = 0
    counts_compared: bool = True  # False while chunks changed after the vectors (staleness's job)
    serving: bool = False
    pointer_target_exists: bool = True  # vacuously true when the pointer names another table
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def severity(self) -> str:
        return OK if self.ok else ERROR


class ConsistencyError(RuntimeError):
    """Raised instead of moving a serving pointer to an inconsistent table."""

    def __init__(self, report: ConsistencyReport):
        self.report = report
        super().__init__(
            f"refusing to serve {report.table_name}@v{report.table_version}: "
            + "; ".join(report.problems)
        )


def _split(dataset, checked_version: int | None) -> tuple[list, list]:
    """(fragments to check, fragments that passed already) of the checked-out version.

    Lance fragments are immutable (a delete only adds a deletion file), so the fragments a
    version that passed this check shares with this one hold nothing to find again: a refresh
    checks what it wrote, not the table. Without such a version (or once it is cleaned up),
    every fragment is checked.
    """
    fragments = dataset.get_fragments()
    if checked_version is None:
        return fragments, []
    try:
        passed = {f.fragment_id for f in dataset.checkout_version(checked_version).get_fragments()}
    except (ValueError, OSError, RuntimeError):  # cleaned up: check everything
        return fragments, []
    fresh = [f for f in fragments if f.fragment_id not in passed]
    return fresh, [f for f in fragments if f.fragment_id in passed]


def _read(fragments, columns: list[str]) -> pa.Table:
    """Live rows of some fragments (per fragment: pylance 14's dataset.to_batches(fragments=...)
    scanned every fragment)."""
    batches = [batch for fragment in fragments for batch in fragment.to_batches(columns=columns)]
    if not batches:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.Table.from_batches(batches)


def _scan_vectors(fragments, dimension: int, batch_size: int = 65536) -> tuple[int, int, int]:
    """(null, non-finite, zero-norm) vector counts, streaming the vector column."""
    nulls = nonfinite = zero = 0
    for fragment in fragments:
        for batch in fragment.to_batches(columns=["vector"], batch_size=batch_size):
            column = batch.column(0)
            if column.null_count:
                nulls += column.null_count
                column = pc.drop_null(column)
            if len(column) == 0:
                continue
            values = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dimension)
            finite = np.isfinite(values).all(axis=1)
            nonfinite += int((~finite).sum())
            norms = np.einsum("ij,ij->i", values[finite], values[finite], dtype=np.float64)
            zero += int((norms <= 1e-24).sum())
    return nulls, nonfinite, zero


def _first_strategy(passed_fragments) -> pa.Array:
    """The strategy of the rows that passed: one strategy among them, so one row names it."""
    for fragment in passed_fragments:
        head = fragment.to_table(columns=["chunking_strategy"], limit=1)
        if head.num_rows:
            return head.column(0).combine_chunks()
    return pa.array([], pa.string())


def _duplicates(fresh: pa.Table, passed_fragments) -> int:
    """Rows beyond the first of each chunk id. The rows that passed hold no duplicate among
    themselves, so only the fresh rows' ids are looked for among them."""
    ids = fresh.column("chunk_id")
    count = fresh.num_rows - int(pc.count_distinct(ids).as_py()) if fresh.num_rows else 0
    if fresh.num_rows and passed_fragments:
        seen = pc.unique(ids)
        for fragment in passed_fragments:
            for batch in fragment.to_batches(columns=["chunk_id"]):
                count += int(pc.sum(pc.is_in(batch.column(0), value_set=seen)).as_py() or 0)
    return count


def consistency(
    store: Store,
    source: str,
    version_id: str,
    expected_dimension: int | None = None,
    *,
    at: str = "latest",
    check_pointer: bool = True,
    checked_version: int | None = None,
) -> ConsistencyReport:
    """Is the vectors table of (source, model version) fit to serve?

    `at='latest'` checks the newest table version (what a refresh or migration is about to
    serve); `at='served'` checks the version the serving pointer pins (if it names this
    table). `check_pointer=False` skips the pointer test (used right before moving it).
    `checked_version`: a version of this table that passed before (the one serving): vectors it
    already held are not scanned again.
    """
    started = time.perf_counter()
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        report = ConsistencyReport(source, version_id, name, 0)
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        pointer = store.pointer(source)
        report.serving = pointer is not None and pointer["table_name"] == name
        report.pointer_target_exists = not report.serving
        report.seconds = time.perf_counter() - started
        return report
    version, _ = resolve_version(store, source, name, at)
    table = store.open_table(name, version)
    report = ConsistencyReport(source, version_id, name, int(table.version))
    problems = report.problems

    dataset = table.to_lance()
    fresh_fragments, passed_fragments = _split(dataset, checked_version)
    fresh = _read(fresh_fragments, ["chunk_id", "model_version", "chunking_strategy"])
    report.vectors = table.count_rows()
    counts = pc.value_counts(fresh.column("model_version")).to_pylist()
    passed_rows = report.vectors - fresh.num_rows  # rows of version_id only: they passed
    report.model_versions = len(
        {c["values"] for c in counts} | ({version_id} if passed_rows else set())
    )
    report.foreign_rows = sum(c["counts"] for c in counts if c["values"] != version_id)
    if report.foreign_rows:
        found = sorted(str(c["values"]) for c in counts)
        problems.append(
            f"{report.foreign_rows} rows of a foreign model version in {name} (found {found}); "
            "one serving index must hold exactly one model version"
        )
    report.duplicate_ids = _duplicates(fresh, passed_fragments)
    if report.duplicate_ids:
        problems.append(f"{report.duplicate_ids} duplicate chunk_id rows")

    report.dimension = int(table.schema.field("vector").type.list_size)
    if expected_dimension:
        report.expected_dimension = int(expected_dimension)
        if report.dimension != expected_dimension:
            problems.append(
                f"vector dimension {report.dimension} differs from the model's {expected_dimension}"
            )
    report.null_vectors, report.nan_or_inf, report.zero_norm = _scan_vectors(
        fresh_fragments, report.dimension
    )
    if report.null_vectors:
        problems.append(f"{report.null_vectors} rows without a vector")
    if report.nan_or_inf:
        problems.append(f"{report.nan_or_inf} vectors with NaN or infinite values")
    if report.zero_norm:
        problems.append(f"{report.zero_norm} zero-norm vectors (cosine distance undefined)")

    strategy, strategies = pick_strategy(
        store,
        source,
        pc.unique(
            pa.concat_arrays(
                [
                    fresh.column("chunking_strategy").combine_chunks(),
                    _first_strategy(passed_fragments),
                ]
            )
        ),
    )
    report.chunking_strategies = len(strategies)
    if len(strategies) > 1:
        problems.append(
            f"vectors of {len(strategies)} chunking strategies in one table: {strategies}"
        )
    chunk_table = chunks_table(store, source, strategy)
    report.chunks = chunk_table.count_rows() if chunk_table is not None else 0
    # Counts must agree once the vectors were synced after the chunks' last change. Chunks
    # changed later (or a pinned version older than the newest) is pending work: staleness.
    newest = version is None or version == store.open_table(name).version
    report.counts_compared = newest and (
        chunk_table is None or version_time(chunk_table) <= version_time(table)
    )
    chunks_here, vectors_here = report.chunks, report.vectors
    rows = None  # every row's ids: read only where counts need them
    if parse_shard_key(source).count > 1 and chunk_table is not None:  # other shards may be mid-way
        rows = Store.read(table, ["chunk_id", "doc_id"])
        chunks_here = shard_rows(Store.read(chunk_table, ["doc_id"]), source).num_rows
        vectors_here = shard_rows(rows, source).num_rows
    if report.counts_compared and chunks_here > vectors_here:
        # Chunks the model kept failing on are set aside with their reason, not missing.
        rows = rows if rows is not None else Store.read(table, ["chunk_id"])
        report.dead_lettered = _dead_lettered(store, source, version_id, chunk_table, rows)
        vectors_here += report.dead_lettered
    if report.counts_compared and chunks_here != vectors_here:
        problems.append(
            f"{chunks_here} chunks but {vectors_here - report.dead_lettered} vectors"
            + (f" and {report.dead_lettered} dead-lettered" if report.dead_lettered else "")
        )

    pointer = store.pointer(source)
    if pointer is not None and (
        pointer["table_name"] == name or pointer["model_version"] == version_id
    ):
        report.serving = True
        if check_pointer:
            report.pointer_target_exists = _pointer_target_exists(store, pointer)
            if pointer["table_name"] != name:
                report.pointer_target_exists = False
                problems.append(
                    f"pointer of {source} names model version {version_id} but table "
                    f"{pointer['table_name']}"
                )
            elif not report.pointer_target_exists:
                problems.append(
                    f"serving pointer of {source} targets "
                    f"{pointer['table_name']}@v{pointer['table_version']}, which no longer exists; "
                    "roll back or rebuild the serving index"
                )
    report.seconds = time.perf_counter() - started
    return report


def _dead_lettered(store: Store, source: str, version_id: str, chunk_table, rows: pa.Table) -> int:
    """Chunks of this source without a vector whose dead-letter row for this version exists."""
    if not store.has_table("quarantine"):
        return 0
    have = set(rows.column("chunk_id").to_pylist())
    chunks = shard_rows(
        Store.read(chunk_table, ["chunk_id", "doc_id", "source"]), source
    ).to_pylist()
    wanted = {
        dead_letter_id(c["source"], version_id, c["chunk_id"])
        for c in chunks
        if c["chunk_id"] not in have
    }
    if not wanted:
        return 0
    found = Store.read_in(store.table("quarantine"), ["quarantine_id"], {"quarantine_id": wanted})
    return found.num_rows


def _pointer_target_exists(store: Store, pointer: dict[str, Any]) -> bool:
    return store.target_exists(pointer["table_name"], pointer["table_version"], pointer["tag"])
