"""Staleness: how far vectors are behind their chunks and the newest snapshot, and for how long."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ..config import ChecksConfig
from ..manifests import manifest as snapshot_manifest
from ..store import Store, utcnow, vectors_table_name
from .common import (
    ERROR,
    OK,
    WARN,
    Report,
    as_utc,
    chunks_table,
    resolve_version,
    served_version,
    shard_rows,
    snapshots_of,
    strategy_of,
    version_time,
    worst,
)


@dataclass
class StalenessReport(Report):
    source: str
    version_id: str
    table_name: str
    table_version: int
    served: bool = False  # the pinned serving version was checked (else the latest)
    vectors: int = 0
    chunks: int = 0
    stale_changed: int = 0  # vectors whose document was re-chunked (chunk changed)
    stale_vanished: int = 0  # vectors whose document has no chunks any more
    missing_vectors: int = 0  # chunks without a vector
    snapshot_docs: int = 0  # documents in the newest snapshot
    deleted_docs_present: int = 0  # documents gone from the newest snapshot, still in the table
    changed_docs_present: int = 0  # documents whose content changed, old version still in the table
    unindexed_docs: int = 0  # documents of the newest snapshot without any vector
    stale_fraction: float = 0.0  # max(row share, document share) that is out of date
    lag_hours: float = 0.0  # how long the table has been behind the newest snapshot
    newest_snapshot_age_hours: float = 0.0
    seconds: float = 0.0
    severity: str = OK
    problems: list[str] = field(default_factory=list)


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
        version, served = resolve_version(store, source, name, at)
    else:  # a given table version (a rollback target)
        served = served_version(store, source, name) == version
    table = store.open_table(name, version)
    report = StalenessReport(source, version_id, name, int(table.version), served=served)
    # A shard answers for its own documents of the table its source's shards share.
    vectors = shard_rows(
        Store.read(table, ["chunk_id", "doc_id", "chunk_sha256", "doc_sha256"]), source
    )
    report.vectors = vectors.num_rows
    strategy, _ = strategy_of(store, source, table)
    chunk_table = chunks_table(store, source, strategy)
    chunk_columns = ["chunk_id", "doc_id", "chunk_sha256", "doc_sha256"]
    chunks = (
        shard_rows(Store.read(chunk_table, chunk_columns), source)
        if chunk_table is not None
        else pa.table({c: pa.array([], pa.string()) for c in chunk_columns})
    )
    report.chunks = chunks.num_rows

    # Row level. chunk_id hashes the chunk text, so a changed chunk has a new id: the old
    # vector is orphaned. Its document still having chunks means "changed", else "vanished".
    known = pc.is_in(vectors.column("chunk_id"), value_set=chunks.column("chunk_id"))
    orphans = vectors.filter(pc.invert(known))
    orphan_in_chunked_doc = pc.is_in(
        orphans.column("doc_id"), value_set=pc.unique(chunks.column("doc_id"))
    )
    report.stale_changed = int(pc.sum(orphan_in_chunked_doc).as_py() or 0)
    report.stale_vanished = orphans.num_rows - report.stale_changed
    # same id with a different text hash cannot happen by construction; count it as changed
    if report.vectors and report.chunks:
        joined = vectors.select(["chunk_id", "chunk_sha256"]).join(
            chunks.select(["chunk_id", "chunk_sha256"]).rename_columns(
                ["chunk_id", "chunk_sha256_now"]
            ),
            "chunk_id",
        )
        report.stale_changed += int(
            pc.sum(
                pc.not_equal(joined.column("chunk_sha256"), joined.column("chunk_sha256_now"))
            ).as_py()
            or 0
        )
    report.missing_vectors = int(
        pc.sum(
            pc.invert(pc.is_in(chunks.column("chunk_id"), value_set=vectors.column("chunk_id")))
        ).as_py()
        or 0
    )

    # Document level, against the newest snapshot.
    snapshots = snapshots_of(store, source)
    if snapshots:
        newest = snapshots[-1]
        manifest = snapshot_manifest(
            store, source, newest["snapshot_id"], ["doc_id", "content_sha256"]
        )
        report.snapshot_docs = manifest.num_rows
        # per document of the table: its doc_sha256 values (one, when all rows agree)
        per_doc = vectors.group_by("doc_id").aggregate(
            [("doc_sha256", "min"), ("doc_sha256", "max")]
        )
        per_doc = per_doc.join(manifest, "doc_id", join_type="left outer")
        in_source = pc.is_valid(per_doc.column("content_sha256"))
        report.deleted_docs_present = int(pc.sum(pc.invert(in_source)).as_py() or 0)
        same = pc.and_(
            pc.equal(per_doc.column("doc_sha256_min"), per_doc.column("content_sha256")),
            pc.equal(per_doc.column("doc_sha256_max"), per_doc.column("content_sha256")),
        )
        suspects = per_doc.filter(pc.and_(in_source, pc.invert(pc.fill_null(same, False))))
        if suspects.num_rows:
            # A changed document whose chunks partly kept their text keeps those vectors (same
            # chunk_id, old doc_sha256). It is current when its chunks are of the new version
            # and its vectors are exactly its chunks (no orphan, no missing vector).
            chunk_docs = chunks.group_by("doc_id").aggregate(
                [("doc_sha256", "min"), ("doc_sha256", "max")]
            )
            chunk_docs = chunk_docs.join(manifest, "doc_id", join_type="inner")
            chunks_current = chunk_docs.filter(
                pc.and_(
                    pc.equal(
                        chunk_docs.column("doc_sha256_min"), chunk_docs.column("content_sha256")
                    ),
                    pc.equal(
                        chunk_docs.column("doc_sha256_max"), chunk_docs.column("content_sha256")
                    ),
                )
            )
            missing_docs = chunks.filter(
                pc.invert(pc.is_in(chunks.column("chunk_id"), value_set=vectors.column("chunk_id")))
            ).column("doc_id")
            mismatched = set(orphans.column("doc_id").to_pylist()) | set(missing_docs.to_pylist())
            current = set(chunks_current.column("doc_id").to_pylist()) - mismatched
            report.changed_docs_present = sum(
                1 for d in suspects.column("doc_id").to_pylist() if d not in current
            )
        report.unindexed_docs = int(
            pc.sum(
                pc.invert(pc.is_in(manifest.column("doc_id"), value_set=per_doc.column("doc_id")))
            ).as_py()
            or 0
        )
        behind = report.deleted_docs_present + report.changed_docs_present + report.unindexed_docs
        report.newest_snapshot_age_hours = max(
            0.0, (now - as_utc(newest["created_at"])).total_seconds() / 3600
        )
        if behind:
            since = version_time(table)
            later = [s for s in snapshots if as_utc(s["created_at"]) > since]
            first_unreflected = as_utc((later[0] if later else newest)["created_at"])
            report.lag_hours = max(0.0, (now - first_unreflected).total_seconds() / 3600)
    else:
        behind = 0

    out_of_date = report.stale_changed + report.stale_vanished + report.missing_vectors
    row_fraction = out_of_date / max(
        1, report.vectors + report.missing_vectors
    )  # share of all chunk ids seen
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
        facts.append(
            f"{report.changed_docs_present} changed documents still {what} in their old version"
        )
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
            f"error > {t.stale_fraction_error:.1%}), "
            f"{report.lag_hours:.2f} h behind the newest snapshot "
            f"(warn > {t.lag_hours_warn} h, error > {t.lag_hours_error} h)"
            + (": " + ", ".join(facts) if facts else "")
        )
    report.severity = severity
    report.seconds = time.perf_counter() - started
    return report
