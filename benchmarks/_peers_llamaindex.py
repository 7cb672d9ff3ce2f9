"""LlamaIndex's side of bench_peers.py: an `IngestionPipeline` with a docstore
(`DocstoreStrategy.UPSERTS_AND_DELETE`: a changed document's vectors are replaced, a vanished
document's deleted) writing to `llama-index-vector-stores-lancedb`'s LanceDB store.

The pipeline is handed each document whole (id = the document id); its transformations are
our chunker (a `TextSplitter`, so LlamaIndex links each node to its document) and the shared
counting embedder. The docstore keeps one hash per document and is persisted to disk after each
run (`pipeline.persist`), as a pipeline that outlives its process must; document texts are not
stored in it (`store_doc_text=False`) and the transformation cache is off: with upserts it only
repeats what the docstore decides, and persisting it would write every vector again.

llama-index-vector-stores-lancedb 0.6.0 deletes with `doc_id = "<id>"`; since lancedb 0.38 a
double-quoted token is a column name, so every delete fails (run-llama/llama_index#23087, open).
`FixedLanceDBVectorStore` quotes the value as a string literal; nothing else is changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from _peers_common import Chunker, CountingEmbedder, read_documents

TABLE = "scifact"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _classes():
    """LlamaIndex classes are pydantic models: defined on first use, inside the peers venv."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.node_parser import TextSplitter
    from llama_index.vector_stores.lancedb import LanceDBVectorStore
    from pydantic import PrivateAttr

    class OurChunker(TextSplitter):
        _chunker: Any = PrivateAttr()

        def __init__(self, chunker: Chunker):
            super().__init__()
            self._chunker = chunker

        def split_text(self, text: str) -> List[str]:
            return self._chunker.texts("", text)  # the id only names chunks; texts are the same

    class CountingEmbedding(BaseEmbedding):
        _counting: Any = PrivateAttr()

        def __init__(self, counting: CountingEmbedder):
            super().__init__(model_name="shared-counting-embedder", embed_batch_size=256)
            self._counting = counting

        def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
            return self._counting.embed(texts).tolist()

        def _get_text_embedding(self, text: str) -> List[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> List[float]:
            return self._counting.embedder.embed([query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> List[float]:
            return self._get_query_embedding(query)

    class FixedLanceDBVectorStore(LanceDBVectorStore):
        def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
            self.table.delete(f"{self.doc_id_key} = {_literal(ref_doc_id)}")

        def delete_nodes(self, node_ids: List[str], **delete_kwargs: Any) -> None:
            self.table.delete("id IN (" + ", ".join(map(_literal, node_ids)) + ")")

    return OurChunker, CountingEmbedding, FixedLanceDBVectorStore


class LlamaIndexSide:
    name = "LlamaIndex `IngestionPipeline` (docstore upserts and deletes)"

    def __init__(self, work: Path, source, chunker: Chunker, counting: CountingEmbedder):
        from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
        from llama_index.core.storage.docstore import SimpleDocumentStore

        OurChunker, CountingEmbedding, FixedLanceDBVectorStore = _classes()
        self.source, self.uri = source, str(work / "llamaindex_lancedb")
        self.persist_dir = str(work / "llamaindex_pipeline")
        self.vector_store = FixedLanceDBVectorStore(uri=self.uri, table_name=TABLE)
        self.pipeline = IngestionPipeline(
            transformations=[OurChunker(chunker), CountingEmbedding(counting)],
            docstore=SimpleDocumentStore(),
            vector_store=self.vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
            disable_cache=True,
        )

    def run(self) -> dict:
        from llama_index.core import Document

        documents = [Document(text=d.text, id_=d.doc_id) for d in read_documents(self.source)]
        nodes = self.pipeline.run(documents=documents)
        self.pipeline.persist(self.persist_dir)
        return {"detail": {"nodes": len(nodes)}}

    def stored_texts(self) -> list[str]:
        import lancedb

        table = lancedb.connect(self.uri).open_table(TABLE)
        return table.to_arrow().column("text").to_pylist()
