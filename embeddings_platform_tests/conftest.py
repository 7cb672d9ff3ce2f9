"""Shared fixtures: a small corpus on disk, a registry using the deterministic embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.store import Store
from embeddings_platform.defs import resources

DOCS = {
    "cats.md": "Cats are small domesticated carnivorous mammals. A cat purrs and hunts mice at night.",
    "dogs.txt": "Dogs are loyal companions. A dog barks, fetches sticks and guards the house.",
    "rust.rst": "Rust is a systems programming language focused on memory safety without garbage collection.",
    "python.md": "Python is a programming language with dynamic typing and garbage collection.",
    "tea.html": "<html><body><h1>Tea</h1><p>Green tea &amp; black tea are brewed from leaves.</p></body></html>",
}


def write_corpus(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def write_config(path: Path, sources: list[dict], models: list[dict] | None = None, **extra) -> Path:
    config = {
        "storage": {"uri": str(path.parent / "lancedb")},
        "sources": sources,
        "models": models or [{"name": "hash", "kind": "hashing", "dimension": 256, "max_seq_length": 16,
                              "chunking": {"max_tokens": 12, "overlap": 3}}],
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """Each test gets its own Dagster home and embedder cache, whatever the shell exported."""
    monkeypatch.delenv("EMBEDDINGS_PLATFORM_STORAGE_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    resources.clear_embedder_cache()
    yield
    resources.clear_embedder_cache()


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    write_corpus(folder, DOCS)
    return folder


@pytest.fixture
def config_path(tmp_path, corpus) -> Path:
    return write_config(tmp_path / "platform.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}])


@pytest.fixture
def config(config_path):
    return load_config(config_path)


@pytest.fixture
def store(config) -> Store:
    return Store(config.storage_uri)


@pytest.fixture
def embedder(config) -> HashingEmbedder:
    """The embedder the Dagster layer will use for the first model (shared via the cache)."""
    return resources.cached_embedder(config.models[0])

