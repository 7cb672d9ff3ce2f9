"""The registry of sources and model versions, read from one YAML file.

Every error names the offending field and how to fix it, because a config mistake is the
most common way a platform like this fails on day one.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .sharding import parse_key as parse_shard_key, shard_keys

CONFIG_ENV = "EMBEDDINGS_PLATFORM_CONFIG"
STORAGE_ENV = "EMBEDDINGS_PLATFORM_STORAGE_URI"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "embeddings_platform.yaml"

SOURCE_KINDS = ("folder", "jsonl", "beir", "pydoc_topics")
MODEL_KINDS = ("sentence-transformers", "model2vec", "hashing")
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

    @property
    def shards(self) -> int:
        return int(self.options.get("shards", 1))

    @property
    def partition_keys(self) -> list[str]:
        """One `source` partition per shard (just the name when unsharded)."""
        return shard_keys(self.name, self.shards)


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
    distill_from: str | None = None  # model2vec: make `path` from this installed model if missing
    pca_dims: int = 256              # model2vec: dimensions kept when distilling


def model_from_spec(spec: dict[str, Any]) -> ModelConfig:
    """A ModelConfig from the settings the store recorded for a version (`asdict` of one)."""
    fields = {k: v for k, v in spec.items() if k in ModelConfig.__dataclass_fields__}
    fields["chunking"] = ChunkingConfig(**(spec.get("chunking") or {}))
    return ModelConfig(**fields)


@dataclass(frozen=True)
class ServingConfig:
    ann_min_rows: int = 20000
    retention_hours: float = 48.0
    # An emptied source serves an empty index (nothing deleted stays findable). False keeps the
    # last good target instead, and the staleness check reports ERROR until documents return.
    serve_empty: bool = True


@dataclass(frozen=True)
class ChecksConfig:
    """Thresholds of the asset checks (the `checks:` section; see docs/checks.md)."""

    stale_fraction_warn: float = 0.0     # stale or missing share of rows/docs above this: WARN
    stale_fraction_error: float = 0.10   # ... above this: ERROR
    lag_hours_warn: float = 1.0          # served data behind the newest snapshot longer: WARN
    lag_hours_error: float = 24.0        # ... longer than this: ERROR
    staleness_cron: str = "*/30 * * * *"  # schedule of the time-based staleness check
    ann_recall_floor: float = 0.95       # ANN recall@k vs exact search below this: ERROR
    ann_sample: int = 50                 # stored vectors used as queries
    ann_k: int = 10
    recall_k: int = 10                   # retrieval recall@k / nDCG@k on labelled queries
    recall_drop_warn_points: float = 2.0   # drop below the baseline (points): WARN
    recall_drop_error_points: float = 5.0  # ... larger drop: ERROR
    min_recall: float = 0.0              # absolute floor (ERROR); also gates the first baseline


@dataclass(frozen=True)
class MigrationConfig:
    """The evaluation gate a shadow index passes before it serves (`migration:`; docs/migration.md)."""

    k: int = 10
    max_recall_drop: float = 0.02  # candidate recall@k may be at most this much below what serves
    max_ndcg_drop: float = 0.02    # ... and nDCG@k at most this much
    min_queries: int = 1           # labelled queries needed to decide at all (else the gate fails)


@dataclass(frozen=True)
class RetryConfig:
    """How failing model calls are retried and bisected (the `retry:` section; docs/robustness.md)."""

    attempts: int = 4              # tries of a whole batch before it is split
    initial_seconds: float = 0.5   # first backoff; doubles each try, with random jitter
    max_seconds: float = 30.0      # longest single backoff
    budget_seconds: float = 120.0  # stop retrying a batch after this long
    bisect_attempts: int = 2       # tries of each half once a batch is being split


@dataclass(frozen=True)
class RefreshConfig:
    """How the platform keeps itself current (the `refresh:` section; see docs/refresh.md)."""

    sensor_interval_seconds: int = 10      # how often sources are compared (listing, content hash)
    automation_interval_seconds: int = 10  # how often automation carries changes downstream
    freshness_warn_hours: float = 12.0  # an asset not re-checked for this long is WARN in the UI ...
    freshness_fail_hours: float = 24.0  # ... and FAIL after this long; the sensor re-checks at warn
    sweep_cron: str = "0 3 * * *"       # the full consistency sweep over every (source, model)


@dataclass(frozen=True)
class PlatformConfig:
    storage_uri: str
    sources: tuple[SourceConfig, ...]
    models: tuple[ModelConfig, ...]
    serving: ServingConfig = ServingConfig()
    config_path: Path | None = None
    checks: ChecksConfig = ChecksConfig()
    refresh: RefreshConfig = RefreshConfig()
    migration: MigrationConfig = MigrationConfig()
    retry: RetryConfig = RetryConfig()

    def source(self, name: str) -> SourceConfig:
        """A registered source by name, or one shard of it by its partition key."""
        shard = parse_shard_key(name)
        for source in self.sources:
            if source.name == name:
                return source
            if source.name == shard.source and shard.count == source.shards > 1:
                return replace(source, name=name)
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


def _check_loadable(spec: str, where: str, base: Path) -> None:
    """A model that cannot be loaded is a config error now, not a failed run later."""
    if str(spec).startswith("package:"):
        module = str(spec).split(":", 1)[1]
        if not module or importlib.util.find_spec(module) is None:
            raise ConfigError(f"{where}: package {module!r} is not installed; pip install it, or point "
                              "the path at a local model folder (nothing is downloaded at run time)")
    elif not _resolve(base, spec, where).exists():
        raise ConfigError(f"{where}: {spec} does not exist; point it at a local model folder or 'package:<module>'")


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
    if "shards" in options:
        options["shards"] = _positive_int(options["shards"], f"{where}.shards")
    return SourceConfig(name=name, kind=kind, path=path, canary=canary, options=options)


def _parse_model(raw: Any, index: int, chunking: ChunkingConfig, seen: set[str], base: Path) -> ModelConfig:
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
    if kind in ("sentence-transformers", "model2vec") and not path:
        raise ConfigError(
            f"{where}.path: model {name!r} needs a local path or 'package:<module>' "
            "(nothing is downloaded at run time)"
        )
    if path and not str(path).startswith("package:"):
        path = str(_resolve(base, path, f"{where}.path"))
    distill_from = raw.get("distill_from")
    if kind == "model2vec" and not Path(path).exists():
        if not distill_from:
            raise ConfigError(f"{where}.path: {path} does not exist; point it at a model2vec folder or set "
                              f"{where}.distill_from to an installed model to make it from")
        _check_loadable(distill_from, f"{where}.distill_from", base)
    elif kind == "sentence-transformers":
        _check_loadable(path, f"{where}.path", base)
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
        distill_from=distill_from,
        pca_dims=_positive_int(raw.get("pca_dims", 256), f"{where}.pca_dims"),
    )


def parse_config(raw: Any, base_dir: Path, config_path: Path | None = None) -> PlatformConfig:
    """Validate a config mapping (as loaded from YAML) into a PlatformConfig."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping with storage, sources and models")
    unknown = set(raw) - {"storage", "sources", "models", "chunking", "serving", "checks", "refresh", "migration",
                        "retry"}
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
    models = tuple(_parse_model(m, i, chunking, seen_models, base_dir) for i, m in enumerate(models_raw))
    serving_raw = _section(raw.get("serving"), "serving", ("ann_min_rows", "retention_hours", "serve_empty"))
    serve_empty = serving_raw.get("serve_empty", True)
    if not isinstance(serve_empty, bool):
        raise ConfigError(f"serving.serve_empty: expected true or false, got {serve_empty!r}")
    serving = ServingConfig(
        ann_min_rows=_positive_int(serving_raw.get("ann_min_rows", 20000), "serving.ann_min_rows"),
        retention_hours=_non_negative(serving_raw.get("retention_hours"), "serving.retention_hours", 48.0),
        serve_empty=serve_empty,
    )
    return PlatformConfig(uri, sources, models, serving, config_path, checks=_parse_checks(raw.get("checks")),
                          refresh=_parse_refresh(raw.get("refresh")), migration=_parse_migration(raw.get("migration")),
                          retry=_parse_retry(raw.get("retry")))


def _section(raw: Any, name: str, keys: tuple[str, ...]) -> dict:
    """A config section as a mapping with only known keys, or a ConfigError that lists them."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping ({', '.join(keys)})")
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"{name}: unknown keys {sorted(unknown)}; use {', '.join(keys)}")
    return raw


def _parse_retry(raw: Any) -> RetryConfig:
    raw = _section(raw, "retry", ("attempts", "initial_seconds", "max_seconds", "budget_seconds", "bisect_attempts"))
    d = RetryConfig()
    return RetryConfig(
        attempts=_positive_int(raw.get("attempts", d.attempts), "retry.attempts"),
        initial_seconds=_non_negative(raw.get("initial_seconds"), "retry.initial_seconds", d.initial_seconds),
        max_seconds=_non_negative(raw.get("max_seconds"), "retry.max_seconds", d.max_seconds),
        budget_seconds=_non_negative(raw.get("budget_seconds"), "retry.budget_seconds", d.budget_seconds),
        bisect_attempts=_positive_int(raw.get("bisect_attempts", d.bisect_attempts), "retry.bisect_attempts"),
    )


def _parse_migration(raw: Any) -> MigrationConfig:
    raw = _section(raw, "migration", ("k", "max_recall_drop", "max_ndcg_drop", "min_queries"))
    default = MigrationConfig()
    return MigrationConfig(
        k=_positive_int(raw.get("k", default.k), "migration.k"),
        max_recall_drop=_fraction(raw.get("max_recall_drop"), "migration.max_recall_drop", default.max_recall_drop),
        max_ndcg_drop=_fraction(raw.get("max_ndcg_drop"), "migration.max_ndcg_drop", default.max_ndcg_drop),
        min_queries=_positive_int(raw.get("min_queries", default.min_queries), "migration.min_queries"),
    )


def _parse_refresh(raw: Any) -> RefreshConfig:
    raw = _section(raw, "refresh", ("sensor_interval_seconds", "automation_interval_seconds",
                                    "freshness", "sweep_cron"))
    default = RefreshConfig()
    freshness = raw.get("freshness") or {}
    if not isinstance(freshness, dict):
        raise ConfigError("refresh.freshness: expected {warn_hours: H, fail_hours: H}")
    warn = float(freshness.get("warn_hours", default.freshness_warn_hours))
    fail = float(freshness.get("fail_hours", default.freshness_fail_hours))
    if not 0 < warn <= fail:
        raise ConfigError(f"refresh.freshness: need 0 < warn_hours <= fail_hours, got {warn} and {fail}")
    cron = str(raw.get("sweep_cron", default.sweep_cron))
    if len(cron.split()) != 5:
        raise ConfigError(f"refresh.sweep_cron: {cron!r} is not a 5-field cron expression")
    return RefreshConfig(
        sensor_interval_seconds=_positive_int(raw.get("sensor_interval_seconds", default.sensor_interval_seconds),
                                              "refresh.sensor_interval_seconds"),
        automation_interval_seconds=_positive_int(
            raw.get("automation_interval_seconds", default.automation_interval_seconds),
            "refresh.automation_interval_seconds"),
        freshness_warn_hours=warn, freshness_fail_hours=fail, sweep_cron=cron,
    )


def _fraction(raw: Any, where: str, default: float) -> float:
    value = default if raw is None else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: expected a number between 0 and 1, got {value!r}")
    return float(value)


def _non_negative(raw: Any, where: str, default: float) -> float:
    value = default if raw is None else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _levels(raw: Any, where: str) -> dict[str, Any]:
    raw = raw or {}
    if not isinstance(raw, dict) or set(raw) - {"warn", "error"}:
        raise ConfigError(f"{where}: expected a mapping with 'warn' and/or 'error', got {raw!r}")
    return raw


def _parse_checks(raw: Any) -> ChecksConfig:
    """The `checks:` section: staleness, ann_recall and retrieval thresholds."""
    d = ChecksConfig()
    raw = raw or {}
    groups = {"staleness", "ann_recall", "retrieval"}
    if not isinstance(raw, dict) or set(raw) - groups:
        unknown = sorted(set(raw) - groups) if isinstance(raw, dict) else raw
        raise ConfigError(f"checks: unknown keys {unknown!r}; use {sorted(groups)}")
    sections = {}
    allowed = {"staleness": {"stale_fraction", "lag_hours", "schedule"},
               "ann_recall": {"floor", "sample", "k"},
               "retrieval": {"k", "drop_points", "min_recall"}}
    for group in groups:
        section = raw.get(group) or {}
        if not isinstance(section, dict) or set(section) - allowed[group]:
            unknown = sorted(set(section) - allowed[group]) if isinstance(section, dict) else section
            raise ConfigError(f"checks.{group}: unknown keys {unknown!r}; use {sorted(allowed[group])}")
        sections[group] = section
    st, ann, ret = sections["staleness"], sections["ann_recall"], sections["retrieval"]
    frac = _levels(st.get("stale_fraction"), "checks.staleness.stale_fraction")
    lag = _levels(st.get("lag_hours"), "checks.staleness.lag_hours")
    drop = _levels(ret.get("drop_points"), "checks.retrieval.drop_points")
    cron = st.get("schedule", d.staleness_cron)
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ConfigError(f"checks.staleness.schedule: expected a 5-field cron string, got {cron!r}")
    checks = ChecksConfig(
        stale_fraction_warn=_fraction(frac.get("warn"), "checks.staleness.stale_fraction.warn", d.stale_fraction_warn),
        stale_fraction_error=_fraction(frac.get("error"), "checks.staleness.stale_fraction.error", d.stale_fraction_error),
        lag_hours_warn=_non_negative(lag.get("warn"), "checks.staleness.lag_hours.warn", d.lag_hours_warn),
        lag_hours_error=_non_negative(lag.get("error"), "checks.staleness.lag_hours.error", d.lag_hours_error),
        staleness_cron=cron,
        ann_recall_floor=_fraction(ann.get("floor"), "checks.ann_recall.floor", d.ann_recall_floor),
        ann_sample=_positive_int(ann.get("sample", d.ann_sample), "checks.ann_recall.sample"),
        ann_k=_positive_int(ann.get("k", d.ann_k), "checks.ann_recall.k"),
        recall_k=_positive_int(ret.get("k", d.recall_k), "checks.retrieval.k"),
        recall_drop_warn_points=_non_negative(drop.get("warn"), "checks.retrieval.drop_points.warn",
                                              d.recall_drop_warn_points),
        recall_drop_error_points=_non_negative(drop.get("error"), "checks.retrieval.drop_points.error",
                                               d.recall_drop_error_points),
        min_recall=_fraction(ret.get("min_recall"), "checks.retrieval.min_recall", d.min_recall),
    )
    for name, low, high in (("checks.staleness.stale_fraction", checks.stale_fraction_warn, checks.stale_fraction_error),
                            ("checks.staleness.lag_hours", checks.lag_hours_warn, checks.lag_hours_error),
                            ("checks.retrieval.drop_points", checks.recall_drop_warn_points,
                             checks.recall_drop_error_points)):
        if high < low:
            raise ConfigError(f"{name}.error: must be >= {name}.warn ({low}), got {high}")
    return checks


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
