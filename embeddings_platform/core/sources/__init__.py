"""Source kinds, one module each, registered by name (`core/registry.py`).

To add a kind: a module with a `@source_kind("name")` settings dataclass that subclasses
`SourceSettings` and implements `check` and `read` (`signature` and `changes` to be read only
as far as it changed, `kind_queries` if it ships labelled queries), then one import line here
(docs/architecture.md).
"""

from .base import RawDocument, SourceSettings
from .beir import BeirSource
from .folder import FOLDER_SUFFIXES, FolderSource
from .iceberg import IcebergSource
from .jsonl import JsonlSource
from .parquet import ParquetSource
from .postgres import PostgresSource
from .pydoc_topics import PydocTopicsSource

__all__ = [
    "FOLDER_SUFFIXES",
    "BeirSource",
    "FolderSource",
    "IcebergSource",
    "JsonlSource",
    "ParquetSource",
    "PostgresSource",
    "PydocTopicsSource",
    "RawDocument",
    "SourceSettings",
]
