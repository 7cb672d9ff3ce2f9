"""`jsonl`: one JSON object per line, with an id field and one or more text fields.

Doc ids are the id field's values. Lines are read with a bounded readline; a line that is not
a JSON object, has no usable id or is too long is quarantined, and the next line is read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import (
    OPEN_FLAGS,
    ConfigPath,
    RawDocument,
    SourceSettings,
    Unusable,
    rejected,
    source_error,
)

_SKIP_CHUNK = 1024 * 1024  # how much of an over-long line is read at a time to skip it


@source_kind("jsonl")
@settings(config=STRICT, kw_only=True)
class JsonlSource(SourceSettings):
    kind: Literal["jsonl"] = "jsonl"
    path: ConfigPath
    id_field: str = "id"
    text_fields: tuple[str, ...] = ("title", "text")  # joined with a blank line, in this order

    def check(self) -> None:
        check_jsonl_file(self, self.path, "path")

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return read_jsonl(self, self.path, self.id_field, self.text_fields, documents)


def check_jsonl_file(source: SourceSettings, path: Path, key: str) -> None:
    if not path.exists():
        raise source_error(source, key, f"{path} does not exist; fix the path or create it")
    if path.is_dir():
        raise source_error(
            source, key, f"{path} is a folder; a {source.kind} source needs a .jsonl file"
        )


def _open_file(source: SourceSettings, path: Path) -> BinaryIO:
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise source_error(
            source, "path", f"{path} does not exist; fix the path or create it"
        ) from exc
    except OSError as exc:
        raise source_error(source, "path", f"{path} cannot be opened: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise source_error(
            source, "path", f"{path} is {kind} (a {source.kind} source reads a JSONL file)"
        )
    return open(fd, "rb")


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) with None for a line over limit bytes, which is skipped unread."""
    line_no = 0
    while line := handle.readline(limit + 1):
        line_no += 1
        if len(line) <= limit or line.endswith(b"\n"):
            yield line_no, line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(_SKIP_CHUNK)
        yield line_no, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON (RFC 8259)")


def _parse_line(line_no: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line, parse_constant=_no_constant)
    except RecursionError as exc:
        raise Unusable(
            f"too deeply nested: line {line_no} nests JSON deeper than the parser can follow"
        ) from exc
    except ValueError as exc:  # also UnicodeDecodeError and the int-digits limit
        raise Unusable(f"line {line_no} is not valid JSON: {str(exc).split(';')[0]}") from exc
    if not isinstance(record, dict):
        raise Unusable(f"line {line_no} is not a JSON object")
    return record


def _record(record: dict[str, Any], id_field: str, text_fields: tuple[str, ...]) -> RawDocument:
    doc_id = record.get(id_field)
    if doc_id is None or doc_id == "":
        raise Unusable(f"missing {id_field!r}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise Unusable(
            f"bad id: {id_field!r} must be a string or a whole number, not {type(doc_id).__name__}"
        )
    doc_id = str(doc_id)
    parts = [str(record[f]) for f in text_fields if record.get(f)]
    metadata = {
        k: v
        for k, v in record.items()
        if k not in (id_field, *text_fields) and isinstance(v, (str, int, float, bool))
    }
    try:  # a lone surrogate (an invalid \ud800 escape) cannot be stored
        json.dumps([doc_id, metadata], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Unusable(
            "undecodable: id or metadata holds a lone surrogate (an invalid \\uD800-\\uDFFF escape)"
        ) from exc
    return RawDocument(doc_id, "\n\n".join(parts), metadata)


def read_jsonl(
    source: SourceSettings,
    path: Path,
    id_field: str,
    text_fields: tuple[str, ...],
    documents: DocumentsConfig,
) -> Iterator[RawDocument]:
    with _open_file(source, path) as handle:
        for line_no, line in _lines(handle, documents.max_document_bytes):
            try:
                if line is None:
                    raise Unusable(
                        f"too large: line {line_no} is longer than "
                        f"{documents.max_document_bytes} bytes"
                    )
                if not line.strip():
                    continue
                yield _record(_parse_line(line_no, line), id_field, text_fields)
            except Unusable as exc:
                yield rejected(f"line-{line_no}", str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the file
                yield rejected(
                    f"line-{line_no}", f"unreadable: line {line_no}: {type(exc).__name__}: {exc}"
                )
