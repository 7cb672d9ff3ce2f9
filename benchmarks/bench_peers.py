"""Peers on the same work: our refresh beside LangChain, LlamaIndex and CocoIndex on SciFact.

    make peers-venv                                           # once: the peers' own venv
    ../peers-venv/bin/python benchmarks/bench_peers.py        # about 5 minutes on 2 cores

Needs the interpreter of the peers venv (`make peers-venv`, next to the repository):
cocoindex 1.0 needs rich>=14, which the project's venv pins below 14 (constraints-peers.txt).

Every side gets the same SciFact copy read by our `read_source`, the same chunks (our
token-window chunker, 256/32, the model's tokenizer, run where each peer runs its splitter),
the same embedder (the model2vec static model distilled from MiniLM, through one wrapper that
counts the texts embedded, so the comparison measures bookkeeping, not a transformer), and
LanceDB as the vector store (CocoIndex also into PostgreSQL). Sides: ours (`core.pipeline.
refresh`, the calls the Dagster assets make), LangChain `index()` (_peers_langchain.py),
LlamaIndex `IngestionPipeline` with docstore upserts and deletes (_peers_llamaindex.py) and
CocoIndex 1.0 (_peers_cocoindex.py). Each builds once; then 1% of the documents get a sentence
appended and a few are deleted, and each refreshes. After each step every side's vector store
is read back: a stale vector is one whose text is no chunk of the current source.
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import (  # noqa: E402
    BENCH_MODELS,
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
os.environ.setdefault("COCOINDEX_DISABLE_USAGE_TRACKING", "1")  # else it posts on import
warnings.filterwarnings("ignore", category=DeprecationWarning)

import yaml  # noqa: E402
from _peers_common import (  # noqa: E402
    Chunker,
    CountingEmbedder,
    current_chunks,
    delete_documents,
    load_average,
    read_documents,
    vector_census,
)
from _peers_report import render  # noqa: E402

from embeddings_platform.core.config import load_config  # noqa: E402
from embeddings_platform.core.models import (  # noqa: E402
    load_embedder,
    model_version,
    prepare_model,
)
from embeddings_platform.core.pipeline import refresh  # noqa: E402
from embeddings_platform.core.store import Store, vectors_table_name  # noqa: E402

WORK = OUT / "peers"
SOURCE = "scifact"
COMMAND = "../peers-venv/bin/python benchmarks/bench_peers.py  (also in: make bench)"


def peers_missing() -> str | None:
    """Why this interpreter cannot run the peers, or None."""
    try:
        import cocoindex  # noqa: F401
        import llama_index.core  # noqa: F401
        import llama_index.vector_stores.lancedb  # noqa: F401
    except ImportError as exc:
        return (
            f"{exc.name} is not installed in {sys.executable}: run `make peers-venv` and use "
            "../peers-venv/bin/python (cocoindex needs rich>=14, the project's venv pins rich<14)"
        )
    return None


class OursSide:
    name = "embeddings_platform `refresh` (snapshot, chunks, embeddings, index)"

    def __init__(self, config, counting: CountingEmbedder):
        self.config, self.counting = config, counting
        self.store = Store(config.storage_uri)
        self.runs = 0

    def run(self) -> dict:
        self.runs += 1
        source, model = self.config.sources[0], self.config.models[0]
        report = refresh(
            self.store, source, model, self.config.serving, lambda: self.counting,
            f"peers-{self.runs}",
        )  # fmt: skip
        return {"detail": {"embedded": report.embeddings.embedded,
                           "deleted": report.embeddings.deleted}}  # fmt: skip

    def stored_texts(self) -> list[str]:
        version = model_version(self.config.models[0]).version_id
        table = self.store.table(vectors_table_name(SOURCE, version))
        return table.to_arrow().column("text").to_pylist()


def prepare(limit: int | None):
    corpus = copy_scifact(WORK, limit)
    path = WORK / "platform.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"uri": str(WORK / "ours")},
                "sources": [{"name": SOURCE, "kind": "beir", "path": str(corpus)}],
                "models": [BENCH_MODELS["static"]],
            }
        )
    )
    return load_config(path)


def measure(side, counting: CountingEmbedder, current) -> dict:
    before, load = counting.texts, load_average()
    result, seconds = timed(side.run)
    row = {"seconds": seconds, "texts_embedded": counting.texts - before, "load_avg_1min": load}
    return {**row, **vector_census(side.stored_texts(), current), **result}


def run(share: float, deleted: int, rounds: int, limit: int | None) -> dict:
    from _peers_cocoindex import CocoIndexSide
    from _peers_langchain import LangChainSide
    from _peers_llamaindex import LlamaIndexSide

    from embeddings_platform.testing import PgServer

    config = prepare(limit)
    source, model = config.sources[0], config.models[0]
    prepare_model(model)  # distilled once, before any clock
    counting = CountingEmbedder(load_embedder(model))
    chunker = Chunker(model)
    identity = model_version(model).version_id
    corpus = WORK / "corpus"
    pg = PgServer()
    pg.start()
    sides = {}
    try:
        sides = {
            "ours": OursSide(config, counting),
            "langchain_incremental": LangChainSide(WORK, source, chunker, counting, "incremental"),
            "langchain_full": LangChainSide(WORK, source, chunker, counting, "full"),
            "llamaindex": LlamaIndexSide(WORK, source, chunker, counting),
            "cocoindex_lancedb": CocoIndexSide(
                WORK, source, chunker, counting, identity, "lancedb"
            ),
            "cocoindex_postgres": CocoIndexSide(
                WORK, source, chunker, counting, identity, "postgres", pg.dsn
            ),
        }
        keys = list(sides)
        docs = read_documents(source)
        chunks = current_chunks(docs, chunker)
        build = {key: measure(sides[key], counting, chunks) for key in keys}
        changes = []
        for n in range(rounds):
            changed = change_documents(corpus, share, seed=7 + n)
            gone = delete_documents(corpus, deleted, keep=set(changed), seed=11 + n)
            now = read_documents(source)
            after = current_chunks(now, chunker)
            order = keys[n % len(keys) :] + keys[: n % len(keys)]  # no side always goes first
            measured = {key: measure(sides[key], counting, after) for key in order}
            changes.append(
                {
                    "changed_documents": len(changed),
                    "deleted_documents": len(gone),
                    "documents": len(now),
                    "chunks": sum(after.values()),
                    "order": order,
                    "sides": measured,
                }
            )
    finally:
        for side in sides.values():
            getattr(side, "close", lambda: None)()
        pg.remove()
    return {
        "command": COMMAND,
        "machine": machine(),
        "python": sys.executable,
        "documents": len(docs),
        "chunks": sum(chunks.values()),
        "embedder": identity,
        "names": {key: side.name for key, side in sides.items()},
        "build": build,
        "rounds": changes,
    }


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--changed", type=float, default=0.01, help="share of documents edited")
        parser.add_argument("--deleted", type=int, default=10, help="documents deleted per round")
        parser.add_argument("--rounds", type=int, default=5, help="changes, each then refreshed")
        parser.add_argument(
            "--limit", type=int, help="smoke test on the first N documents (not a result)"
        )

    missing = peers_missing()
    if missing and "--report-only" not in (argv if argv is not None else sys.argv[1:]):
        print(f"bench_peers: {missing}", file=sys.stderr)
        return 2
    return bench_main(
        argv,
        __doc__,
        "peers",
        "Peers on the same work: SciFact build and 1% refresh beside LangChain, LlamaIndex "
        "and CocoIndex (issues 8, 18)",
        lambda args: run(args.changed, args.deleted, args.rounds, args.limit),
        render,
        arguments,
        smoke=lambda args: args.limit,
    )


if __name__ == "__main__":
    raise SystemExit(main())
