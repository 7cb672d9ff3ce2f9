"""Model migrations: gate a shadow index against what serves, swap atomically, roll back, clean up.

A new model version fills its own table and index beside the serving one (the asset graph
does that: every registered version is a column of the source x model grid, so changed
documents reach every version). Serving moves to it only through `swap`, and only after
`evaluate_gate` found it no worse than what serves by more than the configured margins. The
pointer is one row changed in one commit, so a reader sees the old index or the new one.
Every move is logged; `rollback` moves back to the previous target while it is retained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Sequence

import numpy as np

from .checks import ConsistencyError, consistency
from .config import MigrationConfig, PlatformConfig
from .evaluation import LabelledQuery, evaluate, table_retriever
from .models import model_version
from .retrieval import RetrievalProfile
from .serving import retained_targets
from .sharding import owner
from .stages.serving_index import MixedModelVersionsError, model_versions_in
from .store import Store, latest_serve_tag, serve_tag, utcnow, vectors_table_name

EmbedFor = Callable[[str], Callable[[list[str]], np.ndarray]]  # version id -> batch embed function


def query_embedders(store: Store, config: PlatformConfig, load: Callable) -> EmbedFor:
    """version id -> embed function for queries, through the check's query-vector cache, so a
    gate evaluated again embeds nothing it embedded before (and loads no model for it)."""
    from .checks import cached_query_embedder
    from .serving import model_for_version

    def embed_for(version_id: str):
        return cached_query_embedder(
            store,
            version_id,
            lambda texts: load(model_for_version(config, store, version_id)).embed(texts),
        )

    return embed_for


class MigrationError(RuntimeError):
    """A swap or rollback that must not happen, with the reason and what to do."""


@dataclass
class GateReport:
    source: str
    candidate_version: str
    candidate_table_version: int | None
    serving_version: str | None
    queries: int
    k: int
    candidate_recall: float = 0.0
    candidate_ndcg: float = 0.0
    serving_recall: float = 0.0
    serving_ndcg: float = 0.0
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    evaluable: bool = True  # False: too few labelled queries to judge at all
    candidate_profile: str = ""  # retrieval profile ids
    serving_profile: str = ""
    profile_json: str = ""  # the candidate profile, as the pointer records it
    serving_table_version: int = 0

    @property
    def serving_target(self) -> str:
        """What this gate compared with (see `serving_target`)."""
        return target_label(self.serving_version, self.serving_profile)

    @property
    def metadata(self) -> dict[str, float | int]:
        """Numbers the UI plots: both sides and their difference."""
        return {
            "queries": self.queries,
            "k": self.k,
            "passed": int(self.passed),
            "candidate_recall": round(self.candidate_recall, 4),
            "candidate_ndcg": round(self.candidate_ndcg, 4),
            "serving_recall": round(self.serving_recall, 4),
            "serving_ndcg": round(self.serving_ndcg, 4),
            "recall_delta": round(self.candidate_recall - self.serving_recall, 4),
            "ndcg_delta": round(self.candidate_ndcg - self.serving_ndcg, 4),
            "evaluable": int(self.evaluable),
        }


def target_label(model_version: str | None, profile_id: str) -> str:
    """Model version and retrieval profile id as one value ('' while nothing serves)."""
    return f"{model_version} {profile_id}" if model_version else ""


def serving_target(pointer: dict | None) -> str:
    """What serves a source as far as a gate is concerned: model version and retrieval profile.
    A gate evaluated against another target is out of date (swap, rollback, profile change)."""
    if pointer is None:
        return ""
    profile = RetrievalProfile.from_json(pointer.get("profile"))
    return target_label(pointer["model_version"], profile.profile_id)


def evaluate_gate(
    store: Store,
    source: str,
    candidate_version: str,
    queries: Sequence[LabelledQuery],
    embed_for: EmbedFor,
    gate: MigrationConfig = MigrationConfig(),
    candidate_profile: RetrievalProfile | None = None,
) -> GateReport:
    """Evaluate a candidate (model version, retrieval profile) against what serves, on the same
    labelled queries and through the same ranking as search.

    Not evaluable (and so not passed) without enough labelled queries; never passed while
    nothing serves, because there is nothing to compare with. The candidate profile defaults
    to the one that serves: a model migration keeps how queries are answered.
    """
    source = owner(source)
    pointer = store.pointer(source)
    serving_profile = RetrievalProfile.from_json(pointer.get("profile")) if pointer else None
    candidate_profile = candidate_profile or serving_profile or RetrievalProfile()
    report = GateReport(
        source,
        candidate_version,
        None,
        pointer["model_version"] if pointer else None,
        len(queries),
        gate.k,
        candidate_profile=candidate_profile.profile_id,
        serving_profile=serving_profile.profile_id if serving_profile else "",
    )
    report.profile_json = candidate_profile.to_json()
    name = vectors_table_name(source, candidate_version)
    if not store.has_table(name):
        report.reasons.append(
            f"no table {name}; materialize embeddings and serving_index for this model first"
        )
        return report
    table = store.open_table(name)
    report.candidate_table_version = latest_serve_tag(table)
    if report.candidate_table_version is None:
        report.reasons.append(
            f"{name} has no serving index yet; materialize serving_index for this model first"
        )
        return report
    if len(queries) < gate.min_queries:
        report.evaluable = False
        report.reasons.append(
            f"not evaluable: {len(queries)} labelled queries (< migration.min_queries "
            f"{gate.min_queries}); register a canary file (sources[].canary) or BEIR qrels with "
            "the source (docs/operator.md)"
        )
        return report
    table.checkout(report.candidate_table_version)
    candidate = evaluate(
        queries, table_retriever(table, embed_for(candidate_version), gate.k, candidate_profile)
    )
    report.candidate_recall, report.candidate_ndcg = candidate.recall, candidate.ndcg
    if pointer is None:
        report.reasons.append(
            "nothing serves this source yet, so there is nothing to compare with; "
            "materialize serving_index of its default model first"
        )
        return report
    served = store.open_table(pointer["table_name"], pointer["table_version"])
    current = evaluate(
        queries,
        table_retriever(served, embed_for(pointer["model_version"]), gate.k, serving_profile),
    )
    report.serving_recall, report.serving_ndcg = current.recall, current.ndcg
    report.serving_table_version = int(pointer["table_version"])
    if report.candidate_recall < report.serving_recall - gate.max_recall_drop:
        report.reasons.append(
            f"recall@{gate.k} {report.candidate_recall:.4f} is more than {gate.max_recall_drop} "
            f"below the serving {report.serving_recall:.4f}"
        )
    if report.candidate_ndcg < report.serving_ndcg - gate.max_ndcg_drop:
        report.reasons.append(
            f"nDCG@{gate.k} {report.candidate_ndcg:.4f} is more than {gate.max_ndcg_drop} below "
            f"the serving {report.serving_ndcg:.4f}"
        )
    report.passed = not report.reasons
    return report


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


@dataclass
class CleanupReport:
    tables_dropped: list[str] = field(default_factory=list)
    tags_deleted: int = 0
    versions_removed: int = 0
    bytes_removed: int = 0


def cleanup(store: Store, config: PlatformConfig, now: datetime | None = None) -> CleanupReport:
    """Retention expiry: drop tables of unregistered model versions nothing retains, delete expired
    serve tags, and remove table versions older than the window (tagged ones are kept)."""
    now = now or utcnow()
    hours = config.serving.retention_hours
    keep = {(t["table_name"], t["table_version"]) for t in retained_targets(store, hours, now)}
    registered = {model_version(m).version_id for m in config.models}
    report = CleanupReport()
    for name in store.table_names():
        if not name.startswith("vectors__"):
            continue
        table = store.open_table(name)
        retained_here = {version for table_name, version in keep if table_name == name}
        versions = model_versions_in(table) if table.count_rows() else set()
        if versions and not versions & registered and not retained_here:
            store.drop_table(name)
            report.tables_dropped.append(name)
            continue
        latest = latest_serve_tag(table)
        created_at = _version_times(table)
        for tag_name, tag in table.tags.list().items():
            version = tag["version"] if isinstance(tag, dict) else getattr(tag, "version", None)
            if version is None or version in retained_here or version == latest:
                continue
            created = created_at.get(version)
            if created is not None and now - created > timedelta(hours=hours):
                table.tags.delete(tag_name)
                report.tags_deleted += 1
        stats = table.to_lance().cleanup_old_versions(
            older_than=timedelta(hours=hours), error_if_tagged_old_versions=False
        )
        report.versions_removed += int(getattr(stats, "old_versions", 0) or 0)
        report.bytes_removed += int(getattr(stats, "bytes_removed", 0) or 0)
    return report


def _version_times(table) -> dict[int, datetime]:
    """When each version of a table was committed (UTC)."""
    utc = utcnow().tzinfo
    return {
        int(info["version"]): info["timestamp"]
        if info["timestamp"].tzinfo
        else info["timestamp"].replace(tzinfo=utc)
        for info in table.list_versions()
    }
