"""The edges of "never serve what was deleted", each played end to end through the core chain:
an emptied source, an empty shard, a rollback after a refresh, a model entry edited in place,
a dropped vectors table, parser bombs. Each reports documents lost (in the source, not served),
duplicated (served twice) and deleted-but-served, all of which must be 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from embeddings_platform.core.config import load_config
from embeddings_platform.core.evaluation import labelled_queries
from embeddings_platform.core.migration import rollback, swap
from embeddings_platform.core.migration_gate import evaluate_gate, query_embedders
from embeddings_platform.core.models import model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import models_in_use
from embeddings_platform.core.store import Store
from embeddings_platform.defs.resources import cached_embedder
from embeddings_platform.testing import DOCS, hashing_model, write_config, write_corpus


def _model(name: str, dimension: int) -> dict:
    return hashing_model(name, dimension)


def _refresh_all(path: Path) -> None:
    """Every shard of every source, with every model in use (registered or still serving)."""
    config = load_config(path)
    store = Store(config.storage_uri)
    for source in config.sources:
        for key in source.partition_keys:
            for model in models_in_use(config, store, config.serving.retention_hours):
                refresh(
                    store,
                    config.source(key),
                    model,
                    config.serving,
                    lambda m=model: cached_embedder(m),
                    "bench",
                    is_default_model=model.name == config.serving_model(source.name),
                )


def _served(path: Path, source: str = "notes") -> list[str]:
    config = load_config(path)
    store = Store(config.storage_uri)
    pointer = store.pointer(source)
    table = store.open_table(pointer["table_name"], pointer["table_version"])
    return table.to_arrow().select(["doc_id", "chunk_id"]).to_pylist()


def _outcome(path: Path, in_source: set[str], deleted: set[str]) -> dict:
    rows = _served(path)
    served = {r["doc_id"] for r in rows}
    ids = [r["chunk_id"] for r in rows]
    return {
        "lost": len(in_source - served),
        "duplicated": len(ids) - len(set(ids)),
        "deleted_but_served": len(served & deleted),
    }


def _setup(work: Path, name: str, docs: dict[str, str], **extra) -> tuple[Path, Path]:
    folder = work / name / "corpus"
    write_corpus(folder, docs)
    (work / name / "canary.jsonl").write_text(
        "\n".join(
            json.dumps(q)
            for q in (
                {"query": "cat purrs hunts mice", "relevant": ["cats.md"]},
                {"query": "dog barks fetches sticks", "relevant": ["dogs.txt"]},
                {"query": "memory safety garbage collection", "relevant": ["rust.rst"]},
            )
        )
    )
    source = {
        "name": "notes",
        "kind": "folder",
        "path": str(folder),
        "canary": str(work / name / "canary.jsonl"),
        **extra.pop("source", {}),
    }
    path = write_config(
        work / name / "platform.yaml",
        [source],
        extra.pop("models", [_model("hash", 256)]),
        migration={"max_recall_drop": 1, "max_ndcg_drop": 1, "min_queries": 1},
        **extra,
    )
    return path, folder


def emptied_source(work: Path) -> dict:
    path, folder = _setup(work, "emptied", DOCS)
    _refresh_all(path)
    for name in DOCS:
        (folder / name).unlink()
    _refresh_all(path)
    return _outcome(path, set(), set(DOCS))


def empty_shards(work: Path) -> dict:
    two = {"cats.md": DOCS["cats.md"], "dogs.txt": DOCS["dogs.txt"]}
    path, _ = _setup(work, "shards", two, source={"shards": 4})
    _refresh_all(path)
    return _outcome(path, set(two), set())


def rollback_after_refresh(work: Path) -> dict:
    path, folder = _setup(work, "rollback", DOCS, models=[_model("old", 256), _model("new", 128)])
    _refresh_all(path)
    config = load_config(path)
    store = Store(config.storage_uri)
    gate = evaluate_gate(
        store,
        "notes",
        model_version(config.model("new")).version_id,
        labelled_queries(config.source("notes")),
        query_embedders(store, config, cached_embedder),
        config.migration,
    )
    swap(store, gate, "bench")
    (folder / "dogs.txt").unlink()
    _refresh_all(path)
    results = []
    for _ in range(3):  # back to old, forth to new, back to old: each serves its current state
        rollback(store, "notes", "bench", config.serving.retention_hours)
        results.append(_outcome(path, set(DOCS) - {"dogs.txt"}, {"dogs.txt"}))
    return {key: sum(r[key] for r in results) for key in results[0]}


def edited_in_place(work: Path) -> dict:
    path, folder = _setup(work, "edited", DOCS)
    _refresh_all(path)
    raw = yaml.safe_load(path.read_text())
    raw["models"][0]["dimension"] = 128  # same name, new settings: the old version keeps serving
    path.write_text(yaml.safe_dump(raw))
    (folder / "cats.md").unlink()
    _refresh_all(path)
    return _outcome(path, set(DOCS) - {"cats.md"}, {"cats.md"})


def dropped_table(work: Path) -> dict:
    path, folder = _setup(work, "dropped", DOCS)
    _refresh_all(path)
    for edit in ("one", "two"):  # move the pinned version forward past what a rebuild reaches
        (folder / "dogs.txt").write_text(f"{DOCS['dogs.txt']} {edit}")
        _refresh_all(path)
    config = load_config(path)
    store = Store(config.storage_uri)
    store.drop_table(store.pointer("notes")["table_name"])
    _refresh_all(path)
    return _outcome(path, set(DOCS), set())


def parser_bombs(work: Path) -> dict:
    bombs = {"bomb.html": "<p>ok</p><![foo", **DOCS}
    path, _ = _setup(work, "bombs", bombs)
    jsonl = work / "bombs" / "lines.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps({"id": "good", "text": "a good line about tea"}),
                "[" * 100_000 + "]" * 100_000,
                '{"id": ' + "9" * 5000 + ', "text": "huge id"}',
            ]
        )
        + "\n"
    )
    _refresh_all(path)
    result = _outcome(path, set(DOCS), set())
    lines = write_config(
        work / "bombs" / "lines.yaml",
        [{"name": "notes", "kind": "jsonl", "path": str(jsonl)}],
        [_model("hash", 256)],
    )
    _refresh_all(lines)
    other = _outcome(lines, {"good"}, set())
    return {key: result[key] + other[key] for key in result}


SCENARIOS = {
    "every document of a source deleted": emptied_source,
    "a sharded source with empty shards (2 documents, 4 shards)": empty_shards,
    "rollback after a refresh that deleted a document (3 rollbacks)": rollback_after_refresh,
    "the serving model's entry edited in place, then a document deleted": edited_in_place,
    "the served vectors table dropped, then a refresh": dropped_table,
    "parser bombs (`<![foo`, JSON nested 100,000 deep, a 5,000-digit id)": parser_bombs,
}


def run_edges(work: Path) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return {name: play(work) for name, play in SCENARIOS.items()}
