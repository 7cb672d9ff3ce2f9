"""Read side: search through the serving pointer, lineage of vectors, platform status."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator

import pyarrow as pa

from .config import (
    ModelConfig,
    PlatformConfig,
    model_from_spec,
)
from .filters import either, equal, text_query
from .manifests import recorded_upstream
from .models import Embedder, model_version
from .retrieval import RetrievalProfile, rank_documents
from .sharding import owner
from .store import LINEAGE_COLUMNS, Store, utcnow

# What LanceDB and pyarrow raise for a missing, truncated or cleaned-up file or version.
STORAGE_ERRORS = (OSError, RuntimeError, ValueError, pa.ArrowException)
_RUST_LOCATION = re.compile(r",\s*/\S+\.rs:\d+:\d+\s*$")


# One value per served table version: its name names the model version, which names the model
# and the chunking strategy, and the consistency check refuses to serve a table of two.
SERVED_CONSTANTS = ("model_name", "model_version", "chunking_strategy")


class NotServingError(LookupError):
    """The source has no serving pointer yet (its serving_index was never materialized)."""


class TableReadError(Exception):
    """A table (or a version of it) cannot be read: the one thing an operator must know."""

    def __init__(
        self,
        table: str,
        cause: BaseException,
        version: int | None = None,
        source: str | None = None,
    ):
        self.table, self.version, self.source = table, version, source
        self.reason = one_line(cause)
        at = f"@v{version}" if version is not None else ""
        super().__init__(f"table {table}{at} cannot be read: {self.reason}")


def one_line(exc: BaseException) -> str:
    """The first line of an error, without the Rust source location LanceDB appends."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return _RUST_LOCATION.sub("", lines[0])


@contextmanager
def reading(table: str, version: int | None = None, source: str | None = None) -> Iterator[None]:
    """Name the table when reading it fails, instead of a bare storage traceback."""
    try:
        yield
    except STORAGE_ERRORS as exc:
        raise TableReadError(table, exc, version, source) from exc


@dataclass(frozen=True)
class Hit:
    doc_id: str
    chunk_id: str
    score: float
    text: str
    lineage: dict[str, Any]


def open_served_table(store: Store, source: str):
    """The (table, pinned version) the pointer names: readers never see a half-made swap."""
    pointer = store.pointer(source)
    if pointer is None:
        raise NotServingError(
            f"source {source!r} has no serving index yet; materialize serving_index first"
        )
    table = store.open_table(pointer["table_name"], pointer["table_version"])
    return pointer, table


def registered_model_for(config: PlatformConfig, version_id: str) -> ModelConfig | None:
    """The registry entry whose current version id is `version_id`, if any."""
    for model in config.models:
        if model_version(model).version_id == version_id:
            return model
    return None


def model_for_version(config: PlatformConfig, store: Store, version_id: str) -> ModelConfig:
    """The settings that build and query `version_id`: its registry entry, else the spec the
    store recorded when it was built, so an edited entry never takes down what serves."""
    model = registered_model_for(config, version_id)
    if model is not None:
        return model
    spec = store.model_spec(version_id)
    if spec is None:
        raise LookupError(
            f"model version {version_id!r} is not registered and the store has no record "
            "of its settings; register it again or roll back to a registered version"
        )
    model = model_from_spec(spec)
    if model_version(model).version_id != version_id:
        raise LookupError(
            f"model version {version_id!r} can no longer be loaded as recorded: the files at "
            f"{model.path} changed since it was built; migrate to a registered version"
        )
    return model


def models_in_use(
    config: PlatformConfig, store: Store, retention_hours: float
) -> list[ModelConfig]:
    """Registered models, plus unregistered versions that serve or may be rolled back to:
    those keep receiving every refresh (dual write), so nothing they serve goes stale."""
    models = list(config.models)
    registered = {model_version(m).version_id for m in models}
    for version_id in sorted(versions_in_use(store, retention_hours) - registered):
        try:
            models.append(model_for_version(config, store, version_id))
        except LookupError:  # reported where it is served (search, status, checks)
            continue
    return models


def retained_targets(store: Store, retention_hours: float, now=None) -> list[dict[str, Any]]:
    """The pointer rows that serve now, and the history rows that stopped serving within the
    retention window: what rollback may restore and cleanup must keep."""
    now = now or utcnow()
    window = timedelta(hours=retention_hours)
    targets = []
    for pointer in store.pointers():
        targets.append(pointer)
        events = store.pointer_history(pointer["source"])
        targets.extend(
            e for e, successor in zip(events, events[1:]) if now - successor["swapped_at"] <= window
        )
    return targets


def versions_in_use(store: Store, retention_hours: float, now=None) -> set[str]:
    """Model versions that serve a source now or stopped serving within the retention window."""
    return {t["model_version"] for t in retained_targets(store, retention_hours, now)}


def search(
    store: Store,
    source: str,
    query: str,
    k: int,
    embed_query: Callable[[str], Any] | None,
    mode: str | None = None,
) -> list[Hit]:
    """The top-k documents for a query from the served index of one source, each shown by its
    best chunk. The pointer's retrieval profile decides how (hybrid by default); `mode`
    overrides the profile's mode for this query only."""
    with reading("serving_pointers", source=source):
        pointer = store.pointer(source)
    if pointer is None:
        raise NotServingError(
            f"source {source!r} has no serving index yet; materialize serving_index first"
        )
    profile = RetrievalProfile.from_json(pointer.get("profile"))
    if mode is not None:
        profile = dataclasses.replace(profile, mode=mode)
    # embedding is not a read error: the model is loaded outside `reading`
    vector = embed_query(pointer["model_version"]) if profile.uses_vectors else None
    with reading(pointer["table_name"], pointer["table_version"], source):
        table = store.open_table(
            pointer["table_name"], pointer["table_version"]
        )  # never half a swap
        hits = rank_documents(
            table,
            [query],
            [vector] if vector is not None else None,
            profile,
            k,
            columns=[*LINEAGE_COLUMNS, "text"],
            constant=SERVED_CONSTANTS,
        )[0]
    served = {
        "table": pointer["table_name"],
        "table_version": pointer["table_version"],
        "retrieval_profile": profile.profile_id,
    }
    return [
        Hit(
            doc_id=h.doc_id,
            chunk_id=h.row["chunk_id"],
            score=h.score,
            text=h.row["text"],
            lineage={c: _plain(h.row[c]) for c in LINEAGE_COLUMNS} | served,
        )
        for h in hits
    ]


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def embedder_query_function(
    config: PlatformConfig, store: Store, load: Callable[[Any], Embedder], query: str
):
    """Returns version_id -> query vector, loading the model that matches the served version."""

    def embed(version_id: str):
        return load(model_for_version(config, store, version_id)).embed([query])[0]

    return embed


def lineage(store: Store, config: PlatformConfig, doc_or_chunk_id: str) -> list[dict[str, Any]]:
    """Every vector of a document or chunk, in every model version of every source.

    `vectors__a__...` could belong to source `a` or `a__b` (both legal names), so the name
    only preselects; each table is read once and a row belongs to the source it records.
    """
    out: list[dict[str, Any]] = []
    where = either(equal(doc_id=doc_or_chunk_id), equal(chunk_id=doc_or_chunk_id))
    registered = {source.name for source in config.sources}
    prefixes = tuple(f"vectors__{name}__" for name in registered)
    names = sorted(n for n in store.table_names() if prefixes and n.startswith(prefixes))
    upstream: dict[tuple[str, str], dict] = {}
    for name in names:
        with reading(name):
            columns = [*LINEAGE_COLUMNS, "chunk_index", "metadata_json"]
            rows = Store.read(store.open_table(name), columns, where=where).to_pylist()
        for row in rows:
            if owner(row["source"]) not in registered:
                continue
            row["created_at"] = row["created_at"].isoformat()
            row["table"] = name
            row["metadata"] = json.loads(row.pop("metadata_json") or "{}")
            key = (row["source"], row["source_snapshot"])
            if key not in upstream:
                upstream[key] = recorded_upstream(store, *key)
            row["upstream"] = upstream[key]
            out.append(row)
    return sorted(
        out, key=lambda r: (r["source"], r["model_version"], r["doc_id"], r["chunk_index"])
    )


def format_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def text_preview(
    store: Store, table_name: str, table_version: int, query: str, k: int = 3
) -> list[dict[str, Any]]:
    """Top-k full-text hits of one table version: what an index returns, no model needed."""
    table = store.open_table(table_name, table_version)
    rows = (
        table.search(text_query(query), query_type="fts")
        .select(["doc_id", "text", "_score"])
        .limit(k)
        .to_list()
    )
    return [
        {
            "doc_id": r["doc_id"],
            "score": float(r["_score"]),
            "text": " ".join(r["text"].split())[:160],
        }
        for r in rows
    ]
