"""`iceberg`: the rows of an Apache Iceberg table, through any catalog pyiceberg supports.

Doc ids are the id column's values. The table's current snapshot is read with a batch reader
(one Arrow batch in memory at a time), and its snapshot id goes into every document's metadata
(`iceberg_snapshot_id`), so every chunk's and vector's lineage names the table version it came
from. Changes are detected from the current snapshot id: no data file is opened.
"""

from __future__ import annotations

from typing import Any, Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import RawDocument, SourceSettings, source_error
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
        table = self._table()
        snapshot = table.current_snapshot()
        if snapshot is None:  # a table never written to: an empty source
            return
        columns = needed_columns(self.id_column, self.text_columns, self.metadata_columns)
        reader = table.scan(
            selected_fields=tuple(columns), snapshot_id=snapshot.snapshot_id
        ).to_arrow_batch_reader()
        yield from batch_documents(self, reader, "", {SNAPSHOT_KEY: snapshot.snapshot_id})

    def signature(self) -> str | None:
        """The current snapshot id: every commit to the table makes a new one."""
        snapshot = self._table().current_snapshot()
        return "empty" if snapshot is None else str(snapshot.snapshot_id)
