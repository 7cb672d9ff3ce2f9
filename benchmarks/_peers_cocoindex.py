"""CocoIndex 1.0's side of bench_peers.py, written from its 1.0 API (cocoindex 1.0.26).

CocoIndex 1.0 keeps its own state (what each component declared, memoised results) in an
embedded LMDB database (`Settings.db_path`); it has no PostgreSQL state store any more (0.x
had one). PostgreSQL is one of its targets (and sources), so it runs twice: into LanceDB (the
store every side shares) and into a table of the PostgreSQL server the benchmark starts. That
table keeps each vector as `real[]`: CocoIndex maps a vector column to pgvector's `vector(n)`,
and Debian's postgresql-15 comes without pgvector, so the column type is overridden (`PgType`).

The app is the shape of CocoIndex's own examples: one memoised component per document
(`mount_each`, keyed by the document id; an unchanged document is skipped, a vanished one has
its rows deleted), which cuts the document with our chunker and declares one row per chunk;
the embedder follows `SentenceTransformerEmbedder`: single-text `embed` memoised per text,
batched underneath (`fn.as_async(batching=True)`) into the shared counting embedder.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

os.environ.setdefault("COCOINDEX_DISABLE_USAGE_TRACKING", "1")  # else it posts on import
import cocoindex as coco  # noqa: E402
import numpy as np
from _peers_common import Chunker, CountingEmbedder, SourceDoc, read_documents
from cocoindex.connectors import lancedb as coco_lancedb
from cocoindex.connectors import postgres as coco_postgres
from cocoindex.resources.schema import VectorSchema, VectorSchemaProvider
from numpy.typing import NDArray

from embeddings_platform.core.chunking import make_chunk_id

TABLE = "scifact"
PG_SCHEMA = "coco_bench"
EMBEDDER = coco.ContextKey["CocoEmbedder"]("peers_bench/embedder", detect_change=True)
LANCE_DB = coco.ContextKey[coco_lancedb.LanceAsyncConnection]("peers_bench/lancedb")
PG_DB = coco.ContextKey["object"]("peers_bench/postgres")
CHUNKER = coco.ContextKey[Chunker]("peers_bench/chunker")
SOURCE = coco.ContextKey["object"]("peers_bench/source")


class CocoEmbedder(VectorSchemaProvider):
    """The shared counting embedder in the shape of CocoIndex's stock embedders."""

    def __init__(self, counting: CountingEmbedder, dimension: int, identity: str):
        self._counting, self._dimension, self._identity = counting, dimension, identity

    @coco.fn.as_async(batching=True, max_batch_size=256)
    def _embed(self, texts: list[str]) -> list[NDArray[np.float32]]:
        return list(self._counting.embed(texts))

    @coco.fn(memo=True, version=1, logic_tracking="self")
    async def embed(self, text: str) -> NDArray[np.float32]:
        return await self._embed(text)

    async def __coco_vector_schema__(self) -> VectorSchema:
        return VectorSchema(dtype=np.dtype(np.float32), size=self._dimension)

    def __coco_memo_key__(self) -> object:
        return self._identity


@dataclass
class LanceRow:
    id: str
    doc_id: str
    text: str
    embedding: Annotated[NDArray, EMBEDDER]


@dataclass
class PgRow:
    id: str
    doc_id: str
    text: str
    embedding: Annotated[NDArray, coco_postgres.PgType("real[]", lambda v: [float(x) for x in v])]


ROWS = {"lancedb": LanceRow, "postgres": PgRow}


@coco.fn
async def process_chunk(text: str, doc_id: str, target: str, table) -> None:
    vector = await coco.use_context(EMBEDDER).embed(text)
    row = ROWS[target](make_chunk_id(doc_id, "peers", text), doc_id, text, vector)
    table.declare_row(row=row)


@coco.fn(memo=True)
async def process_document(doc: SourceDoc, target: str, table) -> None:
    texts = coco.use_context(CHUNKER).texts(doc.doc_id, doc.text)
    await coco.map(process_chunk, texts, doc.doc_id, target, table)


@coco.fn
async def app_main(target: str) -> None:
    if target == "lancedb":
        schema = await coco_lancedb.TableSchema.from_class(LanceRow, primary_key=["id"])
        table = await coco_lancedb.mount_table_target(LANCE_DB, TABLE, schema)
    else:
        schema = await coco_postgres.TableSchema.from_class(PgRow, primary_key=["id"])
        table = await coco_postgres.mount_table_target(
            PG_DB, TABLE, schema, pg_schema_name=PG_SCHEMA
        )
    docs = read_documents(coco.use_context(SOURCE))
    await coco.mount_each(process_document, ((d.doc_id, d) for d in docs), target, table)


class CocoIndexSide:
    """One CocoIndex app in its own environment (own LMDB state, so the two targets share no
    memoised vectors)."""

    def __init__(self, work: Path, source, chunker: Chunker, counting: CountingEmbedder,
                 embedder_identity: str, target: str, pg_dsn: str | None = None):  # fmt: skip
        self.target, self.pg_dsn = target, pg_dsn
        self.uri = str(work / f"cocoindex_{target}_lancedb")
        state = work / f"cocoindex_{target}_state"
        state.mkdir(parents=True, exist_ok=True)
        self.env = coco.Environment(coco.Settings.from_env(db_path=state), name=target)
        provide = self.env.context_provider.provide
        provide(EMBEDDER, CocoEmbedder(counting, counting.dimension, embedder_identity))
        provide(CHUNKER, chunker)
        provide(SOURCE, source)
        self.pool = None
        if target == "lancedb":
            provide(LANCE_DB, self._on_loop(coco_lancedb.connect_async(self.uri)))
        else:
            self.pool = self._on_loop(coco_postgres.create_pool(self._asyncpg_dsn()))
            provide(PG_DB, self.pool)
        self.name = (
            f"CocoIndex 1.0 (LMDB state) -> {'LanceDB' if target == 'lancedb' else 'PostgreSQL'}"
        )
        self.app = coco.App(coco.AppConfig(name=f"peers_{target}", environment=self.env),
                            app_main, target)  # fmt: skip

    def _on_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.env.event_loop).result()

    def _asyncpg_dsn(self) -> str:
        fields = dict(part.split("=", 1) for part in self.pg_dsn.split())
        return f"postgresql://{fields['user']}@{fields['host']}:{fields['port']}/{fields['dbname']}"

    def run(self) -> dict:
        self.app.update_blocking()
        return {"detail": {}}

    def stored_texts(self) -> list[str]:
        if self.target == "lancedb":
            import lancedb

            return lancedb.connect(self.uri).open_table(TABLE).to_arrow().column("text").to_pylist()
        import psycopg

        with psycopg.connect(self.pg_dsn) as conn:
            return [r[0] for r in conn.execute(f'SELECT text FROM {PG_SCHEMA}."{TABLE}"')]

    def close(self) -> None:
        """Before the PostgreSQL server stops: else the pool keeps reconnecting to it."""
        if self.pool is not None:
            self._on_loop(self.pool.close())
        self.env.close()
