"""LanceDB storage: one typed `Store` opens and creates the tables and reads and writes their
rows. Writes are idempotent upserts keyed on declared primary keys. Its parts live beside it:
core/schemas.py (what the tables hold), core/conflicts.py (commits that race other writers),
core/filters.py (a read's filter, built from values), core/table_versions.py (what a table's
commit log says)."""

from __future__ import annotations

import functools
import json
import operator
from datetime import timedelta
from typing import Any, Iterable

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.expr import col, lit
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from .conflicts import (  # noqa: F401 - counting_conflicts re-exported for the stages
    counting_conflicts,
    create_table_once,
    declare_key,
    half_created,
    retry_on_conflict,
)
from .schemas import (  # noqa: F401 - re-exported: the store's tables are its vocabulary
    CHUNKS,
    DEAD_LETTER_REASON,
    DOCUMENT_TEXTS,
    INDEX_STATE,
    LINEAGE_COLUMNS,
    MODEL_SPECS,
    POINTER_HISTORY,
    POINTERS,
    QUARANTINE,
    SERVE_TAG_PREFIX,
    SNAPSHOT_DOCUMENTS,
    SNAPSHOT_ENTRIES,
    SNAPSHOTS,
    chunks_table_name,
    dead_letter_id,
    latest_serve_tag,
    serve_tag,
    utcnow,
    vectors_schema,
    vectors_table_name,
)
from .sharding import owner


def _add_column(table, field: pa.Field) -> None:
    try:
        retry_on_conflict(lambda: table.add_columns(field))
    except Exception:  # noqa: BLE001 - another process added it first
        if field.name not in table.schema.names:
            raise


class Store:
    """A thin, typed layer over one LanceDB database: the only module that touches LanceDB."""

    def __init__(self, uri: str):
        self.uri = uri
        # Always read the newest committed version: several processes write here.
        self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0))

    # --- generic helpers ---------------------------------------------------------------

    def table_names(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:  # list_tables is paginated
            response = self.db.list_tables(page_token=token) if token else self.db.list_tables()
            names.extend(response.tables)
            token = response.page_token
            if not token:
                return names

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def open_table(self, name: str, version: int | None = None):
        """An existing table, checked out at `version` when given (readers of a pinned target)."""
        table = self.db.open_table(name)
        if version is not None:
            table.checkout(version)
        return table

    def existing(self, name: str):
        """An existing table, or None: one open, without listing every table first."""
        try:
            return self.db.open_table(name)
        except ValueError as exc:  # LanceDB: "Table '...' was not found" (or not committed yet)
            if "not found" in str(exc):
                return None
            raise

    def drop_table(self, name: str) -> None:
        self.db.drop_table(name)

    def table(self, name: str, schema: pa.Schema | None = None, key: str | None = None):
        """Open a table, creating it when a schema is given; its primary key is always declared.

        Another process may be creating the same table right now: its directory is listed
        before its first version commits, so open and create are retried for a moment.
        """

        def open_or_create():
            table = self.existing(name)  # one open, no listing of every table first
            if table is not None:
                return table
            if schema is None:
                if self.has_table(name):  # listed, not committed: another process creates it
                    return self.db.open_table(name)  # "not found" until it commits: retried
                raise KeyError(f"table {name!r} does not exist in {self.uri}")
            return create_table_once(self.db, name, schema)

        table = Retrying(
            retry=retry_if_exception(half_created),
            stop=stop_after_delay(30),
            wait=wait_exponential_jitter(initial=0.02, max=0.5, jitter=0.02),
            reraise=True,
        )(open_or_create)
        if key:
            # Without a declared key, concurrent merge_insert of the same new keys duplicates;
            # a table opened while its creator has not declared the key yet gets it here.
            declare_key(table, key)
        if schema is not None:  # a store made before a column was added gets it, empty
            names = set(table.schema.names)
            for field in schema:
                if field.name not in names:
                    _add_column(table, field)
        return table

    def upsert(self, table, rows: pa.Table, key: str) -> None:
        """Idempotent write keyed on `key`: a rerun after a crash neither duplicates nor loses."""
        if rows.num_rows == 0:
            return
        retry_on_conflict(
            lambda: (
                table.merge_insert(key)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )
        )

    def insert_missing(self, table, rows: pa.Table, key: str) -> None:
        """Rows whose key the table does not hold yet (content-addressed rows: a key names one
        value forever, so a stored row is not rewritten); idempotent like `upsert`."""
        if rows.num_rows:
            retry_on_conflict(
                lambda: table.merge_insert(key).when_not_matched_insert_all().execute(rows)
            )

    def append(self, table, rows: pa.Table) -> None:
        """Rows whose keys are new by construction (they hold their write's time): no merge,
        whose join scans the whole table's keys."""
        if rows.num_rows:
            retry_on_conflict(lambda: table.add(rows))

    def update_columns(
        self, table, rows: list[dict], columns: dict[str, pa.DataType], key: str = "chunk_id"
    ) -> None:
        """Update some columns of existing rows by key, leaving the others (vectors) untouched."""
        if not rows:
            return
        schema = pa.schema(
            [
                pa.field(key, pa.string(), nullable=False),
                *[pa.field(n, t) for n, t in columns.items()],
            ]
        )
        data = pa.Table.from_pylist(rows, schema=schema)
        retry_on_conflict(lambda: table.merge_insert(key).when_matched_update_all().execute(data))

    def delete_where_in(self, table, column: str, values: Iterable[str]) -> int:
        values = sorted(set(values))
        for start in range(0, len(values), 5000):
            batch = values[start : start + 5000]
            retry_on_conflict(lambda b=batch: table.delete(col(column).isin(b)))
        return len(values)

    @staticmethod
    def read(table, columns: list[str] | None = None, where=None) -> pa.Table:
        query = table.search()
        if where is not None:
            query = query.where(where)
        if columns:
            query = query.select(columns)
        return query.limit(None).to_arrow()

    @staticmethod
    def read_in(
        table, columns: list[str] | None, within: dict[str, Iterable[str]], **equal_to: Any
    ) -> pa.Table:
        """Rows whose `within` columns each hold one of their values and whose `equal_to`
        columns hold those values, read with lance's scanner: its IN is one hash lookup a row,
        where LanceDB 0.40 plans `isin` as an OR of one equality a value (1,000 ids over
        100,000 rows: 17 ms of CPU against 5). Values are data in a pyarrow expression."""
        conditions = [pc.field(name) == value for name, value in equal_to.items()]
        conditions += [
            pc.field(name).isin(pa.array(list(values), pa.string()))
            for name, values in within.items()
        ]
        where = functools.reduce(operator.and_, conditions) if conditions else None
        return table.to_lance().to_table(columns=columns, filter=where)

    # --- snapshots ---------------------------------------------------------------------

    def latest_snapshot(self, source: str) -> dict[str, Any] | None:
        if not self.has_table("snapshots"):
            return None
        rows = self.read(self.table("snapshots"), where=col("source") == lit(source)).to_pylist()
        return max(rows, key=lambda r: r["created_at"]) if rows else None

    def latest_snapshot_id(self, source: str) -> str | None:
        """The newest snapshot's id alone (the sensor's tick: two columns, not every field)."""
        if not self.has_table("snapshots"):
            return None
        rows = self.read(
            self.table("snapshots"), ["snapshot_id", "created_at"], col("source") == lit(source)
        )
        if rows.num_rows == 0:
            return None
        return rows.sort_by([("created_at", "descending")]).column("snapshot_id")[0].as_py()

    def snapshot(self, source: str, snapshot_id: str) -> dict[str, Any] | None:
        if not self.has_table("snapshots"):
            return None
        rows = self.read(
            self.table("snapshots"),
            where=(col("source") == lit(source)) & (col("snapshot_id") == lit(snapshot_id)),
        ).to_pylist()
        return rows[0] if rows else None

    def snapshot_manifest(self, source: str, snapshot_id: str) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_sha256, metadata_json) of one snapshot (core/manifests.py)."""
        from .manifests import manifest

        rows = manifest(self, source, snapshot_id, ["doc_id", "content_sha256", "metadata_json"])
        return {
            d: (sha, meta)
            for d, sha, meta in zip(*(rows.column(c).to_pylist() for c in rows.column_names))
        }

    def texts(self, content_hashes: Iterable[str]) -> dict[str, str]:
        hashes = sorted(set(content_hashes))
        if not hashes:
            return {}
        rows = self.read_in(self.table("document_texts"), None, {"content_sha256": hashes})
        return dict(zip(*(rows.column(c).to_pylist() for c in ("content_sha256", "text"))))

    # --- serving pointers --------------------------------------------------------------

    def pointer(self, source: str) -> dict[str, Any] | None:
        """The serving pointer of a source (a shard's partition key names its source's)."""
        pointers = self.existing("serving_pointers")  # once per search: no listing first
        if pointers is None:
            return None
        rows = self.read(pointers, where=col("source") == lit(owner(source))).to_pylist()
        return rows[0] if rows else None

    def pointers(self) -> list[dict[str, Any]]:
        if not self.has_table("serving_pointers"):
            return []
        return self.read(self.table("serving_pointers")).to_pylist()

    def pointer_history(self, source: str) -> list[dict[str, Any]]:
        if not self.has_table("serving_history"):
            return []
        rows = self.read(
            self.table("serving_history"), where=col("source") == lit(source)
        ).to_pylist()
        return sorted(rows, key=lambda r: r["swapped_at"])

    def set_pointer(self, row: dict[str, Any], only_forward: bool = False) -> bool:
        """Move a source's pointer in one commit and record the move in history.

        `only_forward`: move only to a newer version of the same table (or any other table),
        decided inside the commit, so concurrent refreshes can never pin an older version.
        Returns whether the pointer moved.
        """
        history = self.table("serving_history", POINTER_HISTORY, "event_id")
        event = dict(
            row, event_id=f"{row['source']}:{row['swapped_at'].isoformat()}:{row['table_version']}"
        )
        pointers = self.table("serving_pointers", POINTERS, "source")
        data = pa.Table.from_pylist([row], schema=POINTERS)
        if not only_forward:
            self.upsert(history, pa.Table.from_pylist([event], schema=POINTER_HISTORY), "event_id")
            self.upsert(pointers, data, "source")
            return True
        result = retry_on_conflict(
            lambda: (
                pointers.merge_insert("source")
                .when_matched_update_all(
                    where="target.table_name != source.table_name "
                    "OR target.table_version < source.table_version"
                )
                .when_not_matched_insert_all()
                .execute(data)
            )
        )
        moved = bool(result.num_inserted_rows or result.num_updated_rows)
        if moved:
            self.upsert(history, pa.Table.from_pylist([event], schema=POINTER_HISTORY), "event_id")
        return moved

    # --- model specs ------------------------------------------------------------------

    def record_model_spec(self, version_id: str, model_name: str, spec: dict[str, Any]) -> None:
        """Keep the full settings a version was built with: the version that serves can embed
        queries even after its registry entry was edited or removed."""
        table = self.table("model_specs", MODEL_SPECS, "version_id")
        if self.model_spec(version_id) is not None:
            return
        row = {
            "version_id": version_id,
            "model_name": model_name,
            "spec_json": json.dumps(spec, sort_keys=True, default=str),
            "recorded_at": utcnow(),
        }
        self.upsert(table, pa.Table.from_pylist([row], schema=MODEL_SPECS), "version_id")

    def model_spec(self, version_id: str) -> dict[str, Any] | None:
        if not self.has_table("model_specs"):
            return None
        rows = self.read(
            self.table("model_specs"),
            ["spec_json"],
            where=col("version_id") == lit(version_id),
        ).to_pylist()
        return json.loads(rows[0]["spec_json"]) if rows else None

    # --- pinned versions --------------------------------------------------------------

    def target_exists(self, table_name: str, table_version: int, tag: str | None = None) -> bool:
        """Does (table, version) still exist as the build that tagged it? A table that was
        dropped and recreated restarts its version numbers: its tags are gone with it."""
        if not self.has_table(table_name):
            return False
        table = self.db.open_table(table_name)
        tags = table.tags.list()
        tag = tag or serve_tag(table_version)
        if tag not in tags:
            return False
        pinned = tags[tag]
        version = (
            pinned["version"] if isinstance(pinned, dict) else getattr(pinned, "version", None)
        )
        return version is None or int(version) == int(table_version)
