"""The registry's sections other than sources and models, as typed, strict settings.

Each section is a frozen pydantic dataclass: unknown keys are errors, values are checked, and
cross-field rules (warn <= error, overlap < max_tokens) are validators. Where the YAML nests
(`checks.staleness.stale_fraction.warn`), a before-validator maps it onto flat fields, so code
reads `checks.stale_fraction_warn` and every default lives in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import StrictBool, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from .registry import STRICT, Fraction, KnownKeys, NonNegativeFloat, PositiveInt
from .retrieval import RetrievalProfile


def _cron(value: Any) -> Any:
    if not isinstance(value, str) or len(value.split()) != 5:
        raise ValueError(f"expected a 5-field cron string, got {value!r}")
    return value


def _ordered(low: float, high: float, name: str) -> None:
    if high < low:
        raise ValueError(f"{name}.error must be >= {name}.warn ({low}), got {high}")


class NestedYaml:
    """Mixin of sections whose YAML nests: LAYOUT maps each YAML key to a field, or a nested
    key to a mapping of its own keys to fields. Code constructs them with flat field names."""

    LAYOUT: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        if raw is None:
            return {}
        if isinstance(raw, ArgsKwargs):  # constructed in code
            return raw
        if isinstance(raw, dict) and set(raw) <= {f.name for f in dataclasses.fields(cls)}:
            return raw  # constructed in code, with field names
        return _flatten(raw, cls.LAYOUT, "")


def _flatten(raw: Any, layout: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}expected a mapping with {', '.join(layout)}, got {raw!r}")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in layout:
            raise ValueError(f"{where}unknown key {key!r}; use {', '.join(layout)}")
        target = layout[key]
        if isinstance(target, str):
            flat[target] = value
        elif value is not None:
            flat.update(_flatten(value, target, f"{where}{key}: "))
    return flat


def _levels(prefix: str, suffix: str = "") -> dict[str, str]:
    return {"warn": f"{prefix}_warn{suffix}", "error": f"{prefix}_error{suffix}"}


@dataclass(config=STRICT, kw_only=True)
class ChunkingConfig(KnownKeys):
    max_tokens: PositiveInt = 256
    overlap: NonNegativeFloat | int = 32

    @model_validator(mode="after")
    def _overlap_below_window(self) -> "ChunkingConfig":
        if not isinstance(self.overlap, int) or self.overlap >= self.max_tokens:
            raise ValueError(
                f"overlap must be a whole number below max_tokens ({self.max_tokens}), "
                f"got {self.overlap!r}"
            )
        return self


@dataclass(config=STRICT, kw_only=True)
class ServingConfig(KnownKeys):
    ann_min_rows: PositiveInt = 20000  # below this, search is exact (flat)
    # New and changed rows join the existing indexes on every refresh; the vector index is
    # retrained from scratch once rows written since its training pass this share of the table.
    retrain_fraction: Fraction = 0.2
    retention_hours: NonNegativeFloat = 48.0  # previous serving targets stay restorable this long
    # An emptied source serves an empty index (nothing deleted stays findable). False keeps the
    # last good target instead, and the staleness check reports ERROR until documents return.
    serve_empty: StrictBool = True
    # How a new source's queries are answered; a serving source keeps its own until migrated.
    retrieval: RetrievalProfile = dataclasses.field(default_factory=RetrievalProfile)

    @field_validator("retrain_fraction")
    @classmethod
    def _retrain_above_zero(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                f"must be above 0 and at most 1 (0 would retrain on every refresh), got {value}"
            )
        return value


@dataclass(config=STRICT, kw_only=True)
class ChecksConfig(NestedYaml):
    """Thresholds of the asset checks (the `checks:` section; see docs/checks.md)."""

    stale_fraction_warn: Fraction = 0.0  # stale or missing share of rows/docs above this: WARN
    stale_fraction_error: Fraction = 0.10  # ... above this: ERROR
    lag_hours_warn: NonNegativeFloat = 1.0  # served data behind the newest snapshot longer: WARN
    lag_hours_error: NonNegativeFloat = 24.0  # ... longer than this: ERROR
    staleness_cron: str = "*/30 * * * *"  # schedule of the time-based staleness check
    ann_recall_floor: Fraction = 0.95  # ANN recall@k vs exact search below this: ERROR
    ann_sample: PositiveInt = 50  # stored vectors used as queries
    ann_k: PositiveInt = 10
    recall_k: PositiveInt = 10  # retrieval recall@k / nDCG@k on labelled queries
    recall_drop_warn_points: NonNegativeFloat = 2.0  # drop below the baseline (points): WARN
    recall_drop_error_points: NonNegativeFloat = 5.0  # ... larger drop: ERROR
    min_recall: Fraction = 0.0  # absolute floor (ERROR); also gates the first baseline

    LAYOUT: ClassVar[dict[str, Any]] = {
        "staleness": {
            "stale_fraction": _levels("stale_fraction"),
            "lag_hours": _levels("lag_hours"),
            "schedule": "staleness_cron",
        },
        "ann_recall": {"floor": "ann_recall_floor", "sample": "ann_sample", "k": "ann_k"},
        "retrieval": {
            "k": "recall_k",
            "drop_points": _levels("recall_drop", "_points"),
            "min_recall": "min_recall",
        },
    }

    _cron = field_validator("staleness_cron", mode="before")(classmethod(lambda cls, v: _cron(v)))

    @model_validator(mode="after")
    def _warn_below_error(self) -> "ChecksConfig":
        _ordered(self.stale_fraction_warn, self.stale_fraction_error, "staleness.stale_fraction")
        _ordered(self.lag_hours_warn, self.lag_hours_error, "staleness.lag_hours")
        _ordered(
            self.recall_drop_warn_points, self.recall_drop_error_points, "retrieval.drop_points"
        )
        return self


@dataclass(config=STRICT, kw_only=True)
class MigrationConfig(KnownKeys):
    """The gate a shadow index passes before it serves (`migration:`; docs/migration.md)."""

    k: PositiveInt = 10
    max_recall_drop: Fraction = (
        0.02  # candidate recall@k may be at most this much below what serves
    )
    max_ndcg_drop: Fraction = 0.02  # ... and nDCG@k at most this much
    min_queries: PositiveInt = 1  # labelled queries needed to decide at all
    promote: Literal["manual", "auto"] = "manual"  # auto: a passing gate check swaps by itself


@dataclass(config=STRICT, kw_only=True)
class RetryConfig(KnownKeys):
    """How failing model calls are retried and bisected (`retry:`; docs/robustness.md)."""

    attempts: PositiveInt = 4  # tries of a whole batch before it is split
    initial_seconds: NonNegativeFloat = 0.5  # first backoff; doubles each try, with jitter
    max_seconds: NonNegativeFloat = 30.0  # longest single backoff
    budget_seconds: NonNegativeFloat = 120.0  # stop retrying a batch after this long
    bisect_attempts: PositiveInt = 2  # tries of each half once a batch is being split


@dataclass(config=STRICT, kw_only=True)
class RefreshConfig(NestedYaml):
    """How the platform keeps itself current (the `refresh:` section; see docs/refresh.md)."""

    sensor_interval_seconds: PositiveInt = (
        10  # how often sources are compared (listing, content hash)
    )
    automation_interval_seconds: PositiveInt = 10  # how often automation carries changes downstream
    freshness_warn_hours: NonNegativeFloat = 12.0  # not re-checked this long: WARN in the UI ...
    freshness_fail_hours: NonNegativeFloat = 24.0  # ... and FAIL; the sensor re-checks at warn
    sweep_cron: str = "0 3 * * *"  # the full consistency sweep over every (source, model)

    LAYOUT: ClassVar[dict[str, Any]] = {
        "sensor_interval_seconds": "sensor_interval_seconds",
        "sweep_cron": "sweep_cron",
        "automation_interval_seconds": "automation_interval_seconds",
        "freshness": {"warn_hours": "freshness_warn_hours", "fail_hours": "freshness_fail_hours"},
    }

    _cron = field_validator("sweep_cron", mode="before")(classmethod(lambda cls, v: _cron(v)))

    @model_validator(mode="after")
    def _warn_before_fail(self) -> "RefreshConfig":
        if not 0 < self.freshness_warn_hours <= self.freshness_fail_hours:
            raise ValueError(
                f"freshness: need 0 < warn_hours <= fail_hours, got "
                f"{self.freshness_warn_hours} and {self.freshness_fail_hours}"
            )
        return self


@dataclass(config=STRICT, kw_only=True)
class DocumentsConfig(KnownKeys):
    """What makes one document fit to embed (the `documents:` section; docs/robustness.md)."""

    max_replacement_fraction: Fraction = 0.01  # U+FFFD share above this: quarantined (lossy text)
    max_document_bytes: PositiveInt = 8 * 1024 * 1024  # larger files and lines: quarantined unread
    include_hidden: StrictBool = False  # folder sources read .hidden files and folders too
