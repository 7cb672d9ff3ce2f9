"""Model kinds, one module each, registered by name (`core/registry.py`), and what the rest of
the platform asks of any model: its version identity, tokenizer, embedder and dimension.

To add a kind: a module with a `@model_kind("name")` settings dataclass that subclasses
`ModelSettings` and implements `identity`, `tokenizer_fingerprint`, `tokenizer` and `load`
(and `prepare`/`is_prepared` if it makes files first), then one import line here.
"""

from __future__ import annotations

from .base import (
    Embedder,
    FastTokenizer,
    HuggingFaceTokenizer,
    ModelSettings,
    ModelVersion,
    Tokenizer,
    WordTokenizer,
    resolve_model_path,
    weights_sha256,
)
from .hashing import HashingEmbedder, HashingModel
from .model2vec import Model2VecModel, StaticModelEmbedder, distilled_model_path
from .onnx_int8 import OnnxEmbedder, OnnxInt8Model
from .sentence_transformers import (
    SentenceTransformerEmbedder,
    SentenceTransformersModel,
)

__all__ = [
    "Embedder",
    "FastTokenizer",
    "HashingEmbedder",
    "HashingModel",
    "HuggingFaceTokenizer",
    "Model2VecModel",
    "ModelSettings",
    "ModelVersion",
    "OnnxEmbedder",
    "OnnxInt8Model",
    "SentenceTransformerEmbedder",
    "SentenceTransformersModel",
    "StaticModelEmbedder",
    "Tokenizer",
    "WordTokenizer",
    "cached_embedder",
    "chunk_window",
    "chunking_strategy_id",
    "clear_embedder_cache",
    "distilled_model_path",
    "load_embedder",
    "load_tokenizer",
    "model_dimension",
    "model_is_prepared",
    "model_version",
    "prepare_model",
    "resolve_model_path",
    "weights_sha256",
]


def chunk_window(model: ModelSettings) -> int:
    """Tokens per chunk: the configured window, capped so the model's special tokens fit."""
    cap = model.max_seq_length - model.special_tokens
    return max(1, min(model.chunking.max_tokens, cap))


def chunking_strategy_id(model: ModelSettings) -> str:
    """Names every setting that shapes chunk boundaries (tokenizer, window, overlap)."""
    return f"tok{chunk_window(model)}-ov{model.chunking.overlap}-{model.tokenizer_fingerprint()}"


def model_version(model: ModelSettings) -> ModelVersion:
    """The version identity, computed from files and settings without loading the model.

    Cheap enough for sensors: weights are hashed once per (path, size, mtime). A model whose
    files are not prepared yet raises ConfigError (check `model_is_prepared` first).
    """
    weights, backend = model.identity()
    return ModelVersion(
        name=model.name,
        kind=model.kind,
        weights_sha256=weights,
        normalize=model.normalize,
        max_seq_length=model.max_seq_length,
        backend=backend,
        chunking_strategy=chunking_strategy_id(model),
    )


def load_embedder(model: ModelSettings) -> Embedder:
    """Load the model itself (slow for real models: do it only when embedding)."""
    return model.load()


_EMBEDDERS: dict[str, Embedder] = {}


def cached_embedder(model: ModelSettings) -> Embedder:
    """One loaded model per version per process: loading MiniLM takes seconds, so a process
    that searches or embeds again (a worker, a notebook, the Python API) loads it once."""
    key = model_version(model).version_id
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = load_embedder(model)
    return _EMBEDDERS[key]


def clear_embedder_cache() -> None:
    _EMBEDDERS.clear()


def load_tokenizer(model: ModelSettings) -> Tokenizer:
    """Only the tokenizer (fast: no weights), for chunking without loading the model."""
    return model.tokenizer()


def model_dimension(model: ModelSettings) -> int | None:
    """The dimension a model produces, read from its files without loading it (None: unknown)."""
    return model.output_dimension()


def model_is_prepared(model: ModelSettings) -> bool:
    return model.is_prepared()


def prepare_model(model: ModelSettings) -> None:
    """Make the files a version is made of (distil, export): in a run or at setup,
    never in a tick."""
    model.prepare()
