"""Model migrations: move serving to a gated candidate, or back, in one commit.

A new model version fills its own table and index beside the serving one (the asset graph
does that: every registered version is a column of the source x model grid, so changed
documents reach every version). Serving moves to it only through `swap`, and only after
`migration_gate.evaluate_gate` found it no worse than what serves by more than the configured
margins. The pointer is one row changed in one commit, so a reader sees the old index or the
new one. Every move is logged; `rollback` moves back to the previous target while it is
retained (core/retention.py expires what no longer is).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from .checks import ConsistencyError, consistency
from .migration_gate import GateReport
from .retrieval import RetrievalProfile
from .sharding import owner
from .stages.serving_index import MixedModelVersionsError, model_versions_in
from .store import Store, latest_serve_tag, serve_tag, utcnow, vectors_table_name


class MigrationError(RuntimeError):
    """A swap or rollback that must not happen, with the reason and what to do."""


def swap(
    store: Store,
    gate: GateReport,
    run_id: str,
    expected_dimension: int | None = None,
    force: bool = False,
) -> dict:
    """Point the source at the gated candidate (one commit). `force` ships a failed gate
    on purpose."""
    if not gate.passed and not force:
        raise MigrationError(
            f"gate failed for {gate.candidate_version} on {gate.source}: {'; '.join(gate.reasons)} "
            "(nothing swapped; pass --force to ship it anyway)"
        )
    if gate.candidate_table_version is None:
        raise MigrationError(f"{gate.candidate_version} has no serving index to swap to")
    name = vectors_table_name(gate.source, gate.candidate_version)
    table = store.open_table(name, gate.candidate_table_version)
    found = model_versions_in(table)
    if found != {gate.candidate_version}:
        raise MixedModelVersionsError(
            f"{name}@v{gate.candidate_table_version} holds model versions {sorted(found)}"
        )
    check = consistency(
        store, gate.source, gate.candidate_version, expected_dimension, check_pointer=False
    )
    if not check.ok:
        raise ConsistencyError(check)
    row = {
        "source": gate.source,
        "model_version": gate.candidate_version,
        "table_name": name,
        "table_version": gate.candidate_table_version,
        "tag": serve_tag(gate.candidate_table_version),
        "swapped_at": utcnow(),
        "run_id": run_id,
        "reason": "migration (forced)" if not gate.passed else "migration",
        "profile": gate.profile_json,
    }
    store.set_pointer(row)
    return row


def previous_target(
    store: Store,
    source: str,
    retention_hours: float,
    now: datetime | None = None,
    partition_keys: Sequence[str] | None = None,
) -> dict:
    """What a rollback serves: the model version that served before the current one, at its
    newest indexed table version, which dual writes kept current.

    Rollback undoes a migration, not a refresh: pinned older versions of the model that serves
    now are never targets (they may hold deleted documents). A target that fell behind the
    source (its version was unregistered and stopped being refreshed) is refused.
    """
    source = owner(source)
    now = now or utcnow()
    current = store.pointer(source)
    if current is None:
        raise MigrationError(f"source {source!r} has never served; nothing to roll back")
    history = store.pointer_history(source)
    block = [e for e in history if e["swapped_at"] <= current["swapped_at"]]
    since = current
    serving_now = _target(current)
    while block and _target(block[-1]) == serving_now:
        since = block.pop()  # the move that made the current (model, profile) serve
    if not block:
        raise MigrationError(
            f"source {source!r} has served only {current['model_version']} this way; "
            "no earlier model version or retrieval profile to roll back to"
        )
    previous, profile = _target(block[-1])
    if now > since["swapped_at"] + timedelta(hours=retention_hours):
        raise MigrationError(
            f"{previous} stopped serving at {since['swapped_at'].isoformat()}, "
            f"past serving.retention_hours ({retention_hours} h)"
        )
    name = vectors_table_name(source, previous)
    version = latest_serve_tag(store.open_table(name)) if store.has_table(name) else None
    if version is None:
        raise MigrationError(
            f"the previous model version {previous} has no indexed table {name} any more"
        )
    from .checks import staleness

    for key in partition_keys or [source]:
        report = staleness(store, key, previous, version=version, now=now)
        behind = report.deleted_docs_present + report.changed_docs_present + report.unindexed_docs
        if behind:
            raise MigrationError(
                f"{name}@v{version} is behind the source ({report.deleted_docs_present} deleted, "
                f"{report.changed_docs_present} changed, {report.unindexed_docs} new documents); "
                f"materialize embeddings and serving_index of {previous} for {key} first"
            )
    return {
        "source": source,
        "model_version": previous,
        "table_name": name,
        "table_version": version,
        "tag": serve_tag(version),
        "profile": profile,
        "undoes": since,
    }


def _target(event: dict) -> tuple[str, str]:
    """What serves, as far as a rollback is concerned: the model version and the profile."""
    return event["model_version"], RetrievalProfile.from_json(event.get("profile")).to_json()


def rollback(
    store: Store,
    source: str,
    run_id: str,
    retention_hours: float,
    now: datetime | None = None,
    partition_keys: Sequence[str] | None = None,
) -> dict:
    """Serve the previous model version again: a pointer move, no model, no re-embed."""
    target = previous_target(store, source, retention_hours, now, partition_keys)
    undone = target.pop("undoes")
    row = dict(
        target,
        swapped_at=utcnow(),
        run_id=run_id,
        reason=f"rollback: undoes the move to {undone['model_version']} at "
        f"{undone['swapped_at'].isoformat()} ({undone['reason']})",
    )
    store.set_pointer(row)
    return row
