"""`iceberg`: the rows of an Apache Iceberg table, through any catalog pyiceberg supports.

Doc ids are the id column's values. The table's current snapshot is read data file by data
file, one Arrow batch in memory at a time. A document's metadata names the table snapshot that
wrote its row (`iceberg_snapshot_id`: the snapshot that added its data file, the same whenever
it is read), and the platform's snapshot records the table's current one, so every chunk's and
vector's lineage names the table version its text came from.

Changes: the sensor compares the current snapshot id (catalog metadata, no data file opened).
A snapshot then plans the table's data files from its manifests (metadata only): each data file
is an entry stamped with its delete files, and only data files added since the last snapshot,
or given new deletes, are read; the rows of data files no longer in the table leave it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import (
    Changes,
    Entry,
    PreviousRead,
    RawDocument,
    SourceSettings,
    entry_changes,
    source_error,
)
from .rows import batch_documents, check_columns, needed_columns

SNAPSHOT_KEY = "iceberg_snapshot_id"


@source_kind("iceberg")
@settings(config=STRICT, kw_only=True)
class IcebergSource(SourceSettings):
    kind: Literal["iceberg"] = "iceberg"
    catalog: dict[str, str]  # pyiceberg catalog properties (type, uri, warehouse, ...)
    table: str  # namespace.name
    catalog_name: str = "default"  # the catalog's name (the SQL catalog keys tables by it)
    id_column: str = "id"
    text_columns: tuple[str, ...] = ("text",)  # joined with a blank line, in this order
    metadata_columns: tuple[str, ...] = ()

    def _table(self) -> Any:
        """The table, loaded through its catalog (metadata only); SourceError naming the
        setting when the catalog or the table cannot be found. Properties are never shown:
        they may hold credentials."""
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchTableError

        try:
            catalog = load_catalog(self.catalog_name, **self.catalog)
        except Exception as exc:  # noqa: BLE001 - each catalog type raises its own
            raise source_error(
                self, "catalog", f"cannot load the catalog: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return catalog.load_table(self.table)
        except NoSuchTableError as exc:
            raise source_error(
                self, "table", f"table {self.table!r} does not exist in the catalog"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - an unreachable catalog, a bad identifier
            raise source_error(
                self, "table", f"cannot load table {self.table!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def check(self) -> None:
        check_columns(self, self._table().schema().column_names, f"table {self.table!r}")

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return self.changes(None, documents).documents

    def changes(self, previous: PreviousRead | None, documents: DocumentsConfig) -> Changes:
        """Nothing is planned when the snapshot id has not moved; else the data files are."""
        table = self._table()
        snapshot = table.current_snapshot()
        state = {SNAPSHOT_KEY: snapshot.snapshot_id if snapshot else None}
        if previous is not None and previous.state == state:
            return Changes([], set(), state=state)
        if snapshot is None:  # a table never written to: an empty source
            return entry_changes(self, {}, previous, lambda _: iter(()), state)
        columns = needed_columns(self.id_column, self.text_columns, self.metadata_columns)
        scan = table.scan(selected_fields=tuple(columns), snapshot_id=snapshot.snapshot_id)
        entries = {
            task.file.file_path: Entry(
                ",".join(sorted(d.file_path for d in task.delete_files)) or "-", task
            )
            for task in scan.plan_files()
        }
        return entry_changes(
            self,
            entries,
            previous,
            lambda chosen: self._read_files(table, scan, chosen, snapshot),
            state,
        )

    def signature(self) -> str | None:
        """The current snapshot id: every commit to the table makes a new one."""
        snapshot = self._table().current_snapshot()
        return "empty" if snapshot is None else str(snapshot.snapshot_id)

    def _read_files(self, table: Any, scan: Any, entries: dict[str, Entry], snapshot: Any):
        from pyiceberg.io.pyarrow import ArrowScan

        if not entries:
            return
        added_at = _added_at(table, snapshot)
        reader = ArrowScan(
            scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive
        )
        for key in sorted(entries):
            batches = reader.to_record_batches([entries[key].where])
            prefix = f"{PurePosixPath(key).name}:"
            written = {SNAPSHOT_KEY: added_at.get(key, snapshot.snapshot_id)}
            yield from batch_documents(self, batches, prefix, written, key)


def _added_at(table: Any, snapshot: Any) -> dict[str, int]:
    """Data file -> the snapshot that added it, from the table's manifests (metadata only)."""
    from pyiceberg.manifest import ManifestContent

    added: dict[str, int] = {}
    for manifest in snapshot.manifests(table.io):
        if manifest.content == ManifestContent.DATA:
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                added[entry.data_file.file_path] = entry.snapshot_id
    return added
