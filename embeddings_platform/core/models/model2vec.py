"""`model2vec`: a static model (token-embedding lookup and mean, no transformer at run time),
distilled here from an installed sentence-transformers model. ~140x faster than MiniLM on
these cores, at about half its retrieval quality (benchmarks/RESULTS.md)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic.dataclasses import dataclass as settings

from ..registry import STRICT, ConfigError, PositiveInt, model_kind
from .base import (
    Counting,
    FastTokenizer,
    ModelPath,
    ModelSettings,
    check_loadable,
    folder_tokenizer_fingerprint,
    resolve_model_path,
    weights_sha256,
)


@model_kind("model2vec")
@settings(config=STRICT, kw_only=True)
class Model2VecModel(ModelSettings):
    kind: Literal["model2vec"] = "model2vec"
    path: ModelPath  # the model2vec folder; made from distill_from if missing
    distill_from: ModelPath | None = None  # an installed sentence-transformers model
    pca_dims: PositiveInt = 256  # dimensions kept when distilling

    def check(self, where: str) -> None:
        if self.is_prepared():
            return
        if not self.distill_from:
            raise ConfigError(
                f"{where}.path: {self.path} does not exist; point it at a model2vec folder or set "
                f"{where}.distill_from to an installed model to make it from"
            )
        check_loadable(self.distill_from, f"{where}.distill_from")

    def is_prepared(self) -> bool:
        return (Path(self.path) / "model.safetensors").exists()

    def prepare(self) -> None:
        distilled_model_path(self)

    def identity(self) -> tuple[str, str]:
        return weights_sha256(self._ready_path()), f"model2vec-static-pca{self.pca_dims}"

    def tokenizer_fingerprint(self) -> str:
        return folder_tokenizer_fingerprint(self._ready_path())

    def tokenizer(self) -> FastTokenizer:
        return FastTokenizer(self._ready_path() / "tokenizer.json")

    def load(self) -> "StaticModelEmbedder":
        return StaticModelEmbedder(self._ready_path(), self.normalize, self.batch_size)

    def _ready_path(self) -> Path:
        if not self.is_prepared():
            raise ConfigError(
                f"models[{self.name}]: the static model at {self.path} is not distilled yet; "
                "run `embeddings-platform prepare` (or any materialize run) first"
            )
        return Path(self.path).resolve()


def distilled_model_path(model: Model2VecModel) -> Path:
    """The folder of a model2vec model, distilled from an installed model the first time.

    Distilling embeds the teacher's vocabulary once (about 80 s for MiniLM on 2 cores) and
    needs nothing from the network; a lock keeps concurrent processes from doing it twice.
    """
    path = Path(model.path)
    if model.is_prepared():
        return path.resolve()
    if not model.distill_from:
        raise ConfigError(
            f"models.path: no model2vec model at {path}; set distill_from to make it from an "
            "installed model"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not model.is_prepared():
            from model2vec.distill import distill

            teacher = resolve_model_path(model.distill_from)
            distill(model_name=str(teacher), pca_dims=model.pca_dims, device="cpu").save_pretrained(
                str(path)
            )
    return path.resolve()


class StaticModelEmbedder(Counting):
    def __init__(self, path: Path, normalize: bool, batch_size: int):
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(path), normalize=normalize)
        self.normalize = normalize
        self.batch_size = batch_size
        self.dimension = int(self.model.dim)
        self.tokenizer = FastTokenizer(path / "tokenizer.json")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._count(texts)
        return np.asarray(
            self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=False),
            dtype=np.float32,
        )
