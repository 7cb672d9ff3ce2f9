"""A malformed registry is rejected at load time with an error naming the field and the fix."""

import pytest

from embeddings_platform.core.config import ConfigError, load_config

from .conftest import write_config


def _load(tmp_path, sources, models=None, **extra):
    return load_config(write_config(tmp_path / "c.yaml", sources, models, **extra))


def test_valid_config_resolves_relative_paths(tmp_path, corpus):
    (tmp_path / "rel").mkdir()
    config = _load(tmp_path, [{"name": "a", "kind": "folder", "path": "rel"}])
    assert config.sources[0].path == tmp_path / "rel"
    assert config.models[0].chunking.max_tokens == 12


@pytest.mark.parametrize(
    "sources, message",
    [
        ([{"name": "a", "kind": "ftp", "path": "."}], r"sources\[0\]\.kind: unknown source kind 'ftp'"),
        ([{"name": "a", "kind": "folder"}], r"sources\[0\]\.path: source 'a' of kind 'folder' needs a path"),
        ([{"name": "a", "kind": "folder", "path": "missing"}], r"sources\[0\]\.path: .*missing does not exist"),
        ([{"name": "Bad Name", "kind": "pydoc_topics"}], r"sources\[0\]\.name: 'Bad Name' is not a valid name"),
        ([{"name": "a", "kind": "pydoc_topics"}, {"name": "a", "kind": "pydoc_topics"}],
         r"sources\[1\]\.name: 'a' is registered twice"),
    ],
)
def test_bad_sources_name_the_field(tmp_path, sources, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, sources)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"name": "m", "kind": "openai"}, r"models\[0\]\.kind: unknown model kind 'openai'"),
        ({"name": "m", "kind": "sentence-transformers"}, r"models\[0\]\.path: model 'm' needs a local path"),
        ({"name": "m", "kind": "hashing", "batch_size": 0}, r"models\[0\]\.batch_size: expected a positive"),
        ({"name": "m", "kind": "hashing", "chunking": {"max_tokens": 10, "overlap": 10}},
         r"models\[0\]\.chunking\.overlap"),
    ],
)
def test_bad_models_name_the_field(tmp_path, model, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, [{"name": "a", "kind": "pydoc_topics"}], [model])


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown top-level keys \['sauces'\]"):
        _load(tmp_path, [], sauces=[])
