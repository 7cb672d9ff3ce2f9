"""`pydoc_topics`: the Python reference topics shipped with every Python (the bundled corpus).

Doc ids are the topic names (`raise`, `for`, ...). Nothing to download and nothing to check.
"""

from __future__ import annotations

from typing import Iterator, Literal

from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, source_kind
from ..settings import DocumentsConfig
from .base import RawDocument, SourceSettings


@source_kind("pydoc_topics")
@settings(config=STRICT, kw_only=True)
class PydocTopicsSource(SourceSettings):
    kind: Literal["pydoc_topics"] = "pydoc_topics"

    def read(self, documents: DocumentsConfig) -> Iterator[RawDocument]:
        from pydoc_data.topics import topics

        for name in sorted(topics):
            yield RawDocument(name, topics[name], {"topic": name})
