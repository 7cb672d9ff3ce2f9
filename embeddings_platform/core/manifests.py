"""Snapshot manifests as a full manifest plus deltas, so a snapshot writes only what changed.

A snapshot that read only part of its source (the entries whose stamp moved) records what
changed against the snapshot before it, its base: the documents added, changed or removed
(`snapshot_documents`, `removed` set for a document gone) and the stamps of the entries it read
(`snapshot_entries`). Its manifest is its base's with its own rows on top. After MAX_CHAIN
deltas, or once they hold more rows than MAX_DELTA_SHARE of the documents, a snapshot is
written in full again, so a manifest is read in one pass over a full manifest and a few small
deltas. Rows are keyed by their snapshot and never changed afterwards, so a run reading one
snapshot is never disturbed by a run writing the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from .filters import equal, one_of
from .sharding import owner
from .store import DEAD_LETTER_REASON, Store

MAX_CHAIN = 16
MAX_DELTA_SHARE = 0.2
MIN_DELTA_ROWS = 1000  # a small source keeps its deltas too: they cost nothing to read
MANIFEST_COLUMNS = ["doc_id", "content_sha256", "metadata_json", "entry"]
_SELECTIVE = 20_000  # above this many values, one pass over the chain filters in memory


def snapshot_rows(store: Store, source: str) -> list[dict[str, Any]]:
    """Every recorded snapshot of a source partition, oldest first."""
    if not store.has_table("snapshots"):
        return []
    rows = Store.read(store.open_table("snapshots"), where=equal(source=source)).to_pylist()
    return sorted(rows, key=lambda r: r["created_at"])


def recorded_upstream(store: Store, source: str, snapshot_id: str) -> dict[str, Any]:
    """What a snapshot recorded of its upstream (an Iceberg table's snapshot id, a watermark):
    the version of the source it was read at. A shard's snapshot is recorded under the shard's
    partition key: any partition of the source will do."""
    if not store.has_table("snapshots"):
        return {}
    recorded = Store.read(
        store.open_table("snapshots"),
        ["source", "state_json"],
        where=equal(snapshot_id=snapshot_id),
    ).to_pylist()
    for snapshot in recorded:
        if owner(snapshot["source"]) == owner(source) and snapshot["state_json"]:
            return json.loads(snapshot["state_json"]).get("kind", {})
    return {}


def chain(rows: list[dict[str, Any]], snapshot_id: str) -> list[str]:
    """The snapshot ids whose rows make up the manifest of `snapshot_id`, the full one first.

    An id recorded twice (content that came back) is written in full the second time, and a
    full record is preferred: every row kept under one id agrees with that id's content."""
    by_id: dict[str, dict] = {}
    for row in rows:  # oldest first: a later record of an id wins unless the earlier is full
        if row["snapshot_id"] not in by_id or row.get("base_snapshot_id") is None:
            by_id[row["snapshot_id"]] = row
    ids: list[str] = []
    current: str | None = snapshot_id
    while current is not None and current in by_id and current not in ids:
        ids.append(current)
        current = by_id[current].get("base_snapshot_id")
    return ids[::-1]


def newest(rows: pa.Table, key: str, ids: list[str]) -> pa.Table:
    """Each key's row from the newest snapshot of the chain that has one.

    The first snapshot of a chain holds each key once (most of the rows: it is the full
    manifest); only the few rows of the deltas on top are grouped, and the base's rows of the
    keys they name are dropped."""
    if len(ids) <= 1 or rows.num_rows == 0:
        return rows
    in_base = pc.equal(rows.column("snapshot_id"), pa.scalar(ids[0], pa.string()))
    base, deltas = rows.filter(in_base), rows.filter(pc.invert(in_base))
    if deltas.num_rows == 0:
        return base
    position = pc.index_in(deltas.column("snapshot_id"), value_set=pa.array(ids))
    deltas = deltas.append_column("_position", position)
    latest = deltas.group_by(key).aggregate([("_position", "max")])
    deltas = deltas.join(
        latest, keys=[key, "_position"], right_keys=[key, "_position_max"], join_type="inner"
    ).select(rows.column_names)
    base = base.filter(pc.invert(pc.is_in(base.column(key), value_set=deltas.column(key))))
    return pa.concat_tables([base, deltas])


def _present(rows: pa.Table) -> pa.Table:
    if "removed" not in rows.column_names:
        return rows
    return rows.filter(pc.invert(pc.fill_null(rows.column("removed"), False)))


def _read(store: Store, table: str, source: str, ids: list[str], columns, where=None):
    """Rows of the chain's snapshots; a column a table made before it existed reads as null."""
    if not ids or not store.has_table(table):
        return None
    scope = equal(source=source) & one_of("snapshot_id", ids)
    handle = store.open_table(table)
    columns = list(dict.fromkeys([*columns, "snapshot_id"]))
    present = [c for c in columns if c in handle.schema.names]
    rows = Store.read(handle, present, where=scope if where is None else scope & where)
    for column in columns:
        if column not in present:
            kind = pa.bool_() if column == "removed" else pa.string()
            rows = rows.append_column(column, pa.nulls(rows.num_rows, kind))
    return rows.select(columns)


def manifest(
    store: Store, source: str, snapshot_id: str, columns: Iterable[str] = MANIFEST_COLUMNS
) -> pa.Table:
    """The documents of a snapshot (doc_id, content hash, metadata, entry by default)."""
    columns = list(columns)
    ids = chain(snapshot_rows(store, source), snapshot_id)
    rows = _read(store, "snapshot_documents", source, ids, [*columns, "doc_id", "removed"])
    if rows is None:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return _present(newest(rows, "doc_id", ids)).select(columns)


def documents_where(
    store: Store, source: str, ids: list[str], column: str, values: set[str]
) -> pa.Table:
    """The manifest rows (MANIFEST_COLUMNS) of the documents whose `column` is one of values.

    By entry, a document may have moved to another entry later in the chain: only its newest
    row counts, so candidates are looked up again by doc id."""
    if not values:
        return pa.table({c: pa.array([], pa.string()) for c in MANIFEST_COLUMNS})
    wanted = [*MANIFEST_COLUMNS, "removed"]
    if len(values) > _SELECTIVE:
        rows = _read(store, "snapshot_documents", source, ids, wanted)
    else:
        rows = _read(store, "snapshot_documents", source, ids, wanted, one_of(column, values))
        if rows is not None and column != "doc_id" and len(ids) > 1 and rows.num_rows:
            candidates = pc.unique(rows.column("doc_id")).to_pylist()
            rows = _read(
                store, "snapshot_documents", source, ids, wanted, one_of("doc_id", candidates)
            )
    if rows is None:
        return documents_where(store, source, ids, column, set())
    rows = _present(newest(rows, "doc_id", ids))
    return rows.filter(pc.is_in(rows.column(column), value_set=pa.array(sorted(values))))


@dataclass
class Previous:
    """What the last snapshot of a source partition recorded, loaded as far as a kind asks
    (core/sources/base.py: PreviousRead)."""

    store: Store
    source: str
    row: dict[str, Any]
    ids: list[str]
    state: dict[str, Any] = field(default_factory=dict)  # what the source kind remembered
    settings: str = ""  # the settings it was read with (a partial read must not straddle two)
    recorded: frozenset[str] = frozenset()  # every snapshot id the partition recorded so far

    @classmethod
    def load(cls, store: Store, source: str) -> "Previous | None":
        rows = snapshot_rows(store, source)
        if not rows:
            return None
        row = rows[-1]
        recorded = json.loads(row.get("state_json") or "{}")
        ids = chain(rows, row["snapshot_id"])
        return cls(
            store,
            source,
            row,
            ids,
            recorded.get("kind", {}),
            recorded.get("settings", ""),
            frozenset(r["snapshot_id"] for r in rows),
        )

    @property
    def incremental(self) -> bool:
        """Made by this snapshot format (its content sum and kind state are recorded)."""
        return bool(self.row.get("content_sum")) and self.row.get("state_json") is not None

    def stamps(self) -> dict[str, str]:
        rows = _read(self.store, "snapshot_entries", self.source, self.ids, ["entry", "stamp"])
        if rows is None:
            return {}
        rows = newest(rows, "entry", self.ids)
        rows = rows.filter(pc.is_valid(rows.column("stamp")))
        return dict(zip(rows.column("entry").to_pylist(), rows.column("stamp").to_pylist()))

    def keys(self) -> pa.Array:
        """The doc ids of the snapshot and the entries of its quarantined documents."""
        docs = manifest(self.store, self.source, self.row["snapshot_id"], ["doc_id"])
        quarantined = [q["entry"] for q in self.quarantined if q.get("entry")]
        return pa.concat_arrays(
            [docs.column("doc_id").combine_chunks(), pa.array(quarantined, pa.string())]
        )

    def known(self, keys: set[str]) -> set[str]:
        """Which of these doc ids the snapshot had, as documents or quarantined entries."""
        docs = documents_where(self.store, self.source, self.ids, "doc_id", keys)
        quarantined = {q["entry"] for q in self.quarantined if q.get("entry") in keys}
        return set(docs.column("doc_id").to_pylist()) | quarantined

    @cached_property
    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine rows of the snapshot's documents (not the model's dead letters)."""
        if not self.store.has_table("quarantine"):
            return []
        rows = Store.read(
            self.store.table("quarantine"),
            where=equal(source=self.source, snapshot_id=self.row["snapshot_id"]),
        ).to_pylist()
        return [r for r in rows if not (r["reason"] or "").startswith(DEAD_LETTER_REASON)]

    def documents(self, column: str, values: set[str] | None) -> pa.Table:
        """Manifest rows of the documents whose `column` is one of values (None: all)."""
        if values is None:
            return manifest(self.store, self.source, self.row["snapshot_id"])
        return documents_where(self.store, self.source, self.ids, column, values)

    def stamps_of(self, entries: set[str]) -> dict[str, str]:
        """The recorded stamps of these entries (the ones gone or never recorded are absent)."""
        if not entries:
            return {}
        where = None if len(entries) > _SELECTIVE else one_of("entry", entries)
        rows = _read(
            self.store, "snapshot_entries", self.source, self.ids, ["entry", "stamp"], where
        )
        if rows is None:
            return {}
        rows = newest(rows, "entry", self.ids)
        rows = rows.filter(
            pc.and_(
                pc.is_valid(rows.column("stamp")),
                pc.is_in(rows.column("entry"), value_set=pa.array(sorted(entries), pa.string())),
            )
        )
        return dict(zip(rows.column("entry").to_pylist(), rows.column("stamp").to_pylist()))

    def entries(self) -> pa.Table:
        """Every entry's newest stamp row (entry, stamp; stamp None when gone)."""
        rows = _read(self.store, "snapshot_entries", self.source, self.ids, ["entry", "stamp"])
        if rows is None:
            return pa.table(
                {"entry": pa.array([], pa.string()), "stamp": pa.array([], pa.string())}
            )
        return newest(rows, "entry", self.ids).select(["entry", "stamp"])
