"""The registry of sources and model versions, read from one YAML file into typed settings.

Sources and models are kinds registered by name (`core/sources/`, `core/models/`), each with its
own settings schema; the other sections are in `core/settings.py`. Unknown keys anywhere are
errors. Every error names the field path and the fix in one line, because a config mistake is
the most common way a platform like this fails on day one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from .models import ModelSettings
from .registry import MODEL_KINDS, SOURCE_KINDS, STRICT, ConfigError, SourceError
from .settings import (
    ChecksConfig,
    ChunkingConfig,
    DocumentsConfig,
    MigrationConfig,
    RefreshConfig,
    RetryConfig,
    ServingConfig,
)
from .sharding import parse_key as parse_shard_key
from .sources import SourceSettings

__all__ = [
    "CONFIG_ENV",
    "STORAGE_ENV",
    "ChecksConfig",
    "ChunkingConfig",
    "ConfigError",
    "DocumentsConfig",
    "MigrationConfig",
    "ModelConfig",
    "PlatformConfig",
    "RefreshConfig",
    "RetryConfig",
    "ServingConfig",
    "SourceConfig",
    "SourceError",
    "check_source_path",
    "source_from",
    "find_config",
    "load_config",
    "model_from_spec",
    "parse_config",
]

CONFIG_ENV = "EMBEDDINGS_PLATFORM_CONFIG"
STORAGE_ENV = "EMBEDDINGS_PLATFORM_STORAGE_URI"
CONFIG_NAME = "embeddings_platform.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / CONFIG_NAME
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOP_LEVEL = (
    "storage",
    "sources",
    "models",
    "chunking",
    "serving",
    "checks",
    "refresh",
    "migration",
    "retry",
    "documents",
)

SourceConfig = SourceSettings  # any source kind (for type hints)
ModelConfig = ModelSettings  # any model kind
_AnySource = Annotated[Union[tuple(SOURCE_KINDS.values())], Field(discriminator="kind")]
_AnyModel = Annotated[Union[tuple(MODEL_KINDS.values())], Field(discriminator="kind")]


@dataclass(config=STRICT, kw_only=True)
class PlatformConfig:
    storage_uri: str
    sources: tuple[_AnySource, ...] = ()
    models: tuple[_AnyModel, ...] = ()
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
    config_path: Path | None = None
    checks: ChecksConfig = dataclasses.field(default_factory=ChecksConfig)
    refresh: RefreshConfig = dataclasses.field(default_factory=RefreshConfig)
    migration: MigrationConfig = dataclasses.field(default_factory=MigrationConfig)
    retry: RetryConfig = dataclasses.field(default_factory=RetryConfig)
    documents: DocumentsConfig = dataclasses.field(default_factory=DocumentsConfig)
    chunking: ChunkingConfig = dataclasses.field(default_factory=ChunkingConfig)

    @model_validator(mode="after")
    def _names(self) -> "PlatformConfig":
        for section, items in (("sources", self.sources), ("models", self.models)):
            seen: set[str] = set()
            for index, item in enumerate(items):
                if not NAME_PATTERN.match(item.name):
                    raise ValueError(
                        f"{section}[{index}].name: {item.name!r} is not a valid name; use "
                        "lowercase letters, digits, '-' and '_' (it becomes a partition key and "
                        "part of a table name)"
                    )
                if item.name in seen:
                    raise ValueError(
                        f"{section}[{index}].name: {item.name!r} is registered twice; give each a "
                        "unique name"
                    )
                seen.add(item.name)
        models = {m.name for m in self.models}
        for index, source in enumerate(self.sources):
            if source.serve_model is not None and source.serve_model not in models:
                raise ValueError(
                    f"sources[{index}].serve_model: no model named {source.serve_model!r}; use one "
                    f"of {', '.join(sorted(models)) or 'the registered models'}"
                )
        return self

    def source(self, name: str) -> SourceSettings:
        """A registered source by name, or one shard of it by its partition key."""
        known = ", ".join(s.name for s in self.sources) or "none"
        try:
            shard = parse_shard_key(name)
        except ValueError as exc:  # e.g. notes.shard-5-of-2
            raise ConfigError(f"sources: {exc}; registered sources: {known}") from exc
        for source in self.sources:
            if source.name == name:
                return source
            if source.name == shard.source and shard.count == source.shards > 1:
                return dataclasses.replace(source, name=name)
        raise ConfigError(
            f"sources: no source named {name!r} is registered; registered sources: {known}"
        )

    def model(self, name: str) -> ModelSettings:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models) or "none"
        raise ConfigError(
            f"models: no model named {name!r} is registered; registered models: {known}"
        )

    def serving_model(self, source: str) -> str:
        """The model a source serves from until a migration: `serve_model`, else the first."""
        return self.source(source).serve_model or self.models[0].name


def check_source_path(source: SourceSettings) -> None:
    """Raise SourceError, naming the source and the setting, if it cannot be read at all."""
    source.check()


def model_from_spec(spec: dict[str, Any]) -> ModelSettings:
    """The settings the store recorded for a version (`dataclasses.asdict` of one)."""
    return TypeAdapter(_AnyModel).validate_python(spec)


def source_from(**fields: Any) -> SourceSettings:
    """One source's settings from registry keys,
    e.g. source_from(name="n", kind="folder", path=p)."""
    return TypeAdapter(_AnySource).validate_python(fields)


def parse_config(raw: Any, base_dir: Path, config_path: Path | None = None) -> PlatformConfig:
    """Validate a config mapping (as loaded from YAML) into a PlatformConfig."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping with storage, sources and models")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"config: unknown top-level keys {unknown}; use {', '.join(TOP_LEVEL)}")
    storage = raw.get("storage") or {}
    if not isinstance(storage, dict) or set(storage) - {"uri"}:
        raise ConfigError("storage: expected a mapping with uri (a folder or an object-store URI)")
    uri = os.environ.get(STORAGE_ENV) or storage.get("uri") or ".embeddings_platform/lancedb"
    if "://" not in uri:
        uri = str(
            Path(os.path.expandvars(uri)).expanduser()
            if Path(uri).is_absolute()
            else base_dir / uri
        )
    chunking = raw.get("chunking") or {}
    models = raw.get("models") or []
    if isinstance(models, list):  # a model without its own chunking takes the top-level one
        models = [
            dict(m, chunking=m.get("chunking") or chunking) if isinstance(m, dict) else m
            for m in models
        ]
    fields = {
        "storage_uri": uri,
        "sources": raw.get("sources") or [],
        "models": models,
        "chunking": chunking,
        "config_path": config_path,
    }
    fields.update(
        {
            key: raw.get(key) or {}
            for key in ("serving", "checks", "refresh", "migration", "retry", "documents")
        }
    )
    try:
        config = TypeAdapter(PlatformConfig).validate_python(fields, context={"base": base_dir})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    for index, model in enumerate(config.models):
        model.check(f"models[{index}]")
    return config


def _one_line(exc: ValidationError) -> str:
    """The first error as `field.path: what is wrong; the fix`, in the registry's own terms."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    kinds = {"sources": SOURCE_KINDS, "models": MODEL_KINDS}
    where = ""
    for position, item in enumerate(loc):
        if isinstance(item, int):
            where += f"[{item}]"
        elif position >= 2 and isinstance(loc[position - 1], int) and item in kinds.get(loc[0], {}):
            continue  # the discriminated union's tag: the kind is in the message when it matters
        else:
            where += ("." if where else "") + _yaml_key(loc[0], str(item))
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    if kind == "union_tag_invalid":
        what = "source" if loc[0] == "sources" else "model"
        message = (
            f"unknown {what} kind {error['ctx']['tag']!r}; use one of "
            f"{', '.join(sorted(kinds[loc[0]]))}"
        )
        where += ".kind"
    elif kind == "union_tag_not_found":
        message = f"needs a kind; use one of {', '.join(sorted(kinds[loc[0]]))}"
        where += ".kind"
    elif kind == "missing":
        owner = error.get("input") if isinstance(error.get("input"), dict) else {}
        what = "source" if loc[0] == "sources" else "model" if loc[0] == "models" else loc[0]
        field = str(loc[-1])
        message = (
            f"{what} {owner.get('name')!r} of kind {owner.get('kind')!r} needs a {field}; add it"
            if owner.get("name")
            else f"{field} is required; add it"
        )
    elif kind != "value_error" and "input" in error:
        message += f", got {error['input']!r}"
    if message.split(":", 1)[0].startswith(("sources[", "models[")):
        return message  # a cross-field rule that names its own field
    return f"{where}: {message}" if where else f"config: {message}"


def _yaml_key(section: str, name: str) -> str:
    """A flat settings field -> where it sits in the YAML (checks.ann_recall.floor)."""
    for cls in (ChecksConfig, RefreshConfig):
        if section in ("checks", "refresh") and name in {f.name for f in dataclasses.fields(cls)}:
            for path, field in _walk(cls.LAYOUT):
                if field == name:
                    return path
    return name


def _walk(layout: dict[str, Any], prefix: str = ""):
    for key, value in layout.items():
        if isinstance(value, str):
            yield prefix + key, value
        else:
            yield from _walk(value, f"{prefix}{key}.")


def find_config(start: Path | None = None) -> Path | None:
    """The registry a command run here means: `embeddings_platform.yaml` in this folder or the
    nearest parent (as git finds its repository), else $EMBEDDINGS_PLATFORM_CONFIG."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate / CONFIG_NAME
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def load_config(path: str | Path | None = None) -> PlatformConfig:
    """Load the registry from `path`, $EMBEDDINGS_PLATFORM_CONFIG, or the bundled default."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    if not path.exists():
        raise ConfigError(f"config: {path} does not exist; set {CONFIG_ENV} to your config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config: {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from exc
    return parse_config(raw, path.parent, path)
