"""`hashing`: a deterministic bag-of-words embedder. No weights, no download, instant.

Used by the unit tests (it counts its calls) and usable for demos: texts sharing words land
near each other, so search results are meaningful in tests.
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence

import numpy as np
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, PositiveInt, model_kind
from .base import WORD, Counting, ModelSettings, WordTokenizer


@model_kind("hashing")
@settings(config=STRICT, kw_only=True)
class HashingModel(ModelSettings):
    kind: Literal["hashing"] = "hashing"
    dimension: PositiveInt = 256

    def identity(self) -> tuple[str, str]:
        return hashlib.sha256(f"hashing-blake2b-{self.dimension}".encode()).hexdigest(), "numpy"

    def tokenizer_fingerprint(self) -> str:
        return WordTokenizer.fingerprint

    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer()

    def load(self) -> "HashingEmbedder":
        return HashingEmbedder(self.dimension, self.normalize)

    def output_dimension(self) -> int:
        return self.dimension


class HashingEmbedder(Counting):
    def __init__(self, dimension: int = 256, normalize: bool = True):
        self.dimension = dimension
        self.normalize = normalize
        self.tokenizer = WordTokenizer()

    def _bucket(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._count(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in WORD.findall(text.lower()):
                if token.isalnum():
                    index, sign = self._bucket(token)
                    out[row, index] += sign
            out[row] = np.sign(out[row]) * np.log1p(np.abs(out[row]))
            if self.normalize:
                norm = np.linalg.norm(out[row])
                if norm > 0:
                    out[row] /= norm
        return out
