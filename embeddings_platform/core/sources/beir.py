"""`beir`: a BEIR dataset folder: corpus.jsonl, and labelled queries in queries.jsonl + qrels/.

Doc ids are the corpus `_id`s. The qrels split named by `qrels_split` (default test) are the
source's labelled queries, so the recall check and the migration gate can score it.
"""

from __future__ import annotations

from typing import Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import ConfigPath, RawDocument, SourceSettings, source_error
from .jsonl import read_jsonl


@source_kind("beir")
@settings(config=STRICT, kw_only=True)
class BeirSource(SourceSettings):
    kind: Literal["beir"] = "beir"
    path: ConfigPath
    qrels_split: str = "test"

    def check(self) -> None:
        if not (self.path / "corpus.jsonl").is_file():
            raise source_error(
                self, "path", f"{self.path} has no corpus.jsonl; point it at a BEIR dataset folder"
            )

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        return read_jsonl(self, self.path / "corpus.jsonl", "_id", ("title", "text"), documents)

    def kind_queries(self) -> list:
        from ..evaluation import load_beir_queries

        if not (self.path / "qrels" / f"{self.qrels_split}.tsv").is_file():
            return []
        return load_beir_queries(self.path, self.qrels_split)
