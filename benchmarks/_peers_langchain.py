"""LangChain's side of bench_peers.py: `index()` with a `SQLRecordManager` (SQLite) and
`langchain_community`'s LanceDB vector store, keyed by document id (`source_id_key`).

As LangChain's loaders and splitters do, every run reads and chunks the whole corpus, then
`index()` hashes each chunk and skips those its record manager already holds. Two cleanup
modes run: "incremental" deletes the old chunks of documents it is given again, so a deleted
document's vectors stay; "full" also deletes every record the run did not see.
"""

from __future__ import annotations

from pathlib import Path

from _peers_common import Chunker, CountingEmbedder, read_documents

TABLE = "scifact"
BATCH = 256


def straddling_chunks(source_ids: list[str], batch: int = BATCH) -> int:
    """Chunks in a later `index()` batch than their document's first chunk: "incremental"
    cleanup after the earlier batch deletes them, and the later batch embeds them again."""
    first: dict[str, int] = {}
    for i, doc in enumerate(source_ids):
        first.setdefault(doc, i // batch)
    return sum(1 for i, doc in enumerate(source_ids) if i // batch > first[doc])


class CountingEmbeddings:
    """A LangChain `Embeddings` over the shared counting embedder."""

    def __init__(self, counting: CountingEmbedder):
        self.counting = counting

    def embed_documents(self, texts):
        return self.counting.embed(texts).tolist()

    def embed_query(self, text):
        return self.counting.embedder.embed([text])[0].tolist()


class LangChainSide:
    def __init__(
        self, work: Path, source, chunker: Chunker, counting: CountingEmbedder, cleanup: str
    ):
        from langchain_classic.indexes import SQLRecordManager
        from langchain_community.vectorstores import LanceDB

        self.name = f"LangChain `index()` ({cleanup} cleanup)"
        self.source, self.chunker, self.cleanup = source, chunker, cleanup
        self.uri = str(work / f"langchain_{cleanup}_lancedb")
        self.manager = SQLRecordManager(
            "lancedb/scifact", db_url=f"sqlite:///{work / f'langchain_{cleanup}.sqlite'}"
        )
        self.manager.create_schema()
        self.vectors = LanceDB(
            uri=self.uri,
            embedding=CountingEmbeddings(counting),
            table_name=TABLE,
            distance="cosine",
            mode="append",
        )  # "overwrite" would replace the table on every add

    def run(self) -> dict:
        from langchain_classic.indexes import index
        from langchain_core.documents import Document

        documents = [
            Document(page_content=text, metadata={"source": d.doc_id})
            for d in read_documents(self.source)
            for text in self.chunker.texts(d.doc_id, d.text)
        ]
        result = index(
            documents,
            self.manager,
            self.vectors,
            cleanup=self.cleanup,
            source_id_key="source",
            batch_size=BATCH,
            key_encoder="sha256",
        )
        straddling = straddling_chunks([d.metadata["source"] for d in documents])
        return {"detail": {**result, "straddling_chunks": straddling}}

    def stored_texts(self) -> list[str]:
        import lancedb

        table = lancedb.connect(self.uri).open_table(TABLE)
        return table.to_arrow().column("text").to_pylist()
