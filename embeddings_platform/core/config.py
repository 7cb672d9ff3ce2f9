"""The registry of sources and model versions, read from one YAML file.

Every error names the offending field and how to fix it, because a config mistake is the
most common way a platform like this fails on day one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV = "EMBEDDINGS_PLATFORM_CONFIG"
STORAGE_ENV = "EMBEDDINGS_PLATFORM_STORAGE_URI"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "embeddings_platform.yaml"

SOURCE_KINDS = ("folder", "jsonl", "beir", "pydoc_topics")
MODEL_KINDS = ("sentence-transformers", "hashing")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """A config file problem, phrased as `field: what is wrong; how to fix it`."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    path: Path | None = None
    canary: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 256
    overlap: int = 32


@dataclass(frozen=True)
class ModelConfig:
    name: str
    kind: str
    path: str | None = None
    normalize: bool = True
    max_seq_length: int = 256
    batch_size: int = 32
    dimension: int = 256  # used by the hashing embedder only
    chunking: ChunkingConfig = ChunkingConfig()


@dataclass(frozen=True)
class ServingConfig:
    ann_min_rows: int = 20000
    retention_hours: float = 48.0


@dataclass(frozen=True)
class PlatformConfig:
    storage_uri: str
    sources: tuple[SourceConfig, ...]
    models: tuple[ModelConfig, ...]
    serving: ServingConfig = ServingConfig()
    config_path: Path | None = None

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"sources: no source named {name!r} (registered: {known})")

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models) or "none"
        raise ConfigError(f"models: no model named {name!r} (registered: {known})")


def _positive_int(raw: Any, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
        raise ConfigError(f"{where}: expected a positive whole number, got {raw!r}")
    return raw


def _resolve(base: Path, raw: Any, where: str) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{where}: expected a path string, got {raw!r}")
    path = Path(os.path.expandvars(raw)).expanduser()
    return path if path.is_absolute() else (base / path)


def _name(raw: Any, where: str, seen: set[str]) -> str:
    if not isinstance(raw, str) or not NAME_PATTERN.match(raw):
        raise ConfigError(
            f"{where}.name: {raw!r} is not a valid name; use lowercase letters, digits, "
            "'-' and '_' (it becomes a partition key and part of a table name)"
        )
    if raw in seen:
        raise ConfigError(f"{where}.name: {raw!r} is registered twice; give each a unique name")
    seen.add(raw)
    return raw


def _parse_chunking(raw: Any, where: str) -> ChunkingConfig:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with max_tokens and overlap")
    max_tokens = _positive_int(raw.get("max_tokens", 256), f"{where}.max_tokens")
    overlap = raw.get("overlap", 32)
    if not isinstance(overlap, int) or overlap < 0 or overlap >= max_tokens:
        raise ConfigError(f"{where}.overlap: must be a whole number in [0, max_tokens), got {overlap!r}")
    return ChunkingConfig(max_tokens=max_tokens, overlap=overlap)


def _parse_source(raw: Any, index: int, base: Path, seen: set[str]) -> SourceConfig:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name and kind")
    name = _name(raw.get("name"), where, seen)
    kind = raw.get("kind")
    if kind not in SOURCE_KINDS:
        raise ConfigError(
            f"{where}.kind: unknown source kind {kind!r} for source {name!r}; "
            f"use one of {', '.join(SOURCE_KINDS)}"
        )
    path = None
    if kind != "pydoc_topics":
        if "path" not in raw:
            raise ConfigError(f"{where}.path: source {name!r} of kind {kind!r} needs a path")
        path = _resolve(base, raw["path"], f"{where}.path")
        if not path.exists():
            raise ConfigError(f"{where}.path: {path} does not exist; fix the path or create it")
    canary = _resolve(base, raw["canary"], f"{where}.canary") if raw.get("canary") else None
    known = {"name", "kind", "path", "canary"}
    options = {k: v for k, v in raw.items() if k not in known}
    return SourceConfig(name=name, kind=kind, path=path, canary=canary, options=options)


def _parse_model(raw: Any, index: int, chunking: ChunkingConfig, seen: set[str]) -> ModelConfig:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name and kind")
    name = _name(raw.get("name"), where, seen)
    kind = raw.get("kind")
    if kind not in MODEL_KINDS:
        raise ConfigError(
            f"{where}.kind: unknown model kind {kind!r} for model {name!r}; "
            f"use one of {', '.join(MODEL_KINDS)}"
        )
    path = raw.get("path")
    if kind == "sentence-transformers" and not path:
        raise ConfigError(
            f"{where}.path: model {name!r} needs a local path or 'package:<module>' "
            "(nothing is downloaded at run time)"
        )
    normalize = raw.get("normalize", True)
    if not isinstance(normalize, bool):
        raise ConfigError(f"{where}.normalize: expected true or false, got {normalize!r}")
    return ModelConfig(
        name=name,
        kind=kind,
        path=path,
        normalize=normalize,
        max_seq_length=_positive_int(raw.get("max_seq_length", 256), f"{where}.max_seq_length"),
        batch_size=_positive_int(raw.get("batch_size", 32), f"{where}.batch_size"),
        dimension=_positive_int(raw.get("dimension", 256), f"{where}.dimension"),
        chunking=_parse_chunking(raw["chunking"], f"{where}.chunking") if "chunking" in raw else chunking,
    )


def parse_config(raw: Any, base_dir: Path, config_path: Path | None = None) -> PlatformConfig:
    """Validate a config mapping (as loaded from YAML) into a PlatformConfig."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping with storage, sources and models")
    unknown = set(raw) - {"storage", "sources", "models", "chunking", "serving"}
    if unknown:
        raise ConfigError(f"config: unknown top-level keys {sorted(unknown)}; remove them")
    storage = raw.get("storage") or {}
    uri = os.environ.get(STORAGE_ENV) or storage.get("uri") or ".embeddings_platform/lancedb"
    if "://" not in uri:
        uri = str(_resolve(base_dir, uri, "storage.uri"))
    chunking = _parse_chunking(raw.get("chunking"), "chunking")
    sources_raw = raw.get("sources") or []
    models_raw = raw.get("models") or []
    if not isinstance(sources_raw, list) or not isinstance(models_raw, list):
        raise ConfigError("sources / models: expected lists")
    seen_sources: set[str] = set()
    seen_models: set[str] = set()
    sources = tuple(_parse_source(s, i, base_dir, seen_sources) for i, s in enumerate(sources_raw))
    models = tuple(_parse_model(m, i, chunking, seen_models) for i, m in enumerate(models_raw))
    serving_raw = raw.get("serving") or {}
    serving = ServingConfig(
        ann_min_rows=_positive_int(serving_raw.get("ann_min_rows", 20000), "serving.ann_min_rows"),
        retention_hours=float(serving_raw.get("retention_hours", 48)),
    )
    return PlatformConfig(uri, sources, models, serving, config_path)


def load_config(path: str | Path | None = None) -> PlatformConfig:
    """Load the registry from `path`, $EMBEDDINGS_PLATFORM_CONFIG, or the bundled default."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    if not path.exists():
        raise ConfigError(f"config: {path} does not exist; set {CONFIG_ENV} to your config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc
    return parse_config(raw, path.parent, path)
