"""What the table kinds (parquet, postgres, iceberg) share: named columns, and one row -> document.

A row's id column is its doc id, its text columns are joined like jsonl's text fields, its
metadata columns travel with it. A row that cannot be a document (no id, no text, bytes that
are not UTF-8) becomes a rejection with its reason; the rows around it are read on.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa

from .base import RawDocument, SourceSettings, Unusable, rejected, source_error

BATCH_ROWS = 512  # rows per batch read: memory is bounded by a batch, never the whole table


def needed_columns(
    id_column: str, text_columns: Sequence[str], metadata_columns: Sequence[str]
) -> list[str]:
    return list(dict.fromkeys([id_column, *text_columns, *metadata_columns]))


def check_columns(source: SourceSettings, available: Iterable[str], where: str) -> None:
    """SourceError naming the first setting whose column is missing from `where`."""
    available = list(available)
    settings = [
        ("id_column", [source.id_column]),
        ("text_columns", list(source.text_columns)),
        ("metadata_columns", list(source.metadata_columns)),
    ]
    for key, columns in settings:
        for column in columns:
            if column not in available:
                raise source_error(
                    source,
                    key,
                    f"column {column!r} is not in {where} (columns: {', '.join(available)})",
                )


def _decoded(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unusable(
            f"undecodable: {what} is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc


def _doc_id(value: Any, column: str) -> str:
    if value is None or value == "" or value == b"":
        raise Unusable(f"missing id: column {column!r} is NULL or empty")
    if isinstance(value, (bytes, memoryview)):
        return _decoded(bytes(value), f"id column {column!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Unusable(
            f"bad id: column {column!r} must be text or a whole number, not {type(value).__name__}"
        )
    return str(value)


def _json_value(value: Any) -> Any:
    """Metadata is stored as JSON: numbers, text and booleans stay, the rest becomes text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return _decoded(bytes(value), "a metadata column")
    return str(value)


def row_key(value: Any, column: str) -> str | None:
    """The doc id a row with this id value gets; None when the row has no usable id."""
    try:
        return _doc_id(value, column)
    except Unusable:
        return None


def row_document(
    source: SourceSettings,
    row: dict[str, Any],
    ref: str,
    extra_metadata: dict[str, Any] | None = None,
    entry: str | None = None,
) -> RawDocument:
    """The document of one row; `ref` names the row in a rejection when its id is unusable.
    `entry`: what the row was read from (a file); None: the row is its own entry."""
    try:
        doc_id = _doc_id(row.get(source.id_column), source.id_column)
    except Unusable as exc:
        return rejected(ref, str(exc), entry=entry or "")
    try:
        parts = []
        for column in source.text_columns:
            value = row.get(column)
            if isinstance(value, (bytes, memoryview)):
                value = _decoded(bytes(value), f"column {column!r}")
            if value is not None and str(value) != "":
                parts.append(str(value))
        if not parts:
            names = ", ".join(map(repr, source.text_columns))
            raise Unusable(
                f"empty: text column{'s' if len(source.text_columns) > 1 else ''} "
                f"{names} NULL or empty"
            )
        metadata = {c: _json_value(row.get(c)) for c in source.metadata_columns}
    except Unusable as exc:
        return rejected(doc_id, str(exc), entry=entry or doc_id)
    return RawDocument(
        doc_id,
        "\n\n".join(parts),
        {**metadata, **(extra_metadata or {})},
        entry=entry or doc_id,
    )


def batch_documents(
    source: SourceSettings,
    batches: Iterable[pa.RecordBatch],
    ref_prefix: str,
    extra_metadata: dict[str, Any] | None = None,
    entry: str | None = None,
) -> Iterator[RawDocument]:
    """Documents of Arrow record batches, one batch in memory at a time."""
    row_no = 0
    for batch in batches:
        for row in batch.to_pylist():
            row_no += 1
            yield row_document(source, row, f"{ref_prefix}row-{row_no}", extra_metadata, entry)
