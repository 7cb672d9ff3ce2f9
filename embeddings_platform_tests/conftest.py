"""Shared fixtures: a small corpus on disk, a registry using the deterministic embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.sources import journal
from embeddings_platform.core.store import Store
from embeddings_platform.defs import resources
from embeddings_platform.testing import DOCS, write_config, write_corpus


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """Each test gets its own Dagster home and embedder cache, whatever the shell exported."""
    monkeypatch.delenv("EMBEDDINGS_PLATFORM_STORAGE_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    # folder watchers' journals (core/sources/journal.py): never another test's or process's
    monkeypatch.setenv(journal.STATE_ENV, str(tmp_path_factory.mktemp("watch") / "state"))
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
    return write_config(
        tmp_path / "platform.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}]
    )


@pytest.fixture
def env_config(config_path, monkeypatch):
    """The Definitions' own resource reads the registry from the environment, as in production."""
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(config_path))
    return config_path


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


@pytest.fixture(scope="session")
def pg():
    """One throwaway PostgreSQL server for the session (Debian's postgresql package)."""
    from embeddings_platform.testing import PgServer

    server = PgServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def pg_table(pg, monkeypatch, request):
    """A fresh table per test (named after it), and the DSN in the default variable."""
    table = "t_" + request.node.name.removeprefix("test_")[:40]
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(
        f"CREATE TABLE {table} (key text, body text, raw bytea, lang text, "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    monkeypatch.setenv("EMBEDDINGS_PG_DSN", pg.dsn)
    return table
