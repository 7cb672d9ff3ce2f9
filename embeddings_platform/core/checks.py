"""Health checks of the stored vectors and the serving index: pure functions, no Dagster.

Each check returns a report with a severity (`ok`, `warn`, `error`), human-readable
`problems`, and `metadata()`: numbers only, so the Dagster UI can plot them over time.

- `consistency`: one model version per table, dimension equal to the model's, no NaN,
  infinite, null or zero-norm vectors, no duplicate chunk_id, chunk and vector counts agree,
  the serving pointer targets an existing table version. Any problem is an ERROR; the
  pipeline calls it before moving a serving pointer.
- `staleness`: vectors whose chunk changed or vanished, chunks without a vector, documents
  deleted or changed in the newest snapshot but still present/served, and how long the
  data has lagged behind the newest snapshot. WARN/ERROR past configurable thresholds.
- `ann_recall`: recall@k of the ANN index against exact search on the same table version,
  with stored vectors as queries. ERROR below a floor.
- `retrieval_recall`: recall@k / nDCG@k of labelled queries through the served table, plus
  ragas' ID-based context recall and precision, compared with a stored baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import types
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.expr import col, lit

from .config import ChecksConfig, ModelConfig
from .evaluation import LabelledQuery, evaluate, table_retriever
from .indexing import served_plan, tuned, vector_index
from .sharding import parse_key as parse_shard_key
from .store import DEAD_LETTER_REASON, Store, chunks_table_name, dead_letter_id, utcnow, vectors_table_name

OK, WARN, ERROR = "ok", "warn", "error"
_RANK = {OK: 0, WARN: 1, ERROR: 2}


def worst(*severities: str) -> str:
    return max(severities, key=_RANK.__getitem__, default=OK)


def _numeric(values: dict[str, Any]) -> dict[str, float | int]:
    """Keep only plottable numbers (bools become 0/1)."""
    out: dict[str, float | int] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value)
    return out


def model_dimension(model: ModelConfig) -> int | None:
    """The dimension a model produces, read from its config files without loading it.

    Hashing models: the configured dimension. sentence-transformers folders: the last Dense
    module's out_features, else the pooling's word_embedding_dimension, else hidden_size.
    None when it cannot be told without loading the model.
    """
    if model.kind == "hashing":
        return model.dimension
    from .models import resolve_model_path

    try:
        path = resolve_model_path(model.path)
    except Exception:  # noqa: BLE001 - an unresolvable model is reported by other steps
        return None
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for module in reversed(modules):
            cfg = path / module.get("path", "") / "config.json"
            if module.get("type", "").endswith("Dense") and cfg.exists():
                return int(json.loads(cfg.read_text(encoding="utf-8"))["out_features"])
        for module in modules:
            cfg = path / module.get("path", "") / "config.json"
            if module.get("type", "").endswith("Pooling") and cfg.exists():
                value = json.loads(cfg.read_text(encoding="utf-8")).get("word_embedding_dimension")
                if value:
                    return int(value)
    cfg = path / "config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("hidden_size")
        return int(value) if value else None
    return None


def _open_version(store: Store, name: str, version: int | None):
    table = store.db.open_table(name)
    if version is not None:
        table.checkout(version)
    return table


def _served_version(store: Store, source: str, name: str) -> int | None:
    pointer = store.pointer(source)
    if pointer is not None and pointer["table_name"] == name:
        return int(pointer["table_version"])
    return None


def _resolve_version(store: Store, source: str, name: str, at: str) -> tuple[int | None, bool]:
    """(table version to read, whether it is the served one) for at = 'latest' | 'served'."""
    if at not in ("latest", "served"):
        raise ValueError(f"at: expected 'latest' or 'served', got {at!r}")
    served = _served_version(store, source, name)
    if at == "served" and served is not None:
        return served, True
    return None, False


def _strategy_of(store: Store, source: str, table) -> tuple[str | None, list[str]]:
    """The chunking strategy of a vectors table (from its rows, else the only chunks table)."""
    strategies = Store.read(table, ["chunking_strategy"]).column("chunking_strategy").unique().to_pylist()
    strategies = sorted(s for s in strategies if s is not None)
    if strategies:
        return strategies[0], strategies
    prefix = f"chunks__{source}__"
    tables = [n for n in store.table_names() if n.startswith(prefix)]
    return (tables[0][len(prefix):] if len(tables) == 1 else None), []


def _chunks_table(store: Store, source: str, strategy: str | None):
    if strategy is None:
        return None
    name = chunks_table_name(source, strategy)
    return store.db.open_table(name) if store.has_table(name) else None


# --- consistency -------------------------------------------------------------------------


@dataclass
class ConsistencyReport:
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
    dead_lettered: int = 0         # chunks without a vector because the model kept failing (in quarantine)
    chunking_strategies: int = 0
    counts_compared: bool = True   # False while chunks changed after the vectors (staleness's job)
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

    def metadata(self) -> dict[str, float | int]:
        return _numeric(asdict(self)) | {"problems": len(self.problems)}


class ConsistencyError(RuntimeError):
    """Raised instead of moving a serving pointer to an inconsistent table."""

    def __init__(self, report: ConsistencyReport):
        self.report = report
        super().__init__(
            f"refusing to serve {report.table_name}@v{report.table_version}: " + "; ".join(report.problems)
        )


def _scan_vectors(dataset, dimension: int, batch_size: int = 65536) -> tuple[int, int, int]:
    """(null, non-finite, zero-norm) vector counts, streaming the vector column."""
    nulls = nonfinite = zero = 0
    for batch in dataset.to_batches(columns=["vector"], batch_size=batch_size):
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


def consistency(
    store: Store,
    source: str,
    version_id: str,
    expected_dimension: int | None = None,
    *,
    at: str = "latest",
    check_pointer: bool = True,
) -> ConsistencyReport:
    """Is the vectors table of (source, model version) fit to serve?

    `at='latest'` checks the newest table version (what a refresh or migration is about to
    serve); `at='served'` checks the version the serving pointer pins (if it names this
    table). `check_pointer=False` skips the pointer test (used right before moving it).
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
    version, _ = _resolve_version(store, source, name, at)
    table = _open_version(store, name, version)
    report = ConsistencyReport(source, version_id, name, int(table.version))
    problems = report.problems

    rows = Store.read(table, ["chunk_id", "doc_id", "model_version"])
    report.vectors = rows.num_rows
    counts = pc.value_counts(rows.column("model_version")).to_pylist()
    report.model_versions = len(counts)
    report.foreign_rows = sum(c["counts"] for c in counts if c["values"] != version_id)
    if report.foreign_rows:
        found = sorted(str(c["values"]) for c in counts)
        problems.append(
            f"{report.foreign_rows} rows of a foreign model version in {name} (found {found}); "
            "one serving index must hold exactly one model version"
        )
    if report.vectors:
        report.duplicate_ids = report.vectors - int(pc.count_distinct(rows.column("chunk_id")).as_py())
    if report.duplicate_ids:
        problems.append(f"{report.duplicate_ids} duplicate chunk_id rows")

    report.dimension = int(table.schema.field("vector").type.list_size)
    if expected_dimension:
        report.expected_dimension = int(expected_dimension)
        if report.dimension != expected_dimension:
            problems.append(f"vector dimension {report.dimension} differs from the model's {expected_dimension}")
    report.null_vectors, report.nan_or_inf, report.zero_norm = _scan_vectors(table.to_lance(), report.dimension)
    if report.null_vectors:
        problems.append(f"{report.null_vectors} rows without a vector")
    if report.nan_or_inf:
        problems.append(f"{report.nan_or_inf} vectors with NaN or infinite values")
    if report.zero_norm:
        problems.append(f"{report.zero_norm} zero-norm vectors (cosine distance undefined)")

    strategy, strategies = _strategy_of(store, source, table)
    report.chunking_strategies = len(strategies)
    if len(strategies) > 1:
        problems.append(f"vectors of {len(strategies)} chunking strategies in one table: {strategies}")
    chunk_table = _chunks_table(store, source, strategy)
    report.chunks = chunk_table.count_rows() if chunk_table is not None else 0
    # Counts must agree once the vectors were synced after the chunks' last change. Chunks
    # changed later (or a pinned version older than the newest) is pending work: staleness.
    newest = version is None or version == store.db.open_table(name).version
    report.counts_compared = newest and (chunk_table is None or _version_time(chunk_table) <= _version_time(table))
    chunks_here, vectors_here = report.chunks, report.vectors
    if parse_shard_key(source).count > 1 and chunk_table is not None:  # other shards may be mid-way
        chunks_here = shard_rows(Store.read(chunk_table, ["doc_id"]), source).num_rows
        vectors_here = shard_rows(rows, source).num_rows
    if report.counts_compared and chunks_here > vectors_here:
        # Chunks the model kept failing on are set aside with their reason, not missing.
        report.dead_lettered = _dead_lettered(store, source, version_id, chunk_table, rows)
        vectors_here += report.dead_lettered
    if report.counts_compared and chunks_here != vectors_here:
        problems.append(f"{chunks_here} chunks but {vectors_here - report.dead_lettered} vectors"
                        + (f" and {report.dead_lettered} dead-lettered" if report.dead_lettered else ""))

    pointer = store.pointer(source)
    if pointer is not None and (pointer["table_name"] == name or pointer["model_version"] == version_id):
        report.serving = True
        if check_pointer:
            report.pointer_target_exists = _pointer_target_exists(store, pointer)
            if pointer["table_name"] != name:
                report.pointer_target_exists = False
                problems.append(f"pointer of {source} names model version {version_id} but table {pointer['table_name']}")
            elif not report.pointer_target_exists:
                problems.append(
                    f"serving pointer of {source} targets {pointer['table_name']}@v{pointer['table_version']}, "
                    "which no longer exists; roll back or rebuild the serving index"
                )
    report.seconds = time.perf_counter() - started
    return report


def _dead_lettered(store: Store, source: str, version_id: str, chunk_table, rows: pa.Table) -> int:
    """Chunks of this source without a vector whose dead-letter row for this version exists."""
    if not store.has_table("quarantine"):
        return 0
    have = set(rows.column("chunk_id").to_pylist())
    chunks = shard_rows(Store.read(chunk_table, ["chunk_id", "doc_id", "source"]), source).to_pylist()
    wanted = {dead_letter_id(c["source"], version_id, c["chunk_id"]) for c in chunks if c["chunk_id"] not in have}
    if not wanted:
        return 0
    found = Store.read(store.table("quarantine"), ["quarantine_id"], where=col("quarantine_id").isin(sorted(wanted)))
    return found.num_rows


def _pointer_target_exists(store: Store, pointer: dict[str, Any]) -> bool:
    return store.target_exists(pointer["table_name"], pointer["table_version"], pointer["tag"])


# --- quarantine ---------------------------------------------------------------------------


@dataclass
class QuarantineReport:
    """What the newest snapshot of a source set aside, counted by kind of reason."""

    source: str
    snapshot_id: str
    table_name: str = "quarantine"
    table_version: int = 0
    documents: int = 0
    quarantined: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    severity: str = OK
    problems: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, float | int]:
        share = self.quarantined / max(1, self.documents + self.quarantined)
        return {"documents": self.documents, "quarantined": self.quarantined, "quarantined_share": round(share, 4),
                **{f"reason_{kind}": n for kind, n in sorted(self.by_kind.items())}}


def reason_kind(reason: str) -> str:
    """`undecodable: ...` -> `undecodable`; the part before the colon names the kind."""
    return re.sub(r"[^a-z0-9]+", "_", reason.split(":", 1)[0].lower()).strip("_")[:40] or "other"


def quarantine(store: Store, source: str) -> QuarantineReport:
    """WARN when the newest snapshot of `source` quarantined documents, with the reasons."""
    snapshot = store.latest_snapshot(source)
    if snapshot is None:
        return QuarantineReport(source, "", severity=WARN, problems=[f"{source}: no snapshot yet"])
    report = QuarantineReport(source, snapshot["snapshot_id"], documents=int(snapshot["documents"]))
    if not store.has_table("quarantine"):
        return report
    table = store.table("quarantine")
    report.table_version = table.version
    rows = Store.read(table, ["doc_id", "reason"], where=(col("source") == lit(source))
                      & (col("snapshot_id") == lit(snapshot["snapshot_id"]))).to_pylist()
    rows = [r for r in rows if not r["reason"].startswith(DEAD_LETTER_REASON)]  # those belong to embeddings
    report.quarantined = len(rows)
    for row in rows:
        kind = reason_kind(row["reason"])
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
    if rows:
        report.severity = WARN
        examples = ", ".join(f"{r['doc_id']!r} ({r['reason'][:60]})" for r in rows[:3])
        report.problems.append(f"{len(rows)} documents quarantined in snapshot {snapshot['snapshot_id']}: {examples}")
    return report


# --- staleness ---------------------------------------------------------------------------


@dataclass
class StalenessReport:
    source: str
    version_id: str
    table_name: str
    table_version: int
    served: bool = False          # the pinned serving version was checked (else the latest)
    vectors: int = 0
    chunks: int = 0
    stale_changed: int = 0        # vectors whose document was re-chunked (chunk changed)
    stale_vanished: int = 0       # vectors whose document has no chunks any more
    missing_vectors: int = 0      # chunks without a vector
    snapshot_docs: int = 0        # documents in the newest snapshot
    deleted_docs_present: int = 0  # documents gone from the newest snapshot, still in the table
    changed_docs_present: int = 0  # documents whose content changed, old version still in the table
    unindexed_docs: int = 0       # documents of the newest snapshot without any vector
    stale_fraction: float = 0.0   # max(row share, document share) that is out of date
    lag_hours: float = 0.0        # how long the table has been behind the newest snapshot
    newest_snapshot_age_hours: float = 0.0
    seconds: float = 0.0
    severity: str = OK
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.severity == OK

    def metadata(self) -> dict[str, float | int]:
        return _numeric(asdict(self)) | {"problems": len(self.problems)}


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _version_time(table) -> datetime:
    """Commit time of the checked-out table version (lance reports naive local time)."""
    current = int(table.version)
    for entry in table.list_versions():
        if int(entry["version"]) == current:
            return entry["timestamp"].astimezone(timezone.utc)  # naive = local time, as astimezone assumes
    return utcnow()


def shard_rows(rows: pa.Table, source: str) -> pa.Table:
    """The rows (with a doc_id column) that belong to the shard `source` names; all if unsharded."""
    shard = parse_shard_key(source)
    if shard.count == 1:
        return rows
    return rows.filter(pa.array([shard.holds(d) for d in rows.column("doc_id").to_pylist()], pa.bool_()))


def _snapshots(store: Store, source: str) -> list[dict[str, Any]]:
    if not store.has_table("snapshots"):
        return []
    rows = Store.read(store.db.open_table("snapshots"), ["snapshot_id", "created_at"],
                      where=col("source") == lit(source)).to_pylist()
    return sorted(rows, key=lambda r: r["created_at"])


def staleness(
    store: Store,
    source: str,
    version_id: str,
    thresholds: ChecksConfig = ChecksConfig(),
    *,
    at: str = "latest",
    now: datetime | None = None,
    version: int | None = None,
) -> StalenessReport:
    """How far the vectors of (source, model version) are behind their chunks and snapshot.

    Row level (vectors vs the current chunks table): vectors whose chunk changed or vanished,
    chunks without a vector. Document level (vectors vs the newest snapshot): documents
    deleted or changed in the source but still present, documents without vectors. Time:
    `lag_hours` = time since the first snapshot the table does not reflect (0 when current).
    `at='served'` checks the version the serving pointer pins, if it names this table.
    """
    started = time.perf_counter()
    now = now or utcnow()
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        report = StalenessReport(source, version_id, name, 0, severity=ERROR)
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        return report
    if version is None:
        version, served = _resolve_version(store, source, name, at)
    else:  # a given table version (a rollback target)
        served = _served_version(store, source, name) == version
    table = _open_version(store, name, version)
    report = StalenessReport(source, version_id, name, int(table.version), served=served)
    # A shard answers for its own documents of the table its source's shards share.
    vectors = shard_rows(Store.read(table, ["chunk_id", "doc_id", "chunk_sha256", "doc_sha256"]), source)
    report.vectors = vectors.num_rows
    strategy, _ = _strategy_of(store, source, table)
    chunk_table = _chunks_table(store, source, strategy)
    chunk_columns = ["chunk_id", "doc_id", "chunk_sha256", "doc_sha256"]
    chunks = (shard_rows(Store.read(chunk_table, chunk_columns), source) if chunk_table is not None
              else pa.table({c: pa.array([], pa.string()) for c in chunk_columns}))
    report.chunks = chunks.num_rows

    # Row level. chunk_id hashes the chunk text, so a changed chunk has a new id: the old
    # vector is orphaned. Its document still having chunks means "changed", else "vanished".
    known = pc.is_in(vectors.column("chunk_id"), value_set=chunks.column("chunk_id"))
    orphans = vectors.filter(pc.invert(known))
    orphan_in_chunked_doc = pc.is_in(orphans.column("doc_id"), value_set=pc.unique(chunks.column("doc_id")))
    report.stale_changed = int(pc.sum(orphan_in_chunked_doc).as_py() or 0)
    report.stale_vanished = orphans.num_rows - report.stale_changed
    # same id with a different text hash cannot happen by construction; count it as changed
    if report.vectors and report.chunks:
        joined = vectors.select(["chunk_id", "chunk_sha256"]).join(
            chunks.select(["chunk_id", "chunk_sha256"]).rename_columns(["chunk_id", "chunk_sha256_now"]), "chunk_id")
        report.stale_changed += int(pc.sum(pc.not_equal(joined.column("chunk_sha256"),
                                                        joined.column("chunk_sha256_now"))).as_py() or 0)
    report.missing_vectors = int(pc.sum(pc.invert(pc.is_in(chunks.column("chunk_id"),
                                                           value_set=vectors.column("chunk_id")))).as_py() or 0)

    # Document level, against the newest snapshot.
    snapshots = _snapshots(store, source)
    if snapshots:
        newest = snapshots[-1]
        manifest = Store.read(store.db.open_table("snapshot_documents"), ["doc_id", "content_sha256"],
                              where=(col("source") == lit(source)) & (col("snapshot_id") == lit(newest["snapshot_id"])))
        report.snapshot_docs = manifest.num_rows
        # per document of the table: its doc_sha256 values (one, when all rows agree)
        per_doc = vectors.group_by("doc_id").aggregate([("doc_sha256", "min"), ("doc_sha256", "max")])
        per_doc = per_doc.join(manifest, "doc_id", join_type="left outer")
        in_source = pc.is_valid(per_doc.column("content_sha256"))
        report.deleted_docs_present = int(pc.sum(pc.invert(in_source)).as_py() or 0)
        same = pc.and_(pc.equal(per_doc.column("doc_sha256_min"), per_doc.column("content_sha256")),
                       pc.equal(per_doc.column("doc_sha256_max"), per_doc.column("content_sha256")))
        suspects = per_doc.filter(pc.and_(in_source, pc.invert(pc.fill_null(same, False))))
        if suspects.num_rows:
            # A changed document whose chunks partly kept their text keeps those vectors (same
            # chunk_id, old doc_sha256). It is current when its chunks are of the new version
            # and its vectors are exactly its chunks (no orphan, no missing vector).
            chunk_docs = chunks.group_by("doc_id").aggregate([("doc_sha256", "min"), ("doc_sha256", "max")])
            chunk_docs = chunk_docs.join(manifest, "doc_id", join_type="inner")
            chunks_current = chunk_docs.filter(pc.and_(
                pc.equal(chunk_docs.column("doc_sha256_min"), chunk_docs.column("content_sha256")),
                pc.equal(chunk_docs.column("doc_sha256_max"), chunk_docs.column("content_sha256"))))
            missing_docs = chunks.filter(pc.invert(pc.is_in(chunks.column("chunk_id"),
                                                            value_set=vectors.column("chunk_id")))).column("doc_id")
            mismatched = set(orphans.column("doc_id").to_pylist()) | set(missing_docs.to_pylist())
            current = set(chunks_current.column("doc_id").to_pylist()) - mismatched
            report.changed_docs_present = sum(1 for d in suspects.column("doc_id").to_pylist() if d not in current)
        report.unindexed_docs = int(pc.sum(pc.invert(pc.is_in(manifest.column("doc_id"),
                                                              value_set=per_doc.column("doc_id")))).as_py() or 0)
        behind = report.deleted_docs_present + report.changed_docs_present + report.unindexed_docs
        report.newest_snapshot_age_hours = max(0.0, (now - _as_utc(newest["created_at"])).total_seconds() / 3600)
        if behind:
            since = _version_time(table)
            later = [s for s in snapshots if _as_utc(s["created_at"]) > since]
            first_unreflected = _as_utc((later[0] if later else newest)["created_at"])
            report.lag_hours = max(0.0, (now - first_unreflected).total_seconds() / 3600)
    else:
        behind = 0

    out_of_date = report.stale_changed + report.stale_vanished + report.missing_vectors
    row_fraction = out_of_date / max(1, report.vectors + report.missing_vectors)  # share of all chunk ids seen
    doc_fraction = behind / max(1, report.snapshot_docs)
    report.stale_fraction = float(max(row_fraction, doc_fraction))

    t = thresholds
    what = "served" if served else "in the table"
    facts = []
    if report.stale_changed:
        facts.append(f"{report.stale_changed} vectors of changed chunks")
    if report.stale_vanished:
        facts.append(f"{report.stale_vanished} vectors of vanished chunks")
    if report.missing_vectors:
        facts.append(f"{report.missing_vectors} chunks without a vector")
    if report.deleted_docs_present:
        facts.append(f"{report.deleted_docs_present} documents deleted in the source still {what}")
    if report.changed_docs_present:
        facts.append(f"{report.changed_docs_present} changed documents still {what} in their old version")
    if report.unindexed_docs:
        facts.append(f"{report.unindexed_docs} documents of the newest snapshot without vectors")
    severity = OK
    if report.stale_fraction > t.stale_fraction_error:
        severity = ERROR
    elif report.stale_fraction > t.stale_fraction_warn:
        severity = WARN
    if report.lag_hours > t.lag_hours_error:
        severity = ERROR
    elif report.lag_hours > t.lag_hours_warn:
        severity = worst(severity, WARN)
    if severity != OK:
        report.problems.append(
            f"{report.stale_fraction:.1%} out of date (warn > {t.stale_fraction_warn:.1%}, "
            f"error > {t.stale_fraction_error:.1%}), {report.lag_hours:.2f} h behind the newest snapshot "
            f"(warn > {t.lag_hours_warn} h, error > {t.lag_hours_error} h)"
            + (": " + ", ".join(facts) if facts else "")
        )
    report.severity = severity
    report.seconds = time.perf_counter() - started
    return report


# --- ANN recall --------------------------------------------------------------------------


@dataclass
class AnnRecallReport:
    source: str
    version_id: str
    table_name: str
    table_version: int
    index_type: str = "exact"
    has_ann_index: bool = False
    rows: int = 0
    unindexed_rows: int = 0
    sample: int = 0
    k: int = 10
    recall: float = 1.0           # mean recall@k of the index against exact search
    min_query_recall: float = 1.0
    floor: float = 0.95
    ann_ms: float = 0.0           # mean latency per query
    exact_ms: float = 0.0
    seconds: float = 0.0
    note: str = ""
    severity: str = OK
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.severity == OK

    def metadata(self) -> dict[str, float | int]:
        return _numeric(asdict(self)) | {"problems": len(self.problems)}


def ann_recall(
    store: Store,
    source: str,
    version_id: str,
    thresholds: ChecksConfig = ChecksConfig(),
    *,
    at: str = "served",
    seed: int = 0,
    configure: Callable[[Any], Any] | None = None,
) -> AnnRecallReport:
    """Recall@k of the vector index against exact search, on the same table version.

    A sample of stored vectors are the queries (the query's own row is excluded from both
    result lists); ties at the k-th exact distance count as hits. Without an ANN index the
    search is exact, so recall is 1.0 by construction and `note` says so.
    ANN queries use the serving query settings (nprobes, refine_factor: core/indexing.py) unless
    `configure` overrides them.
    """
    started = time.perf_counter()
    t = thresholds
    name = vectors_table_name(source, version_id)
    if not store.has_table(name):
        report = AnnRecallReport(source, version_id, name, 0, severity=ERROR, floor=t.ann_recall_floor)
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        return report
    version, _ = _resolve_version(store, source, name, at)
    table = _open_version(store, name, version)
    k = t.ann_k
    report = AnnRecallReport(source, version_id, name, int(table.version), k=k, floor=t.ann_recall_floor)
    report.rows = table.count_rows()
    index = vector_index(table)
    if index is None or report.rows == 0:
        report.note = ("no ANN index (rows below serving.ann_min_rows): search is exact, recall 1.0 by construction"
                       if report.rows else "empty table")
        report.seconds = time.perf_counter() - started
        return report
    report.has_ann_index = True
    report.index_type = str(index.index_type)
    try:
        report.unindexed_rows = int(table.index_stats(index.name).num_unindexed_rows)
    except Exception:  # noqa: BLE001 - stats are informative only
        report.unindexed_rows = 0
    dataset = table.to_lance()
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(report.rows, size=min(t.ann_sample, report.rows), replace=False))
    sample = dataset.take(picks.tolist(), columns=["chunk_id", "vector"])
    report.sample = sample.num_rows
    ids = sample.column("chunk_id").to_pylist()
    vectors = [np.asarray(v, dtype=np.float32) for v in sample.column("vector").to_pylist()]
    # NaN/zero vectors are consistency's finding; they have no meaningful neighbours
    keep = [i for i, v in enumerate(vectors) if np.isfinite(v).all() and np.any(v)]
    ids, vectors = [ids[i] for i in keep], [vectors[i] for i in keep]
    recalls = []
    ann_seconds = exact_seconds = 0.0
    if vectors:
        # one batched exact scan for all queries: a flat scan per query costs ~1 s at 1M rows
        t0 = time.perf_counter()
        exact_all = (table.search(vectors if len(vectors) > 1 else vectors[0], vector_column_name="vector")
                     .metric("cosine").bypass_vector_index().select(["chunk_id"]).limit(k + 1).to_arrow())
        exact_seconds = time.perf_counter() - t0
        query_index = (exact_all.column("query_index").to_pylist() if "query_index" in exact_all.column_names
                       else [0] * exact_all.num_rows)
        exact_by_query: dict[int, list[tuple[str, float]]] = {}
        for qi, cid, dist in zip(query_index, exact_all.column("chunk_id").to_pylist(),
                                 exact_all.column("_distance").to_pylist()):
            exact_by_query.setdefault(qi, []).append((cid, dist))
    plan = served_plan(table)  # the serving query settings, read once for the whole sample
    for qi, (chunk_id, query) in enumerate(zip(ids, vectors)):
        t1 = time.perf_counter()
        ann_query = table.search(query, vector_column_name="vector").metric("cosine").select(["chunk_id"]).limit(k + 1)
        approx = (configure(ann_query) if configure else tuned(ann_query, plan)).to_list()
        ann_seconds += time.perf_counter() - t1
        exact = sorted((h for h in exact_by_query.get(qi, []) if h[0] != chunk_id), key=lambda h: h[1])[:k]
        approx = [h for h in approx if h["chunk_id"] != chunk_id][:k]
        if not exact:
            continue
        cutoff = exact[-1][1] + 1e-6
        exact_ids = {cid for cid, _ in exact}
        hits = sum(1 for h in approx if h["chunk_id"] in exact_ids or h["_distance"] <= cutoff)
        recalls.append(min(1.0, hits / len(exact)))
    if recalls:
        report.recall = float(np.mean(recalls))
        report.min_query_recall = float(np.min(recalls))
        report.ann_ms = 1000 * ann_seconds / len(recalls)
        report.exact_ms = 1000 * exact_seconds / len(recalls)
    report.sample = len(recalls)
    if report.recall < t.ann_recall_floor:
        report.severity = ERROR
        report.problems.append(
            f"ANN recall@{k} {report.recall:.3f} is below the floor {t.ann_recall_floor} "
            f"({report.index_type}, {report.sample} sampled queries); tune nprobes/refine_factor or rebuild the index"
        )
    report.seconds = time.perf_counter() - started
    return report


# --- retrieval recall against labels and its baseline -----------------------------------

BASELINES = pa.schema([
    pa.field("baseline_key", pa.string(), nullable=False), pa.field("source", pa.string()),
    pa.field("model_version", pa.string()), pa.field("check", pa.string()), pa.field("labels_sha256", pa.string()),
    pa.field("k", pa.int64()), pa.field("queries", pa.int64()), pa.field("recall", pa.float64()),
    pa.field("ndcg", pa.float64()), pa.field("context_recall", pa.float64()),
    pa.field("context_precision", pa.float64()), pa.field("table_version", pa.int64()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")), pa.field("run_id", pa.string()),
])
BASELINES_TABLE = "check_baselines"


def _baseline_key(source: str, version_id: str, check: str) -> str:
    return f"{source}:{version_id}:{check}"


def get_baseline(store: Store, source: str, version_id: str, check: str = "retrieval_recall") -> dict | None:
    if not store.has_table(BASELINES_TABLE):
        return None
    rows = Store.read(store.db.open_table(BASELINES_TABLE),
                      where=col("baseline_key") == lit(_baseline_key(source, version_id, check))).to_pylist()
    return rows[0] if rows else None


def record_baseline(store: Store, row: dict[str, Any]) -> None:
    row = dict(row, baseline_key=_baseline_key(row["source"], row["model_version"], row["check"]))
    table = store.table(BASELINES_TABLE, BASELINES, "baseline_key")
    store.upsert(table, pa.Table.from_pylist([row], schema=BASELINES), "baseline_key")


def reset_baseline(store: Store, source: str, version_id: str, check: str = "retrieval_recall") -> bool:
    """Forget a baseline: the next passing run sets a new one. Returns whether one existed."""
    if get_baseline(store, source, version_id, check) is None:
        return False
    store.delete_where_in(store.db.open_table(BASELINES_TABLE), "baseline_key",
                          [_baseline_key(source, version_id, check)])
    return True


def _load_ragas_id_metrics():
    """ragas' ID-based context recall and precision (no LLM involved).

    ragas 0.4.3 imports `langchain_community.chat_models.vertexai` at package import, a
    module newer langchain-community releases removed (vibrantlabsai/ragas#2745); ragas only
    uses that class in an isinstance list, so an empty stand-in is registered when it is
    missing. Usage tracking is switched off: nothing leaves this machine.
    """
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    shim = "langchain_community.chat_models.vertexai"
    if shim not in sys.modules:
        try:
            __import__(shim)
        except ImportError:
            module = types.ModuleType(shim)
            module.ChatVertexAI = type("ChatVertexAI", (), {})  # never instantiated
            sys.modules[shim] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas import SingleTurnSample
        from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall
    return SingleTurnSample, IDBasedContextRecall(), IDBasedContextPrecision()


def ragas_id_scores(rankings: Sequence[Sequence[str]], queries: Sequence[LabelledQuery]) -> tuple[float, float]:
    """Mean ragas ID-based context (recall, precision) of retrieved doc ids vs labelled ones."""
    sample_cls, recall_metric, precision_metric = _load_ragas_id_metrics()
    recalls, precisions = [], []
    for ranked, query in zip(rankings, queries):
        sample = sample_cls(retrieved_context_ids=list(ranked), reference_context_ids=sorted(query.relevant))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = recall_metric.single_turn_score(sample)
            p = precision_metric.single_turn_score(sample) if ranked else 0.0
        recalls.append(r)
        precisions.append(p)
    return float(np.nanmean(recalls)) if recalls else 0.0, float(np.nanmean(precisions)) if precisions else 0.0


QUERY_VECTORS = pa.schema([
    pa.field("query_key", pa.string(), nullable=False), pa.field("model_version", pa.string()),
    pa.field("vector", pa.list_(pa.float32())),
])
QUERY_VECTORS_TABLE = "check_query_vectors"


def cached_embedder(store: Store, version_id: str, embed: Callable[[list[str]], np.ndarray]):
    """Wrap `embed` with a LanceDB cache of query vectors keyed on (model version, text).

    Labelled queries rarely change while the index does after every refresh: with the cache a
    recall check needs no model at all (loading MiniLM alone takes ~5 s per process here).
    The version id names the weights and settings, so a cached vector is never stale.
    """

    def key(text: str) -> str:
        return f"{version_id}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]}"

    def run(texts: list[str]) -> list[np.ndarray]:
        keys = [key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        if store.has_table(QUERY_VECTORS_TABLE):
            table = store.db.open_table(QUERY_VECTORS_TABLE)
            unique = sorted(set(keys))
            for start in range(0, len(unique), 5000):
                rows = Store.read(table, ["query_key", "vector"], where=col("query_key").isin(unique[start:start + 5000]))
                for k, v in zip(rows.column("query_key").to_pylist(), rows.column("vector").to_pylist()):
                    found[k] = np.asarray(v, dtype=np.float32)
        todo: dict[str, int] = {}  # one embedding per distinct uncached text
        for i, k in enumerate(keys):
            if k not in found and k not in todo:
                todo[k] = i
        missing = list(todo.values())
        if missing:
            vectors = np.asarray(embed([texts[i] for i in missing]), dtype=np.float32)
            rows = [{"query_key": keys[i], "model_version": version_id, "vector": v.tolist()}
                    for i, v in zip(missing, vectors)]
            table = store.table(QUERY_VECTORS_TABLE, QUERY_VECTORS, "query_key")
            store.upsert(table, pa.Table.from_pylist(rows, schema=QUERY_VECTORS), "query_key")
            found.update({keys[i]: v for i, v in zip(missing, vectors)})
        return [found[k] for k in keys]

    return run


def labels_sha256(queries: Sequence[LabelledQuery]) -> str:
    payload = json.dumps([[q.query_id, q.text, sorted(q.relevant.items())] for q in queries], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class RetrievalReport:
    source: str
    version_id: str
    table_name: str
    table_version: int
    served: bool = False
    queries: int = 0
    k: int = 10
    recall: float = 0.0
    ndcg: float = 0.0
    context_recall: float = 0.0      # ragas IDBasedContextRecall, mean over queries
    context_precision: float = 0.0   # ragas IDBasedContextPrecision, mean over queries
    has_baseline: bool = False
    baseline_recorded: bool = False  # this run set the baseline
    baseline_recall: float = 0.0
    baseline_ndcg: float = 0.0
    recall_drop_points: float = 0.0  # (baseline - current) * 100; negative = improved
    ndcg_drop_points: float = 0.0
    seconds: float = 0.0
    note: str = ""
    severity: str = OK
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.severity == OK

    def metadata(self) -> dict[str, float | int]:
        return _numeric(asdict(self)) | {"problems": len(self.problems)}


def retrieval_recall(
    store: Store,
    source: str,
    version_id: str,
    queries: Sequence[LabelledQuery],
    embed: Callable[[list[str]], np.ndarray],
    thresholds: ChecksConfig = ChecksConfig(),
    *,
    at: str = "served",
    run_id: str = "",
    record: bool = True,
    cache_queries: bool = True,
) -> RetrievalReport:
    """recall@k, nDCG@k and ragas ID-based context recall/precision on labelled queries.

    Retrieval goes through the served table version (or the latest, for a shadow version),
    exactly as serving searches it. The first passing result is stored as the baseline of
    (source, model version); later runs report their drop against it: more than
    `recall_drop_warn_points` is WARN, more than `recall_drop_error_points` ERROR. A changed
    label set starts a new baseline. Query vectors are cached per model version
    (`cached_embedder`), so `embed` is called only for queries never seen before.
    """
    started = time.perf_counter()
    t = thresholds
    name = vectors_table_name(source, version_id)
    if not queries:
        report = RetrievalReport(source, version_id, name, 0, k=t.recall_k,
                                 note="no labelled queries for this source (add a canary file or BEIR qrels)")
        return report
    if not store.has_table(name):
        report = RetrievalReport(source, version_id, name, 0, k=t.recall_k, severity=ERROR)
        report.problems.append(f"table {name} does not exist; materialize embeddings first")
        return report
    version, served = _resolve_version(store, source, name, at)
    table = _open_version(store, name, version)
    report = RetrievalReport(source, version_id, name, int(table.version), served=served, k=t.recall_k)
    inner = table_retriever(table, cached_embedder(store, version_id, embed) if cache_queries else embed, t.recall_k)
    rankings: list[list[str]] = []

    def retrieve(qs: Sequence[LabelledQuery]) -> list[list[str]]:
        ranked = inner(qs)
        rankings.extend(ranked)
        return ranked

    result = evaluate(queries, retrieve, t.recall_k)
    report.queries, report.recall, report.ndcg = result.queries, result.recall, result.ndcg
    report.context_recall, report.context_precision = ragas_id_scores(rankings, queries)

    labels = labels_sha256(queries)
    baseline = get_baseline(store, source, version_id)
    if baseline is not None and (baseline["labels_sha256"] != labels or baseline["k"] != t.recall_k):
        report.note = "labelled queries or k changed since the baseline; a new baseline starts"
        baseline = None
    severity = OK
    if report.recall < t.min_recall:
        severity = ERROR
        report.problems.append(f"recall@{t.recall_k} {report.recall:.3f} is below the floor {t.min_recall}")
    if baseline is not None:
        report.has_baseline = True
        report.baseline_recall, report.baseline_ndcg = baseline["recall"], baseline["ndcg"]
        report.recall_drop_points = 100 * (baseline["recall"] - report.recall)
        report.ndcg_drop_points = 100 * (baseline["ndcg"] - report.ndcg)
        drop = max(report.recall_drop_points, report.ndcg_drop_points)
        level = ERROR if drop > t.recall_drop_error_points else WARN if drop > t.recall_drop_warn_points else OK
        if level != OK:
            report.problems.append(
                f"retrieval dropped {drop:.1f} points below its baseline (recall@{t.recall_k} "
                f"{report.recall:.3f} vs {baseline['recall']:.3f}, nDCG {report.ndcg:.3f} vs {baseline['ndcg']:.3f}; "
                f"warn > {t.recall_drop_warn_points}, error > {t.recall_drop_error_points} points)"
            )
        severity = worst(severity, level)
    elif severity == OK and record:
        record_baseline(store, {
            "source": source, "model_version": version_id, "check": "retrieval_recall", "labels_sha256": labels,
            "k": t.recall_k, "queries": report.queries, "recall": report.recall, "ndcg": report.ndcg,
            "context_recall": report.context_recall, "context_precision": report.context_precision,
            "table_version": report.table_version, "created_at": utcnow(), "run_id": run_id,
        })
        report.has_baseline = report.baseline_recorded = True
        report.baseline_recall, report.baseline_ndcg = report.recall, report.ndcg
    report.severity = severity
    report.seconds = time.perf_counter() - started
    return report
