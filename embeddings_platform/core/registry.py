"""Kinds as classes registered by name, and the strict settings they are typed with.

A source kind or model kind is one pydantic dataclass: its fields are the registry keys it
accepts (anything else is an error naming the key), its methods are what the kind does.
`@source_kind("folder")` and `@model_kind("hashing")` register them, much as LanceDB's
embedding-function registry does; `core/config.py` builds the YAML schema from the registries.
Adding a kind is one module and one import line in `core/sources/__init__.py` or
`core/models/__init__.py` (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    model_validator,
)

STRICT = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
K = TypeVar("K")
# Numbers typed in YAML stay numbers: "8MB", "1%" or true are errors, not coerced.
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


# Floats also accept numeric strings: YAML reads `1e-6` (no dot) as a string.
NonNegativeFloat = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1, allow_inf_nan=False)]


class ConfigError(ValueError):
    """A config file problem, phrased as `field: what is wrong; how to fix it`."""


class SourceError(ValueError):
    """One source cannot be read (its path is missing or of the wrong kind).

    Raised when that source is read, not when the config loads: one broken source must not
    stop search, status or rollback of the others (invariant 8).
    """


class KnownKeys:
    """Mixin of every settings dataclass: an unknown key is an error that names it and the
    keys that are allowed (a typo such as `serv_model:` must not be silently ignored)."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            allowed = [f.name for f in dataclasses.fields(cls) if f.init]
            unknown = sorted(str(k) for k in raw if k not in allowed)
            if unknown:
                raise ValueError(
                    f"unknown key{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(map(repr, unknown))}; use {', '.join(allowed)}"
                )
        return raw


def resolve_path(value: Any, info: ValidationInfo) -> Any:
    """A registry path: ~ and $VARS expanded, relative paths taken from the registry's folder."""
    if value is None or isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path string, got {value!r}")
    path = Path(os.path.expandvars(value)).expanduser()
    base = (info.context or {}).get("base") if info is not None else None
    return path if path.is_absolute() or base is None else Path(base) / path


def model_spec_path(value: Any, info: ValidationInfo) -> Any:
    """A model location: `package:<module>` (weights inside an installed package) or a path."""
    if isinstance(value, str) and value.startswith("package:"):
        return value
    resolved = resolve_path(value, info)
    return str(resolved) if resolved is not None else None


class Registry(dict[str, type]):
    """name -> kind class, filled by the kinds' decorators at import."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str) -> Callable[[type[K]], type[K]]:
        def add(cls: type[K]) -> type[K]:
            if name in self:
                raise ValueError(f"{self.what} kind {name!r} is registered twice")
            self[name] = cls
            return cls

        return add

    def of(self, kind: str) -> type:
        if kind not in self:
            raise ConfigError(
                f"unknown {self.what} kind {kind!r}; use one of {', '.join(sorted(self))}"
            )
        return self[kind]


SOURCE_KINDS = Registry("source")
MODEL_KINDS = Registry("model")
source_kind = SOURCE_KINDS.register
model_kind = MODEL_KINDS.register
