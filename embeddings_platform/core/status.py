"""The operator's view of what exists and what serves (`embeddings-platform status`): per
source and model version, its counts, what serves and whether it can be read. Read-only, and a
table that cannot be read is reported, never raised."""

from __future__ import annotations

from typing import Any

from .config import PlatformConfig, SourceError, check_source_path
from .models import model_version
from .serving import TableReadError, models_in_use, reading
from .store import Store, chunks_table_name, vectors_table_name


def source_problem(source) -> str | None:
    """Why a source cannot be read (its path), or None: status shows it instead of failing."""
    try:
        check_source_path(source)
    except SourceError as exc:
        return str(exc)
    return None


def table_health(store: Store, name: str, version: int | None = None) -> str:
    """'ok' if one row of the table (at `version`) can be read, else the one-line reason.

    Counting rows reads only the manifest, so a table can count fine and still fail search.
    """
    try:
        with reading(name, version):
            table = store.open_table(name)
            if version is not None:
                table.checkout(version)
            table.search().limit(1).to_arrow()
    except TableReadError as exc:
        return str(exc)
    return "ok"


def _count(store: Store, name: str) -> tuple[int | None, int | None, str | None]:
    """(rows, latest version, problem) of a table; (0, None, None) if it does not exist yet."""
    if not store.has_table(name):
        return 0, None, None
    try:
        with reading(name):
            table = store.open_table(name)
            return table.count_rows(), table.version, None
    except TableReadError as exc:
        return None, None, str(exc)


def status(store: Store, config: PlatformConfig) -> list[dict[str, Any]]:
    """Per source x model version: documents, chunks, vectors, what serves, and its health.

    `health` reads one row of the table version that serves (of the newest version for a
    shadow): 'ok', the reason it cannot be read, or None when there is no table yet.
    `source_error` says why the source itself cannot be read (e.g. its path is missing).
    """
    rows = []
    registered = {model_version(m).version_id for m in config.models}
    with reading("serving_pointers"):  # an edited entry's old version serves until migrated
        models = models_in_use(config, store, config.serving.retention_hours)
    for source in config.sources:
        problem = source_problem(source)
        with reading("snapshots", source=source.name):
            snaps = [s for s in (store.latest_snapshot(key) for key in source.partition_keys) if s]
        snap = snaps[0] if len(snaps) == 1 else None
        with reading("serving_pointers", source=source.name):
            pointer = store.pointer(source.name)
        for model in models:
            version = model_version(model)
            vectors_name = vectors_table_name(source.name, version.version_id)
            chunks_name = chunks_table_name(source.name, version.chunking_strategy)
            chunks, _, chunks_problem = _count(store, chunks_name)
            vectors, table_version, vectors_problem = _count(store, vectors_name)
            serves = pointer is not None and pointer["model_version"] == version.version_id
            health = vectors_problem or chunks_problem
            if serves:
                served = pointer["table_name"], pointer["table_version"]
                health = health or table_health(store, *served)
            elif health is None and table_version is not None:
                health = table_health(store, vectors_name)
            rows.append(
                {
                    "source": source.name,
                    "model": model.name,
                    "model_version": version.version_id,
                    "registered": version.version_id in registered,
                    "snapshot": snap["snapshot_id"]
                    if snap
                    else (f"{len(snaps)} shard snapshots" if snaps else None),
                    "shards": source.shards,
                    "documents": sum(s["documents"] for s in snaps),
                    "quarantined": sum(s["quarantined"] for s in snaps),
                    "chunks": chunks,
                    "vectors": vectors,
                    "table_version": table_version,
                    "serving": serves,
                    "served_table_version": pointer["table_version"] if serves else None,
                    "serving_since": pointer["swapped_at"].isoformat() if serves else None,
                    "health": health,
                    "source_error": problem,
                }
            )
    return rows
