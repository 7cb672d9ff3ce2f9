"""Snapshot manifests as a full manifest plus deltas, so a snapshot writes only what changed.

A snapshot that read only part of its source (the entries whose stamp moved) records what
changed against the snapshot before it, its base: the documents added, changed or removed
(`snapshot_documents`, `removed` set for a document gone) and the stamps of the entries it read
(`snapshot_entries`). Its manifest is its base's with its own rows on top. After MAX_CHAIN
deltas, or once they hold more rows than MAX_DELTA_SHARE of the documents, a snapshot is
written in full again, so a manifest is read in one pass over a full manifest and a few small
deltas. Rows are never changed afterwards, so a run reading one snapshot is never disturbed by a
run writing the next.

Rows carry the key of the snapshot row that publishes them (`snapshot_key`; its state says
KEYED_ROWS), and a chain reads only its snapshot rows' keys: rows of a write killed before its
snapshot row, or of a second write of the same snapshot id, are never read. So they are
appended, with no merge against every row recorded before. Rows written before this have no key
and are read by snapshot id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from .filters import equal
from .sharding import owner
from .store import DEAD_LETTER_REASON, Store

MAX_CHAIN = 16
MAX_DELTA_SHARE = 0.2
MIN_DELTA_ROWS = 1000  # a small source keeps its deltas too: they cost nothing to read
MANIFEST_COLUMNS = ["doc_id", "content_sha256", "metadata_json", "entry"]
_SELECTIVE = 20_000  # above this many values, one pass over the chain filters in memory
KEYED_ROWS = "keyed_rows"  # in a snapshot row's state: its manifest rows carry its key

# The snapshots of a chain, full one first: (snapshot id, the key its rows carry or None when
# they were written before rows carried one).
Scope = list[tuple[str, "str | None"]]


def snapshot_rows(store: Store, source: str) -> list[dict[str, Any]]:
    """Every recorded snapshot of a source partition, oldest first."""
    snapshots = store.existing("snapshots")  # one open, no listing of every table first
    if snapshots is None:
        return []
    rows = Store.read(snapshots, where=equal(source=source)).to_pylist()
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
    """The snapshot ids whose rows make up the manifest of `snapshot_id`, the full one first."""
    return [i for i, _ in scope(rows, snapshot_id)]


def scope(rows: list[dict[str, Any]], snapshot_id: str) -> Scope:
    """The snapshots whose rows make up the manifest of `snapshot_id`, the full one first, each
    with the key its rows carry.

    An id recorded twice (content that came back) is written in full the second time, and a
    full record is preferred: every row kept under one id agrees with that id's content."""
    by_id: dict[str, dict] = {}
    for row in rows:  # oldest first: a later record of an id wins unless the earlier is full
        if row["snapshot_id"] not in by_id or row.get("base_snapshot_id") is None:
            by_id[row["snapshot_id"]] = row
    links: Scope = []
    current: str | None = snapshot_id
    while current is not None and current in by_id and current not in dict(links):
        row = by_id[current]
        keyed = json.loads(row.get("state_json") or "{}").get(KEYED_ROWS)
        links.append((current, row["snapshot_key"] if keyed else None))
        current = row.get("base_snapshot_id")
    return links[::-1]


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


def _read(store: Store, table: str, source: str, links: Scope, columns, within=None):
    """Rows of the chain's snapshots, each written by the snapshot row the chain names (not a
    killed or a concurrent write of the same id); a column a table made before it existed
    reads as null."""
    handle = store.existing(table) if links else None
    if handle is None:
        return None
    names = handle.schema.names
    columns = list(dict.fromkeys([*columns, "snapshot_id"]))
    keyed = "snapshot_key" in names
    present = [c for c in columns if c in names] + (["snapshot_key"] if keyed else [])
    ids = {"snapshot_id": [i for i, _ in links]}
    rows = Store.read_in(handle, present, {**(within or {}), **ids}, source=source)
    if keyed:  # a row carries the key of the snapshot row it was written for, or none (older)
        key = rows.column("snapshot_key")
        published = pa.array([k for _, k in links if k], pa.string())
        unkeyed = pa.array([i for i, k in links if not k], pa.string())
        mine = pc.if_else(
            pc.is_null(key),
            pc.is_in(rows.column("snapshot_id"), value_set=unkeyed),
            pc.is_in(key, value_set=published),
        )
        rows = rows.filter(mine)
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
    links = scope(snapshot_rows(store, source), snapshot_id)
    rows = _read(store, "snapshot_documents", source, links, [*columns, "doc_id", "removed"])
    if rows is None:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return _present(newest(rows, "doc_id", [i for i, _ in links])).select(columns)


def documents_where(
    store: Store, source: str, links: Scope, column: str, values: set[str]
) -> pa.Table:
    """The manifest rows (MANIFEST_COLUMNS) of the documents whose `column` is one of values.

    By entry, a document may have moved to another entry later in the chain: only its newest
    row counts, so candidates are looked up again by doc id."""
    if not values:
        return pa.table({c: pa.array([], pa.string()) for c in MANIFEST_COLUMNS})
    wanted = [*MANIFEST_COLUMNS, "removed"]
    ids = [i for i, _ in links]
    if len(values) > _SELECTIVE:
        rows = _read(store, "snapshot_documents", source, links, wanted)
    else:
        rows = _read(store, "snapshot_documents", source, links, wanted, {column: values})
        if rows is not None and column != "doc_id" and len(ids) > 1 and rows.num_rows:
            candidates = pc.unique(rows.column("doc_id")).to_pylist()
            rows = _read(store, "snapshot_documents", source, links, wanted, {"doc_id": candidates})
    if rows is None:
        return documents_where(store, source, links, column, set())
    rows = _present(newest(rows, "doc_id", ids))
    return rows.filter(pc.is_in(rows.column(column), value_set=pa.array(sorted(values))))


@dataclass
class Previous:
    """What the last snapshot of a source partition recorded, loaded as far as a kind asks
    (core/sources/base.py: PreviousRead)."""

    store: Store
    source: str
    row: dict[str, Any]
    links: Scope  # the snapshots its manifest is read from (core/manifests.py: scope)
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
        return cls(
            store,
            source,
            row,
            scope(rows, row["snapshot_id"]),
            recorded.get("kind", {}),
            recorded.get("settings", ""),
            frozenset(r["snapshot_id"] for r in rows),
        )

    @property
    def ids(self) -> list[str]:
        return [i for i, _ in self.links]

    @property
    def incremental(self) -> bool:
        """Made by this snapshot format (its content sum and kind state are recorded)."""
        return bool(self.row.get("content_sum")) and self.row.get("state_json") is not None

    def stamps(self) -> dict[str, str]:
        rows = _read(self.store, "snapshot_entries", self.source, self.links, ["entry", "stamp"])
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
        docs = documents_where(self.store, self.source, self.links, "doc_id", keys)
        quarantined = {q["entry"] for q in self.quarantined if q.get("entry") in keys}
        return set(docs.column("doc_id").to_pylist()) | quarantined

    @cached_property
    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine rows of the snapshot's documents (not the model's dead letters)."""
        quarantine = self.store.existing("quarantine")
        if quarantine is None:
            return []
        rows = Store.read(
            quarantine,
            where=equal(source=self.source, snapshot_id=self.row["snapshot_id"]),
        ).to_pylist()
        return [r for r in rows if not (r["reason"] or "").startswith(DEAD_LETTER_REASON)]

    def documents(self, column: str, values: set[str] | None) -> pa.Table:
        """Manifest rows of the documents whose `column` is one of values (None: all)."""
        if values is None:
            return manifest(self.store, self.source, self.row["snapshot_id"])
        return documents_where(self.store, self.source, self.links, column, values)

    def stamps_of(self, entries: set[str]) -> dict[str, str]:
        """The recorded stamps of these entries (the ones gone or never recorded are absent)."""
        if not entries:
            return {}
        within = None if len(entries) > _SELECTIVE else {"entry": entries}
        rows = _read(
            self.store, "snapshot_entries", self.source, self.links, ["entry", "stamp"], within
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
        rows = _read(self.store, "snapshot_entries", self.source, self.links, ["entry", "stamp"])
        if rows is None:
            return pa.table(
                {"entry": pa.array([], pa.string()), "stamp": pa.array([], pa.string())}
            )
        return newest(rows, "entry", self.ids).select(["entry", "stamp"])
