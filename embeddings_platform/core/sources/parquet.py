"""`parquet`: the rows of a Parquet file, of the *.parquet files under a folder, or of a glob.

Doc ids are the id column's values. Files are read in sorted order, batch by batch, only the
named columns: a table larger than memory is read with one batch held at a time. Each file is an
entry stamped with its size, inode and times: changes are detected from the listing without
opening a file, and a snapshot reads again only the files whose stamp moved.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Iterator, Literal

import pyarrow.parquet as pq
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import (
    Changes,
    ConfigPath,
    Entry,
    PreviousRead,
    RawDocument,
    SourceSettings,
    entry_changes,
    source_error,
)
from .listing import file_stamp, stamps_digest, stat_or_none
from .rows import BATCH_ROWS, batch_documents, check_columns, needed_columns

_GLOB_CHARS = ("*", "?", "[")


@source_kind("parquet")
@settings(config=STRICT, kw_only=True)
class ParquetSource(SourceSettings):
    kind: Literal["parquet"] = "parquet"
    path: ConfigPath  # a .parquet file, a folder (every *.parquet below it) or a glob
    id_column: str = "id"
    text_columns: tuple[str, ...] = ("text",)  # joined with a blank line, in this order
    metadata_columns: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        """The Parquet files of the source, sorted; SourceError when the path names nothing."""
        text = str(self.path)
        if any(c in text for c in _GLOB_CHARS):
            base = Path(text[: min(text.index(c) for c in _GLOB_CHARS if c in text)]).parent
            if not base.is_dir():
                raise source_error(
                    self,
                    "path",
                    f"{base} (the folder of the glob {text}) does "
                    "not exist; fix the path or create it",
                )
            return sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if self.path.is_dir():
            return sorted(p for p in self.path.rglob("*.parquet") if p.is_file())
        if not self.path.exists():
            raise source_error(
                self, "path", f"{self.path} does not exist; fix the path or create it"
            )
        return [self.path]

    def check(self) -> None:
        """Every file's footer is read (not its rows): not Parquet, or a column missing, is an
        error naming the setting to fix."""
        for path in self.files():
            try:
                schema = pq.read_schema(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
                raise source_error(
                    self, "path", f"{path} is not a readable Parquet file: {exc}"
                ) from exc
            check_columns(self, schema.names, str(path))

    def entries(self) -> dict[str, Entry]:
        """Every file, by its name in rejections, with its stamp; none is opened."""
        return {self._ref(p): Entry(file_stamp(stat_or_none(p)), p) for p in self.files()}

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return self.read_entries(self.entries())

    def changes(self, previous: PreviousRead | None, documents: DocumentsConfig) -> Changes:
        return entry_changes(self, self.entries(), previous, self.read_entries)

    def read_entries(self, entries: dict[str, Entry]) -> Iterator[RawDocument]:
        columns = needed_columns(self.id_column, self.text_columns, self.metadata_columns)
        single = [self.path] == [e.where for e in entries.values()]
        for key in sorted(entries):
            yield from self._read_file(
                entries[key].where, key, "" if single else f"{key}:", columns
            )

    def _read_file(self, path: Path, key: str, prefix: str, columns: list[str]) -> Iterator[Any]:
        with pq.ParquetFile(path) as handle:
            batches = handle.iter_batches(batch_size=BATCH_ROWS, columns=columns)
            yield from batch_documents(self, batches, prefix, entry=key)

    def signature(self) -> str | None:
        """Paths, sizes, inodes and change times of the source's files; no file is opened."""
        try:
            entries = self.entries()
        except Exception:  # noqa: BLE001 - a missing path: the read reports it
            return None
        return stamps_digest((key, entry.stamp) for key, entry in entries.items())

    def _ref(self, path: Path) -> str:
        """A file's name in rejections: relative to the source's folder when it has one."""
        root = self.path if self.path.is_dir() else None
        return path.relative_to(root).as_posix() if root else path.as_posix()
