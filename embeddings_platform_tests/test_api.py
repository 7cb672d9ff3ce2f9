"""The Python API: search through the serving pointer, the model loaded once per process."""

from __future__ import annotations

import pytest

from embeddings_platform import api, cli
from embeddings_platform.core import models
from embeddings_platform.core.config import ConfigError
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.store import Store


@pytest.fixture
def served(config, config_path):
    model = config.models[0]
    refresh(Store(config.storage_uri), config.sources[0], model, config.serving,
            lambda: models.load_embedder(model), "r1")  # fmt: skip
    return config_path


@pytest.fixture
def loads(monkeypatch):
    """Every model load of this process, by version."""
    calls: list[str] = []
    real = models.load_embedder

    def counting(model):
        calls.append(model.name)
        return real(model)

    monkeypatch.setattr(models, "load_embedder", counting)
    return calls


def test_searches_load_the_model_once_per_process(served, loads, capsys):
    searcher = api.Searcher(served)
    first = searcher.search("memory safety systems language", "notes", k=2)
    again = searcher.search("a dog barks", "notes", k=2, mode="vector")
    other = api.Searcher(str(served)).search("cats purr", "notes", k=1)  # another Searcher
    assert first[0].doc_id == "rust.rst" and again[0].doc_id == "dogs.txt"
    assert other[0].doc_id == "cats.md"
    assert loads == ["hash"]
    # the CLI goes through the same path: repeated searches in one process, no new load
    for query in ("tea leaves", "python typing"):
        assert cli.main(["--config", str(served), "search", query, "--source", "notes"]) == 0
    assert loads == ["hash"]
    assert "tea.html" in capsys.readouterr().out


def test_a_full_text_search_loads_no_model(served, loads):
    hits = api.Searcher(served).search("barks", "notes", k=1, mode="fts")
    assert hits[0].doc_id == "dogs.txt" and loads == []


def test_an_unregistered_source_or_no_config_is_a_clear_error(served, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no source named 'nope'"):
        api.Searcher(served).search("x", "nope")
    monkeypatch.delenv("EMBEDDINGS_PLATFORM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no embeddings_platform.yaml in"):
        api.Searcher()
